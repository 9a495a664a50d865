"""Benchmark 6: airbench94 itself beside the course's ``configs/fast_gpu_50k.yaml``, same GPU, same data.

The peer is the package index's ``airbench==0.1.8``, unmodified: its ``train94`` (airbench94's
protocol, 94.01% on the original CIFAR-10, mean of 1,000 runs on an A100). Its loader reads
``cifar10/train.pt`` and ``cifar10/test.pt`` under the working directory (a dict of uint8 images
``(N, 32, 32, 3)``, int64 labels and the class names) and downloads CIFAR-10 only when they are
missing: the offline copy is written there first, so nothing downloads and both sides see the same
images. On the offline copy (mostly JPEG-degraded) the peer's own accuracy is the bar to match.

Each seed runs the peer, then ours, in turn. The clock of each is one call's wall time, after the
device has finished: the peer's ``train94`` (loading its files, whitening, 9.9 epochs), the course's
``engine.train`` without its final evaluation (building the data, whitening, 476 steps); accuracies
are the test set's with the 6-view test-time augmentation both use. The first run of each side
pays cuDNN's autotuning and its memory allocations: with two or more seeds the means leave it out.

On a CPU (``--device cpu``, the GPU check's dry run) the peer cannot train (``train94`` needs CUDA):
its files are written and read back through its own loader, and ours trains a tiny version. Without
the package the peer's row says so in one line.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import time
from pathlib import Path

import numpy as np
import torch

from benchmarks.common import format_table
from course_utils import data as data_lib
from course_utils.config import CONFIG_DIR, load_config
from course_utils.engine import train

NAME = "peer"
PEER = "airbench94 (airbench==0.1.8, train94)"
OURS = "course, fast_gpu_50k.yaml"
CONFIG = "fast_gpu_50k.yaml"
SEEDS = 3
QUICK_OVERRIDES = ["train_per_class=20", "test_per_class=10", "width=8", "batch_size=50", "epochs=2",
                   "total_steps=7", "tta=flip"]
QUICK_IMAGES = (2_000, 1_000)  # train and test images written for the dry run's peer files
INSTALL_HINT = "pip install airbench==0.1.8"


def write_peer_files(folder: Path, data_dir=None, limit: tuple[int, int] | None = None) -> dict:
    """The offline CIFAR-10 copy in airbench's format: ``folder/cifar10/{train,test}.pt``. Returns
    what was written (image counts, the source file)."""
    dataset = data_lib.load_dataset(data_lib.SPECS["cifar10"], data_dir, download=False)
    target = Path(folder) / "cifar10"
    target.mkdir(parents=True, exist_ok=True)
    splits = {"train": (dataset.x_train, dataset.y_train), "test": (dataset.x_test, dataset.y_test)}
    counts = {}
    for i, (split, (images, labels)) in enumerate(splits.items()):
        n = len(labels) if limit is None else min(limit[i], len(labels))
        torch.save({"images": torch.from_numpy(np.ascontiguousarray(images[:n])),
                    "labels": torch.from_numpy(labels[:n].astype(np.int64)), "classes": list(dataset.classes)},
                   target / f"{split}.pt")
        counts[split] = n
    return {"train_images": counts["train"], "test_images": counts["test"], "source": dataset.source.name}


@contextlib.contextmanager
def working_directory(path: Path):
    previous = os.getcwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(previous)


def import_airbench():
    """The ``airbench`` module, or the one-line reason it cannot be used."""
    try:
        import airbench
    except Exception as err:  # not installed, or its imports fail
        return None, f"airbench not importable ({type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}); {INSTALL_HINT}"
    return airbench, None


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def run_peer_seed(airbench, seed: int, device: torch.device) -> dict:
    """One airbench94 run in the current directory (which holds ``cifar10/``): seconds and TTA accuracy."""
    torch.manual_seed(seed)  # airbench draws its order and crops from the global generator
    _synchronize(device)
    started = time.perf_counter()
    model = airbench.train94(verbose=False)
    _synchronize(device)
    seconds = time.perf_counter() - started
    test = airbench.CifarLoader("cifar10", train=False, batch_size=2000)
    return {"name": PEER, "seed": seed, "seconds": seconds, "test_acc": airbench.evaluate(model, test, tta_level=2),
            "test_acc_no_tta": airbench.evaluate(model, test, tta_level=0)}


def run_ours_seed(config, seed: int, run_dir: Path, device: torch.device) -> dict:
    shutil.rmtree(run_dir, ignore_errors=True)  # a fresh run: never a resumed timing
    _synchronize(device)
    started = time.perf_counter()
    run = train(config.replace(seed=seed), run_dir, progress=False, log=lambda line: None)
    _synchronize(device)
    seconds = time.perf_counter() - started - run.final["final_evaluation_seconds"]
    return {"name": OURS, "seed": seed, "seconds": seconds, "test_acc": run.final["last"]["test"]["accuracy"],
            "test_acc_no_tta": run.final["without_tta"]["test"]["accuracy"] if "without_tta" in run.final
            else run.final["last"]["test"]["accuracy"]}


def summarize(runs: list[dict], name: str, skipped: str | None = None) -> dict:
    """One side's row: mean accuracy over every seed, mean seconds over the warm seeds (all but the
    first, when there are two or more); empty with the reason when the side did not run."""
    mine = [r for r in runs if r["name"] == name]
    if not mine:
        return {"name": name, "seeds": 0, "test_acc": None, "seconds": None, "skipped": skipped or "no seed ran"}
    warm = mine[1:] if len(mine) > 1 else mine
    return {"name": name, "seeds": len(mine), "test_acc": float(np.mean([r["test_acc"] for r in mine])),
            "seconds": float(np.mean([r["seconds"] for r in warm])), "skipped": None,
            "seconds_over": "warm seeds" if len(mine) > 1 else "one (cold) run"}


def run(device: torch.device, out_dir: Path, *, quick: bool = False, seeds: int = SEEDS, budget_seconds: float = 150.0,
        data_dir=None, log=print) -> dict:
    """Run the peer and ours seed by seed while ``budget_seconds`` allows another pair; return the payload.
    ``quick`` (the dry run) runs at most two seeds: enough to exercise the warm-seed means."""
    started = time.perf_counter()
    seeds = min(seeds, 2) if quick else seeds
    work = Path(out_dir) / NAME
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    overrides = [f"device={device}", "checkpoint_every=100"] + (QUICK_OVERRIDES if quick else [])
    if data_dir is not None:
        overrides.append(f"data_dir={data_dir}")
    config = load_config(CONFIG_DIR / CONFIG, overrides)
    written = write_peer_files(work, config.data_dir, QUICK_IMAGES if quick else None)
    log(f"peer files: {written['train_images']:,} train and {written['test_images']:,} test images from "
        f"{written['source']} in {work / 'cifar10'} (train.pt, test.pt: airbench's loader reads them, nothing downloads)")
    airbench, peer_skip = import_airbench()
    if airbench is not None and device.type != "cuda":
        with working_directory(work):  # the dry run: its loader reads what was written
            loader = airbench.CifarLoader("cifar10", train=True, batch_size=500, gpu="cpu")
            assert len(loader.images) == written["train_images"], "airbench's loader read other images"
        peer_skip = f"train94 needs CUDA (the device is {device}); its loader read the {written['train_images']:,} written images"
    rows, pair_seconds = [], 0.0
    for seed in range(seeds):
        if seed and time.perf_counter() - started + pair_seconds > budget_seconds:
            log(f"seed {seed}: not started, the budget of {budget_seconds:.0f} s would not hold another pair")
            break
        pair_started = time.perf_counter()
        if peer_skip is None:
            with working_directory(work):
                rows.append(run_peer_seed(airbench, seed, device))
            log(_row_line(rows[-1]))
        rows.append(run_ours_seed(config, seed, work / f"ours-seed{seed}", device))
        log(_row_line(rows[-1]))
        pair_seconds = time.perf_counter() - pair_started
    peer, ours = summarize(rows, PEER, peer_skip), summarize(rows, OURS)
    comparison = None
    if peer["seeds"] and ours["seeds"]:
        comparison = {"accuracy_gap_points": 100 * (ours["test_acc"] - peer["test_acc"]),
                      "seconds_ratio": ours["seconds"] / peer["seconds"],
                      "matches": ours["test_acc"] >= peer["test_acc"] - 0.002 and ours["seconds"] <= 1.3 * peer["seconds"]}
    return {"benchmark": NAME, "title": "airbench94 beside the course's fast_gpu_50k.yaml, same device, same data",
            "device": str(device), "baseline": PEER, "rows": [peer, ours], "runs": rows, "peer_skipped": peer_skip,
            "comparison": comparison, "peer_files": written, "data_source": written["source"],
            "budget_seconds": budget_seconds,
            "notes": ["seconds: one call's wall time after the device finished (train94; engine.train without its "
                      "final evaluation); the mean leaves out each side's first (cold) run when there are two or more",
                      "accuracy: the test set with 6-view test-time augmentation (airbench's tta_level 2, the "
                      "course's flip_translate); on the offline copy, the peer's number is the bar",
                      "the bar: within 0.2 points of the peer's accuracy and within 1.3x its seconds"]}


def _row_line(row: dict) -> str:
    return (f"  {row['name']:<40} seed {row['seed']}: test {100 * row['test_acc']:6.2f}% (no TTA "
            f"{100 * row['test_acc_no_tta']:6.2f}%)  {row['seconds']:7.1f} s")


def format_result(payload: dict) -> str:
    columns = [("name", "run", 40), ("seeds", "seeds", 5), ("test_acc", "test acc (TTA)", 14), ("seconds", "seconds", 8)]
    rows = [{**r, "test_acc": None if r["test_acc"] is None else f"{100 * r['test_acc']:.2f}%"} for r in payload["rows"]]
    lines = [f"== {payload['title']}", format_table(columns, rows)]
    if payload["peer_skipped"]:
        lines.append(f"peer: SKIPPED: {payload['peer_skipped']}")
    comparison = payload["comparison"]
    if comparison:
        lines.append(f"ours vs the peer: {comparison['accuracy_gap_points']:+.2f} points, "
                     f"{comparison['seconds_ratio']:.2f}x its seconds: "
                     + ("within the bar (0.2 points, 1.3x)" if comparison["matches"] else "NOT within the bar (0.2 points, 1.3x)"))
    lines += [f"note: {n}" for n in payload["notes"]]
    return "\n".join(lines)
