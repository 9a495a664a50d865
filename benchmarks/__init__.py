"""Speed benchmarks of the course's code path against the standard PyTorch tutorial setup.

Run them with ``make bench`` (``python -m benchmarks.run --device cpu``) or, on a GPU,
``make bench DEVICE=cuda``. Each benchmark measures the course and its named baseline side by
side in one process on one machine (warmup excluded, median of repeats), prints a table and
writes JSON to ``build/bench/<name>.json``:

- ``input_pipeline``: images/s of ``loader.BatchIterator`` (batched crop + flip + normalize on
  uint8 tensors) against a torchvision ``DataLoader`` over PIL images (0 and 2 workers).
- ``training``: images/s of training steps of ResNet-18 through the engine's pieces against
  the plain tutorial loop, with one ablation row per speed-up (data path, memory format,
  precision, ``torch.compile``).
- ``gpu_epoch``: seconds per epoch of the reference recipe (train 40k + validation 10k) on a
  GPU for each speed setting on and off, and the projected 200-epoch wall time.

Speed targets live here, in the benchmarks' output; the tests (``tests/test_benchmarks.py``)
only check that the benchmarks run and report consistent numbers.
"""
