"""Evaluate a run: ``python test.py --config configs/config.yaml [--run-dir DIR] [--device DEVICE]``.

Prints the train/val/test accuracy and loss table of the run's checkpoint(s), evaluated with the
run's own test-time augmentation and precision: on the device type it trained on, the table of its
``final.json``, and a line that says whether the two agree.
"""

from course_utils.cli import test_main

if __name__ == "__main__":
    raise SystemExit(test_main())
