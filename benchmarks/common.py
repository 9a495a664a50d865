"""What the benchmarks share: the machine header, the data, load checks, output.

The timing itself (``measure_side_by_side`` and its contestants) and the tutorials' baseline
pipeline (``torchvision_loader``) live in the package, ``course_utils.side_by_side`` and
``course_utils.throughput``, because lesson 02 measures with them too; they are imported here so
that every benchmark finds its tools in one place.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import numpy as np
import torch

from course_utils import data as data_lib
from course_utils.repro import environment_fingerprint
from course_utils.side_by_side import (  # noqa: F401  (re-exported for the benchmarks)
    Contestant,
    Measurement,
    endless,
    measure_side_by_side,
    round_ratios,
    spread_text,
    synchronizer,
)
from course_utils.throughput import torchvision_loader  # noqa: F401  (re-exported for the benchmarks)

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT_DIR = REPO_ROOT / "build" / "bench"
OFFLINE_COPY_NOTE = ("the offline CIFAR-10 copy, mostly JPEG-degraded (46k of 50k train images); "
                     "irrelevant for speed, which does not depend on pixel values")


# --------------------------------------------------------------------------- machine and data


def machine_info(device: torch.device) -> dict:
    """Versions, processor or GPU, threads and current load: what the numbers depend on."""
    info = environment_fingerprint(device)
    info["logical_cpus"] = os.cpu_count()
    info["load_average"] = [round(v, 2) for v in os.getloadavg()]
    info["is_gpu"] = device.type == "cuda"
    return info


def machine_line(info: dict) -> str:
    where = (f"GPU {info['device_name']}" if info["is_gpu"] else
             f"CPU {info['device_name']} ({info['logical_cpus']} logical CPUs, {info['cpu_threads']} torch threads)")
    return (f"machine: {where}; torch {info['torch']}, torchvision {info['torchvision']}, "
            f"python {info['python']}; load average {info['load_average'][0]:.2f} (1 min)")


@dataclasses.dataclass
class TrainSplit:
    """The 40k training split of the reference recipe, as the engine builds it."""

    images: np.ndarray  # uint8 (40000, 32, 32, 3), HWC
    labels: np.ndarray  # int64 (40000,)
    mean: tuple[float, float, float]  # per channel, [0, 1] units, computed on this split
    std: tuple[float, float, float]
    source: str  # the cache file's name
    note: str  # what the data is, for the output


def load_train_split(data_dir=None, val_size: int = 10_000, split_seed: int = 42) -> TrainSplit:
    """CIFAR-10's 40k train split (``split_train_val``, seed 42) and its channel statistics."""
    dataset = data_lib.load_cifar10(data_dir)
    train_idx, _ = data_lib.split_train_val(len(dataset.y_train), val_size, seed=split_seed)
    images, labels = dataset.x_train[train_idx], dataset.y_train[train_idx]
    mean, std = data_lib.channel_stats(images)
    with np.load(dataset.source) as npz:  # only the offline copy marks its pixel-exact images
        offline_copy = "train_exact" in npz.files
    note = dataset.note or (OFFLINE_COPY_NOTE if offline_copy else "CIFAR-10")
    return TrainSplit(images, labels, mean, std, dataset.source.name, note)


def random_split_like_cifar10(n_train: int, n_val: int, seed: int = 0) -> TrainSplit:
    """Random uint8 images of CIFAR-10's shape (HWC) with random labels: speed does not
    depend on pixel values, so a GPU machine without the data can still be timed."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(n_train + n_val, 32, 32, 3), dtype=np.uint8)
    labels = rng.integers(0, 10, size=n_train + n_val).astype(np.int64)
    mean, std = data_lib.channel_stats(images[:n_train])
    return TrainSplit(images, labels, mean, std, "random uint8",
                      "random uint8 images of CIFAR-10's shape; speed does not depend on pixel values")


# --------------------------------------------------------------------------- spread and load

RELIABLE_SPREAD = 1.25  # rounds whose ratios differ by more than this factor: the load changed under us
RELIABLE_FOREIGN_CPU = 0.10  # other processes' share of the CPU above which timings are unreliable


def _proc_jiffies() -> tuple[int, int] | None:
    """(busy, total) CPU jiffies of the whole machine since boot, from /proc/stat (Linux)."""
    try:
        fields = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    except (OSError, ValueError, IndexError):
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return sum(fields[:8]) - idle, sum(fields[:8])


def _own_jiffies() -> int:
    """CPU jiffies of this process, its finished children, and its live descendants (DataLoader workers)."""
    parents, times = {}, {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        fields = text[text.rindex(")") + 2:].split()
        pid = int(stat.parent.name)
        parents[pid] = int(fields[1])
        times[pid] = sum(int(v) for v in fields[11:13])  # utime, stime
        if pid == os.getpid():
            times[pid] += sum(int(v) for v in fields[13:15])  # cutime, cstime: reaped children
    own, total = {os.getpid()}, 0
    changed = True  # add children of known members until nothing changes
    while changed:
        changed = False
        for pid, parent in parents.items():
            if parent in own and pid not in own:
                own.add(pid)
                changed = True
    for pid in own:
        total += times.get(pid, 0)
    return total


class ForeignLoad:
    """Measures how much of the machine's CPU other processes used while a benchmark ran.

    ``with ForeignLoad() as load: ...`` then ``load.share`` is in [0, 1] (None off Linux).
    The load average cannot tell the benchmark's own load from someone else's; this can.
    """

    def __enter__(self):
        self._start = (_proc_jiffies(), _own_jiffies() if _proc_jiffies() else 0)
        self.share = None
        return self

    def __exit__(self, *exc):
        (start_sys, start_own), end_sys = self._start, _proc_jiffies()
        if start_sys and end_sys:
            busy, total = end_sys[0] - start_sys[0], end_sys[1] - start_sys[1]
            foreign = busy - (_own_jiffies() - start_own)
            self.share = max(foreign, 0) / total if total > 0 else None
        return False


def load_verdict(foreign_share: float | None, ratios: list[float] | None = None) -> str | None:
    """Why a result is unreliable, or None. Reasons: other processes used the CPU, or the rounds'
    ratios spread more than ``RELIABLE_SPREAD`` (the machine changed speed under us)."""
    reasons = []
    if foreign_share is not None and foreign_share > RELIABLE_FOREIGN_CPU:
        reasons.append(f"other processes used {100 * foreign_share:.0f}% of the CPU meanwhile")
    if ratios and min(ratios) > 0 and max(ratios) / min(ratios) > RELIABLE_SPREAD:
        reasons.append(f"the rounds' ratios spread {max(ratios) / min(ratios):.2f}x (> {RELIABLE_SPREAD}x)")
    return "; ".join(reasons) or None


# --------------------------------------------------------------------------- output


def format_table(columns: list[tuple[str, str, int]], rows: list[dict]) -> str:
    """A fixed-width text table; ``columns`` holds ``(key, title, width)``; the first column is
    left-aligned, the others right-aligned; floats print with thousands separators."""

    def cell(value, width, first):
        if value is None:
            text = "-"
        elif isinstance(value, float):
            text = f"{value:,.2f}" if abs(value) < 100 else f"{value:,.0f}"
        else:
            text = str(value)
        return f"{text:<{width}}" if first else f"{text:>{width}}"

    lines = ["  ".join(cell(title, w, i == 0) for i, (_, title, w) in enumerate(columns))]
    lines.append("  ".join("-" * w for _, _, w in columns))
    for row in rows:
        lines.append("  ".join(cell(row.get(key), w, i == 0) for i, (key, _, w) in enumerate(columns)))
    return "\n".join(lines)


def ratio_text(value: float | None) -> str | None:
    return None if value is None else f"{value:.2f}x"


def target_verdict(name: str, measured: float, minimum: float) -> dict:
    return {"what": name, "minimum_ratio": minimum, "measured_ratio": measured, "met": measured >= minimum}


def target_line(target: dict) -> str:
    verdict = "met" if target["met"] else "NOT met"
    return (f"target: {target['what']} >= {target['minimum_ratio']:g}x; "
            f"measured {target['measured_ratio']:.2f}x: {verdict}")


def write_json(payload: dict, out_dir: Path, name: str) -> Path:
    """Write ``<out_dir>/<name>.json`` atomically and return its path."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{name}.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(payload, indent=2) + "\n")
    os.replace(tmp, path)
    return path
