"""Images per second: the batched augmentation against torchvision's pipeline, and training steps per width.

The pipelines are measured by ``side_by_side.measure_side_by_side``, the method ``make bench`` uses.
"""

from __future__ import annotations

import copy
import os
import time

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from course_utils.augment import PILImageDataset, torchvision_train_transform
from course_utils.loader import BatchIterator
from course_utils.side_by_side import (
    Contestant,
    endless,
    measure_side_by_side,
    round_ratios,
    synchronizer,
)


def course_name(device) -> str:
    """The name ``make bench`` and lesson 02 give the course's pipeline on ``device``."""
    return f"course BatchIterator ({torch.device(device).type})"


def torchvision_name(workers: int) -> str:
    """The name ``make bench`` and lesson 02 give the torchvision pipeline with ``workers`` workers."""
    return f"torchvision DataLoader, num_workers={workers}"


def torchvision_loader(images, labels, transform, batch_size: int, num_workers: int, *, shuffle: bool,
                       device: torch.device, seed: int = 0) -> torch.utils.data.DataLoader:
    """The tutorials' pipeline: a ``DataLoader`` over PIL images and per-image torchvision transforms
    (pinned memory when the batches go to a GPU)."""
    return torch.utils.data.DataLoader(
        PILImageDataset(images, labels, transform), batch_size=batch_size, shuffle=shuffle,
        num_workers=num_workers, pin_memory=torch.device(device).type == "cuda",
        generator=torch.Generator().manual_seed(seed))


def pipeline_contestants(images: np.ndarray, labels: np.ndarray, mean, std, batch_size: int = 128,
                         padding: int = 4, device="cpu", workers: tuple[int, ...] = (0, 2)) -> list[Contestant]:
    """The course's batched pipeline and torchvision's per-image one, as ``side_by_side.Contestant``s.

    Course: ``loader.BatchIterator(train=True)`` on ``device`` (gather, crop+flip, normalize as tensor
    ops). Torchvision: for each ``num_workers`` in ``workers``, a ``DataLoader`` applying
    ``augment.torchvision_train_transform`` per PIL image; on a GPU its batches count only once they
    are on the device. Same images, same batch size; each step yields one batch, epoch after epoch.
    Settle steps: a worker pool refills its queue (2 batches per worker) before its window is timed.
    """
    device = torch.device(device)
    course = endless(BatchIterator(images, labels, batch_size, mean, std, train=True, padding=padding,
                                   device=device, seed=0))

    def course_step() -> int:
        return len(next(course)[1])

    def torchvision_step_of(w: int):
        batches = endless(torchvision_loader(images, labels, torchvision_train_transform(mean, std, padding),
                                             batch_size, w, shuffle=True, device=device))

        def step() -> int:
            x, y = next(batches)
            if device.type == "cuda":
                x, y = x.to(device), y.to(device)
            return len(y)
        return step

    return [Contestant(course_name(device), course_step, settle=1)] + [
        Contestant(torchvision_name(w), torchvision_step_of(w), settle=1 + 2 * w) for w in workers]


def augmentation_throughput(
    images: np.ndarray, labels: np.ndarray, mean, std, batch_size: int = 128, padding: int = 4,
    device="cpu", threads: int | None = None, workers: tuple[int, ...] = (0, 2), rounds: int = 9,
    batches: int = 20, warmup: int = 5,
) -> dict:
    """Images per second of augmented, normalized training batches: the course's pipeline against
    torchvision's, measured as ``make bench`` measures them (``benchmarks/input_pipeline.py``): the
    same contestants (``pipeline_contestants``) and the same ``side_by_side.measure_side_by_side``.

    Each contestant runs ``warmup`` untimed batches, then ``rounds`` round-robin windows of
    ``batches`` batches; a pipeline's rate is the median of its windows. The **baseline** is the
    better torchvision setting, as in ``make bench``: comparing with a deliberately weak setting
    would flatter the course's pipeline.

    ``threads``: torch intra-op threads (restored afterwards); ``None`` keeps torch's default, one
    per core, as ``make bench`` does.

    Returns a dict: ``images``, ``batch_size``, ``threads``, ``course`` (the course pipeline's name),
    ``rates`` (name -> images/s, median), ``round_rates`` (name -> list per round), ``baseline`` (its
    name), ``speedup`` (course / baseline), ``speedup_vs`` (name -> course / that pipeline),
    ``round_speedups`` (course / baseline, per round: their spread is the measurement's noise), and
    ``load_average`` (1-minute load before and after: the machine's load the numbers depend on).
    """
    device = torch.device(device)
    previous_threads = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    load_before = os.getloadavg()[0]
    try:
        contestants = pipeline_contestants(images, labels, mean, std, batch_size, padding, device, workers)
        measured = measure_side_by_side(contestants, warmup=warmup, repeats=rounds, steps=batches, device=device,
                                        log=lambda _: None)
        used_threads = torch.get_num_threads()
    finally:
        torch.set_num_threads(previous_threads)
    course = course_name(device)
    rates = {name: m.images_per_s for name, m in measured.items()}
    baseline = max((n for n in rates if n != course), key=rates.get)
    return {
        "images": len(images),
        "batch_size": batch_size,
        "threads": used_threads,
        "course": course,
        "rates": rates,
        "round_rates": {name: m.windows_images_per_s for name, m in measured.items()},
        "baseline": baseline,
        "speedup": rates[course] / rates[baseline],
        "speedup_vs": {n: rates[course] / v for n, v in rates.items() if n != course},
        "round_speedups": round_ratios(measured[course], measured[baseline]),
        "load_average": (load_before, os.getloadavg()[0]),
    }


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

    sync = synchronizer(device)
    step()
    sync()
    started = time.perf_counter()
    for _ in range(steps):
        step()
    sync()
    return batch_size * steps / (time.perf_counter() - started)
