"""Train a run: ``python train.py --config configs/config.yaml [--set key=value ...] [--resume]``.

Under ``torchrun --nproc_per_node=N train.py ...`` it trains with DistributedDataParallel.
On Linux it first re-executes itself with glibc's allocator set to keep freed memory
(``course_utils/allocator.py``: the same arithmetic, faster CPU steps; ``COURSE_MALLOC_TUNING=0`` opts out).
"""

if __name__ == "__main__":
    from course_utils.allocator import keep_freed_memory

    keep_freed_memory()  # before anything else: the process is replaced

    from course_utils.cli import train_main

    raise SystemExit(train_main())
