"""Images per second: the batched augmentation against torchvision's pipeline, and training steps per width.
"""

from __future__ import annotations

import copy
import os
import statistics
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
    device="cpu", threads: int | None = None, workers: tuple[int, ...] = (0, 2), rounds: int = 3,
) -> dict:
    """Images per second of augmented, normalized training batches: the course's pipeline against
    torchvision's, with the settings of ``make bench`` (``benchmarks/input_pipeline.py``).

    Pipelines: ``batched``, ``loader.BatchIterator(train=True)`` (gather, crop+flip, normalize as
    tensor ops on ``device``); and for each ``num_workers`` in ``workers``, a ``DataLoader`` that
    applies ``augment.torchvision_train_transform`` per PIL image, on the CPU, as tutorials do.
    Same images, same batch size. Each round times one epoch of every pipeline in turn (round
    robin, so a change in the machine's load hits all of them alike); the first batch of each
    epoch (worker start-up, first calls) is not timed. A pipeline's rate is the median of its rounds.

    The **baseline** is the better torchvision setting, as in ``make bench``: comparing with a
    deliberately weak setting would flatter the course's pipeline.

    ``threads``: torch intra-op threads (restored afterwards); ``None`` keeps torch's default, one
    per core, as ``make bench`` does.

    Returns a dict: ``images``, ``batch_size``, ``threads``, ``rates`` (name -> images/s, median),
    ``round_rates`` (name -> list per round), ``baseline`` (its name), ``speedup`` (batched /
    baseline), ``speedup_vs`` (name -> batched / that pipeline) and ``round_speedups`` (batched /
    baseline, per round: their spread is the measurement's noise), ``load_average`` (1-minute
    load before and after: the machine's load that the numbers depend on).
    """
    device = torch.device(device)
    previous_threads = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    load_before = os.getloadavg()[0]
    try:
        batched = BatchIterator(images, labels, batch_size, mean, std, train=True, padding=padding, device=device)
        pipelines = {"batched": (batched, device)}
        for w in workers:
            loader = torch.utils.data.DataLoader(
                PILImageDataset(images, labels, torchvision_train_transform(mean, std, padding)),
                batch_size=batch_size, shuffle=True, num_workers=w,
            )
            pipelines[torchvision_name(w)] = (loader, torch.device("cpu"))
        round_rates = {name: [] for name in pipelines}
        for r in range(rounds):
            batched.set_epoch(r)
            for name, (batches, where) in pipelines.items():
                round_rates[name].append(_images_per_second(batches, where))
        used_threads = torch.get_num_threads()
    finally:
        torch.set_num_threads(previous_threads)
    rates = {name: statistics.median(values) for name, values in round_rates.items()}
    baseline = max((n for n in rates if n != "batched"), key=rates.get)
    return {
        "images": len(images),
        "batch_size": batch_size,
        "threads": used_threads,
        "rates": rates,
        "round_rates": round_rates,
        "baseline": baseline,
        "speedup": rates["batched"] / rates[baseline],
        "speedup_vs": {n: rates["batched"] / v for n, v in rates.items() if n != "batched"},
        "round_speedups": [b / t for b, t in zip(round_rates["batched"], round_rates[baseline])],
        "load_average": (load_before, os.getloadavg()[0]),
    }


def torchvision_name(workers: int) -> str:
    """The name ``make bench`` gives the torchvision pipeline with ``workers`` DataLoader workers."""
    return f"torchvision DataLoader, num_workers={workers}"


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
