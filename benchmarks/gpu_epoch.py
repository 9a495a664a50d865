"""Benchmark 3: seconds per epoch of the reference recipe on a GPU, each speed setting on and off.

An epoch of the reference recipe is 40k training images at batch 128 and a validation pass
over 10k images (the engine's batch 512). Each row is timed over a fixed number of steps
(training) and batches (validation) and extrapolated: ``epoch s = 40000 / train img/s +
10000 / validation img/s``; the projection for the 200-epoch recipe is 200 of those (plus the
one-off warmup, e.g. compilation). The images are random uint8 of CIFAR-10's shape: speed does
not depend on pixel values, and a GPU machine need not hold the data.

The rows are benchmark 2's (reference loop; course data path; channels_last; bf16; fp16;
torch.compile) plus bf16 without channels_last and deterministic mode off. On a CPU
(``--device cpu --only gpu --quick``) it is a dry run of the code path: rows that need CUDA
are listed as skipped and the output says the device is not a GPU.
"""

from __future__ import annotations

import dataclasses
import time

import torch

from benchmarks.common import (
    Contestant,
    format_table,
    measure_side_by_side,
    random_split_like_cifar10,
    ratio_text,
)
from benchmarks.training import (
    REFERENCE_TRAIN_IMAGES,
    REFERENCE_VAL_IMAGES,
    build_trainer,
    default_width,
    device_images,
    plan_variants,
    ratio_rows,
    reference_config,
)

NAME = "gpu_epoch"
EPOCHS = 200
TIME_LIMIT_S = 100  # the GPU check's limit for this step on one H100; the step counts below are sized for it
REFERENCE_WORKERS = 2  # the tutorial's DataLoader(num_workers=2)


@dataclasses.dataclass(frozen=True)
class Steps:
    train_warmup: int
    train_repeats: int
    train_steps: int
    val_warmup: int
    val_repeats: int
    val_batches: int
    n_train: int  # random images to train on (the projection uses the real epoch's 40k)
    n_val: int  # random validation images: 50 batches, so no timed window spans a DataLoader restart


# 8 rows x (8 + 2 x 30) steps: ~10 s of steps on an H100 at ~15 ms each, the rest is start-up, one compile and
# the DataLoader rows' workers; 2 windows still give a spread.
FULL_STEPS = Steps(train_warmup=8, train_repeats=2, train_steps=30, val_warmup=2, val_repeats=2, val_batches=5,
                   n_train=REFERENCE_TRAIN_IMAGES, n_val=25_600)
QUICK_STEPS = Steps(train_warmup=1, train_repeats=2, train_steps=1, val_warmup=1, val_repeats=1, val_batches=1,
                    n_train=1024, n_val=1024)


def run(device: torch.device, *, quick: bool = False, width: int | None = None, compile_on_cpu: bool = False,
        ref_workers: int = REFERENCE_WORKERS, log=print) -> dict:
    started = time.perf_counter()
    width = width or default_width(device, quick)
    config = reference_config(width)
    steps = QUICK_STEPS if quick else FULL_STEPS
    split = random_split_like_cifar10(steps.n_train, steps.n_val)
    variants = plan_variants(device, config, ref_workers, compile_on_cpu, extended=True)
    shared = device_images(split, device)
    trainers = {v.name: build_trainer(v, config, device, split, ref_workers, shared, train_stop=steps.n_train)
                for v in variants if v.skip_reason is None}

    def contestants(kind: str, settle_tutorial: int) -> list[Contestant]:
        out = []
        for v in variants:
            if v.skip_reason is None:
                t = trainers[v.name]
                step = t.step if kind == "train" else (lambda t=t: t.validate(steps.val_batches))
                out.append(Contestant(v.name, step, settle=settle_tutorial if v.loop == "tutorial" else 1,
                                      activate=t.activate))
        return out

    log(f"gpu epoch: ResNet-18 width {width}, batch {config.batch_size}, {len(trainers)} rows; training "
        f"{steps.train_repeats} windows of {steps.train_steps} steps after {steps.train_warmup} warmup steps")
    train = measure_side_by_side(contestants("train", 1 + 2 * ref_workers), warmup=steps.train_warmup,
                                 repeats=steps.train_repeats, steps=steps.train_steps, device=device,
                                 settle=not quick, log=log)
    log(f"validation: {steps.val_repeats} windows of {steps.val_batches} batches of 512")
    val = measure_side_by_side(contestants("val", 1), warmup=steps.val_warmup, repeats=steps.val_repeats,
                               steps=1, device=device, settle=not quick, log=log)

    epoch_seconds = {name: REFERENCE_TRAIN_IMAGES / train[name].images_per_s
                     + REFERENCE_VAL_IMAGES / val[name].images_per_s for name in trainers}
    rows = ratio_rows(variants, epoch_seconds, key="epoch_seconds")
    for row in rows:
        name = row["name"]
        measured = name in trainers
        # For seconds, a speed-up is the inverse ratio: baseline seconds / these seconds.
        for key in ("speedup_vs_reference", "speedup_vs_compared"):
            row[key] = None if row[key] is None else 1.0 / row[key]
        row["train_images_per_s"] = train[name].images_per_s if measured else None
        row["val_images_per_s"] = val[name].images_per_s if measured else None
        row["warmup_seconds"] = train[name].warmup_seconds if measured else None
        row["projected_200_epochs_hours"] = ((EPOCHS * epoch_seconds[name] + train[name].warmup_seconds) / 3600
                                             if measured else None)
    on_gpu = device.type == "cuda"
    default = next(r for r in rows if r["course_default"])
    seconds = time.perf_counter() - started
    return {
        "benchmark": NAME,
        "title": f"Seconds per epoch of the reference recipe (train 40k + validation 10k), ResNet-18 width {width}, "
                 f"batch {config.batch_size}",
        "device": str(device),
        "device_is_gpu": on_gpu,
        "device_note": None if on_gpu else ("the device is not a GPU: this is a dry run of the code path; its "
                                            "numbers say nothing about the GPU result"),
        "width": width,
        "data": split.note,
        "baseline": variants[0].name,
        "baseline_why": "kuangliu/pytorch-cifar's train()/test() loops over torchvision DataLoaders "
                        f"(num_workers={ref_workers}, pinned memory), NCHW float32, eager, cudnn.benchmark on",
        "steps": dataclasses.asdict(steps),
        "epochs_projected": EPOCHS,
        "rows": rows,
        "course_default": default["name"],
        "course_vs_baseline": default["speedup_vs_reference"],
        "seconds": seconds,
        "time_limit_seconds": TIME_LIMIT_S,
        "notes": [
            f"measured over a fixed number of steps and extrapolated per epoch: epoch s = "
            f"{REFERENCE_TRAIN_IMAGES} / train img/s + {REFERENCE_VAL_IMAGES} / validation img/s",
            f"projected {EPOCHS}-epoch time = {EPOCHS} epochs + the row's warmup (compilation) once; "
            "checkpoint writes and the final evaluation are not included",
            "random uint8 images of CIFAR-10's shape: speed does not depend on pixel values",
            "validation runs the eager model, as engine.train does (compile applies to training steps)",
        ],
    }


def format_result(payload: dict) -> str:
    columns = [("label", "row", 52), ("epoch_seconds", "s/epoch", 8), ("train_ips", "train img/s", 11),
               ("val_ips", "val img/s", 9), ("hours", "200 ep (h)", 10), ("vs_ref", "vs ref", 7),
               ("vs_cmp", "vs compared", 11), ("effect", "what the comparison isolates", 30)]
    rows = []
    for r in payload["rows"]:
        rows.append({
            "label": r["name"] + (" [course default]" if r["course_default"] else ""),
            "epoch_seconds": r["epoch_seconds"], "train_ips": r["train_images_per_s"],
            "val_ips": r["val_images_per_s"], "hours": r["projected_200_epochs_hours"],
            "vs_ref": ratio_text(r["speedup_vs_reference"]), "vs_cmp": ratio_text(r["speedup_vs_compared"]),
            "effect": f"skipped: {r['skipped']}" if r["skipped"] else (r["effect"] or "baseline"),
        })
    lines = [f"== {payload['title']}"]
    if payload["device_note"]:
        lines.append(f"NOTE: {payload['device_note']}")
    lines += [format_table(columns, rows), f"baseline: {payload['baseline']} ({payload['baseline_why']})",
              f"data: {payload['data']}",
              f"took {payload['seconds']:.0f} s (limit on one H100: {payload['time_limit_seconds']} s)"]
    lines += [f"note: {n}" for n in payload["notes"]]
    return "\n".join(lines)
