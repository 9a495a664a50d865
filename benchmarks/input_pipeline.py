"""Benchmark 1: images/s of the course's batched tensor pipeline against torchvision's.

Course: ``loader.BatchIterator(train=True)``: the 40k split as one uint8 tensor; per batch a
gather, random crop (pad 4) + horizontal flip as batched tensor ops, normalize.
Baseline: the standard pipeline: a Dataset that turns each HWC uint8 array into a PIL image
(as ``torchvision.datasets.CIFAR10`` does) and applies ``augment.torchvision_train_transform``
(RandomCrop(32, padding=4), RandomHorizontalFlip, ToTensor, Normalize), through a
``DataLoader`` with ``shuffle=True`` and ``num_workers`` 0 and 2. Same images, same batch size.
The better torchvision setting is the baseline that ratios are taken against.
"""

from __future__ import annotations

import dataclasses

import torch

from benchmarks.common import (
    TrainSplit,
    format_table,
    measure_side_by_side,
    ratio_text,
    round_ratios,
    spread_text,
    target_line,
    target_verdict,
)
from course_utils.throughput import course_name, pipeline_contestants, torchvision_name

NAME = "input_pipeline"
BATCH_SIZE = 128
WORKER_SETTINGS = (0, 2)
TARGET_RATIO = 5.0  # course pipeline vs the better torchvision setting, on the course's 2-core CPU


@dataclasses.dataclass(frozen=True)
class Steps:
    warmup: int  # batches before timing (worker start-up, first-call costs)
    repeats: int  # measured windows per pipeline; the median is reported
    batches: int  # batches per window


FULL_STEPS = Steps(warmup=5, repeats=9, batches=20)  # 9 paired rounds: a median that one bad round cannot move
QUICK_STEPS = Steps(warmup=1, repeats=2, batches=2)


def run(split: TrainSplit, device: torch.device, quick: bool = False, log=print) -> dict:
    """Measure the three pipelines side by side; return the JSON payload (rows, baseline, target)."""
    steps = QUICK_STEPS if quick else FULL_STEPS
    contestants = pipeline_contestants(split.images, split.labels, split.mean, split.std, BATCH_SIZE,
                                       device=device, workers=WORKER_SETTINGS)
    log(f"input pipeline: {len(split.labels):,} train images, batch {BATCH_SIZE}, "
        f"{steps.repeats} windows of {steps.batches} batches after {steps.warmup} warmup batches")
    measured = measure_side_by_side(contestants, warmup=steps.warmup, repeats=steps.repeats,
                                    steps=steps.batches, device=device, settle=not quick, log=log)

    best_workers = max(WORKER_SETTINGS, key=lambda w: measured[torchvision_name(w)].images_per_s)
    baseline = torchvision_name(best_workers)
    base_ips = measured[baseline].images_per_s
    rows = []
    for c in contestants:
        m = measured[c.name]
        rows.append({
            "name": c.name,
            "pipeline": "course" if c.name.startswith("course") else "torchvision",
            "num_workers": None if c.name.startswith("course") else int(c.name.rsplit("=", 1)[1]),
            "images_per_s": m.images_per_s,
            "windows_images_per_s": m.windows_images_per_s,
            "warmup_seconds": m.warmup_seconds,
            "speedup_vs_baseline": m.images_per_s / base_ips,
            "round_ratios_vs_baseline": round_ratios(m, measured[baseline]),
        })
    course_ratio = measured[course_name(device)].images_per_s / base_ips
    payload = {
        "benchmark": NAME,
        "title": "Input pipeline: images/s of training batches (crop + flip + normalize), batch 128",
        "device": str(device),
        "baseline": baseline,
        "baseline_why": "the better of the two torchvision DataLoader settings on this machine",
        "best_torchvision_workers": best_workers,
        "batch_size": BATCH_SIZE,
        "images": len(split.labels),
        "steps": dataclasses.asdict(steps),
        "rows": rows,
        "course_vs_baseline": course_ratio,
        "ratio_rounds": round_ratios(measured[course_name(device)], measured[baseline]),
        "notes": [
            "median of the windows; warmup batches (worker start-up, first calls) are excluded, "
            "which favours the DataLoader: a tutorial's loader restarts its workers every epoch",
            "on cuda the course pipeline keeps the split on the GPU; torchvision batches are copied "
            "to the GPU (pinned memory) before they count" if device.type == "cuda" else
            "on cpu both pipelines produce float32 NCHW batches in main memory",
        ],
    }
    if device.type == "cpu":
        payload["target"] = target_verdict("course pipeline vs the better torchvision setting on this CPU",
                                           course_ratio, TARGET_RATIO)
    return payload


def format_result(payload: dict) -> str:
    columns = [("name", "pipeline", 38), ("images_per_s", "images/s", 10), ("ratio", "vs baseline", 11),
               ("spread", "spread of the paired rounds", 27)]
    rows = [{**r, "ratio": ratio_text(r["speedup_vs_baseline"]), "spread": spread_text(r["round_ratios_vs_baseline"])}
            for r in payload["rows"]]
    lines = [f"== {payload['title']}", format_table(columns, rows),
             f"baseline: {payload['baseline']} ({payload['baseline_why']})"]
    if "target" in payload:
        lines.append(target_line(payload["target"]))
    lines += [f"note: {n}" for n in payload["notes"]]
    return "\n".join(lines)
