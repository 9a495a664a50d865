"""Images per second of contestants measured side by side: the one timing method of the course.

``make bench`` (``benchmarks/``) and the lessons that time something (lesson 02's pipelines) both call
``measure_side_by_side``. Every contestant first runs its warmup steps (not timed as throughput:
first-call costs, worker start-up, ``torch.compile``), then the repeats go round robin, one window
per contestant per round, so a change in the machine's load hits all contestants alike. Each window
starts with a few unmeasured "settle" steps so a DataLoader whose workers prefetched while the
others ran starts the window in its steady state, not with a full queue. A contestant's result is
the median of its windows' images/s; the ratio of two contestants' windows in the same round
(``round_ratios``) shows how noisy a ratio is.
"""

from __future__ import annotations

import dataclasses
import statistics
import time
from collections.abc import Callable, Iterable, Iterator

import torch


def endless(batches: Iterable) -> Iterator:
    """Batches of epoch after epoch (``set_epoch`` is called where the iterable has one)."""
    epoch = 0
    while True:
        if hasattr(batches, "set_epoch"):
            batches.set_epoch(epoch)
        yield from batches
        epoch += 1


@dataclasses.dataclass
class Contestant:
    """One side of a comparison.

    ``step()`` does one unit of work (a batch, a training step) and returns the images it
    handled. ``activate()`` sets any global state the contestant needs (e.g. cuDNN flags)
    before its steps run. ``settle`` unmeasured steps precede every measured window.
    """

    name: str
    step: Callable[[], int]
    settle: int = 1
    activate: Callable[[], None] = lambda: None


@dataclasses.dataclass
class Measurement:
    images_per_s: float  # median over the windows
    windows_images_per_s: list[float]
    warmup_seconds: float  # wall time of the warmup steps (includes compilation, worker start-up)
    images_per_window: int


def synchronizer(device: torch.device) -> Callable[[], None]:
    """Wait for queued GPU work, so the clock measures work done, not work launched."""
    if device.type == "cuda":
        return lambda: torch.cuda.synchronize(device)
    return lambda: None


def measure_side_by_side(contestants: list[Contestant], *, warmup: int, repeats: int, steps: int,
                         device: torch.device, settle: bool = True, log=print) -> dict[str, Measurement]:
    """Images/s of each contestant: warmup, then ``repeats`` round-robin windows of ``steps`` steps.

    ``settle=False`` skips the settle steps (for ``--quick`` runs, whose numbers mean nothing).
    """
    sync = synchronizer(device)
    warmup_seconds = {}
    for c in contestants:
        c.activate()
        sync()
        started = time.perf_counter()
        for _ in range(warmup):
            c.step()
        sync()
        warmup_seconds[c.name] = time.perf_counter() - started
        log(f"  warmed up {c.name} ({warmup} steps, {warmup_seconds[c.name]:.1f} s)")
    windows: dict[str, list[float]] = {c.name: [] for c in contestants}
    images: dict[str, int] = {}
    for r in range(repeats):
        shift = r % len(contestants)  # rotate the order: no contestant always runs first
        for c in contestants[shift:] + contestants[:shift]:
            c.activate()
            for _ in range(c.settle if settle else 0):
                c.step()
            sync()
            started = time.perf_counter()
            n = sum(c.step() for _ in range(steps))
            sync()
            windows[c.name].append(n / (time.perf_counter() - started))
            images[c.name] = n
        log(f"  round {r + 1}/{repeats}: " + ", ".join(f"{name} {w[-1]:,.0f}" for name, w in windows.items())
            + " img/s")
    return {c.name: Measurement(statistics.median(windows[c.name]), windows[c.name], warmup_seconds[c.name],
                                images[c.name]) for c in contestants}


def round_ratios(a: Measurement, b: Measurement) -> list[float]:
    """``a`` over ``b`` window by window: both windows of a round ran within seconds of each
    other, so each ratio saw (nearly) the same machine load."""
    return [x / y for x, y in zip(a.windows_images_per_s, b.windows_images_per_s)]


def spread_text(ratios: list[float]) -> str:
    return f"rounds {min(ratios):.2f}-{max(ratios):.2f}x" if ratios else "no rounds"
