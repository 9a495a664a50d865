"""Train a run: ``python train.py --config configs/config.yaml [--set key=value ...] [--resume]``.

Under ``torchrun --nproc_per_node=N train.py ...`` it trains with DistributedDataParallel.
"""

from course_utils.cli import train_main

if __name__ == "__main__":
    raise SystemExit(train_main())
