"""Evaluate a run: ``python test.py --config configs/config.yaml [--run-dir DIR]``.

Prints the train/val/test accuracy and loss table of the run's checkpoint(s).
"""

from course_utils.cli import test_main

if __name__ == "__main__":
    raise SystemExit(test_main())
