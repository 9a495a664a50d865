"""Images per second: the batched augmentation against torchvision's pipeline, and training steps per width.
"""

from __future__ import annotations

import copy
import time

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from course_utils.augment import PILImageDataset, torchvision_train_transform
from course_utils.loader import BatchIterator


def _images_per_second(batches, device: torch.device) -> float:
    iterator = iter(batches)
    next(iterator)  # warm-up: first-call allocations and lazy imports are not throughput
    started = time.perf_counter()
    seen = 0
    for x, _ in iterator:
        seen += len(x)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return seen / (time.perf_counter() - started)


def augmentation_throughput(
    images: np.ndarray, labels: np.ndarray, mean, std, batch_size: int = 128, padding: int = 4,
    device="cpu", threads: int | None = 1,
) -> dict[str, float]:
    """Images per second of one epoch of augmented, normalized training batches, both ways.

    ``batched``: ``loader.BatchIterator`` (gather, crop+flip, normalize as tensor ops on
    ``device``). ``torchvision``: ``augment.torchvision_train_transform`` per PIL image through a
    ``DataLoader`` with ``num_workers=0`` (on the CPU, as tutorials do). Same images, same batch
    size; the first batch of each is a warm-up and not timed.

    ``threads``: torch intra-op threads for both (restored afterwards; None: leave as is). One
    by default: the per-image PIL pipeline uses one core anyway, and on a busy shared machine
    extra threads mostly wait for each other, which would time the machine, not the pipeline.
    """
    device = torch.device(device)
    previous_threads = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        batched = BatchIterator(images, labels, batch_size, mean, std, train=True, padding=padding, device=device)
        reference = torch.utils.data.DataLoader(
            PILImageDataset(images, labels, torchvision_train_transform(mean, std, padding)),
            batch_size=batch_size, shuffle=True, num_workers=0,
        )
        result = {
            "images": len(images),
            "threads": torch.get_num_threads(),
            "batched": _images_per_second(batched, device),
            "torchvision": _images_per_second(reference, torch.device("cpu")),
        }
    finally:
        torch.set_num_threads(previous_threads)
    result["speedup"] = result["batched"] / result["torchvision"]
    return result


def training_images_per_second(model: nn.Module, batch_size: int = 32, steps: int = 2, device="cpu",
                               lr: float = 0.1) -> float:
    """Images per second of SGD training steps (forward, backward, update) on random data, fp32.

    One warm-up step is not timed. Works on a copy of ``model`` moved to ``device``.
    """
    device = torch.device(device)
    probe = copy.deepcopy(model).to(device).train()
    optimizer = torch.optim.SGD(probe.parameters(), lr=lr, momentum=0.9)
    x = torch.randn(batch_size, 3, 32, 32, device=device)
    y = torch.randint(0, 10, (batch_size,), device=device)

    def step():
        optimizer.zero_grad(set_to_none=True)
        F.cross_entropy(probe(x), y).backward()
        optimizer.step()

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    step()
    sync()
    started = time.perf_counter()
    for _ in range(steps):
        step()
    sync()
    return batch_size * steps / (time.perf_counter() - started)
