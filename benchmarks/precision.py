"""Benchmark 5: the fast net's training step in bf16 autocast against fp32, side by side.

PyTorch issue #183815 (a conv2d bf16 regression on CPUs since torch 2.13) makes bf16 autocast far
slower than fp32 on some CPUs; the engine therefore trains in fp32 on CPUs (``precision: auto``).
This row keeps watching: the day a torch release fixes it, the ratio says so.
"""

from __future__ import annotations

import torch

from benchmarks.common import (Contestant, TrainSplit, endless, format_table, measure_side_by_side, round_ratios,
                               spread_text)
from course_utils import engine
from course_utils.config import CONFIG_DIR, load_config
from course_utils.loader import BatchIterator
from course_utils.repro import resolve_precision, seed_everything
from course_utils.schedule import warmup_schedule

NAME = "precision"
BATCH = {"cpu": 256, "cuda": 1000}


def run(split: TrainSplit, device: torch.device, *, quick: bool = False, log=print) -> dict:
    batch = 16 if quick else BATCH[device.type]
    config = load_config(CONFIG_DIR / "fast.yaml", [f"batch_size={batch}"] + (["width=16"] if quick else []))
    images = torch.as_tensor(split.images[: 20 * batch]).permute(0, 3, 1, 2).contiguous()

    def trainer(precision: str):
        seed_everything(0)
        model = engine.build_model(config, 10).to(device).to(memory_format=torch.channels_last)
        optimizer = engine.build_optimizer(config, model)
        scheduler = warmup_schedule(optimizer, 1000, 10, config.eta_min, config.schedule)
        scaler = torch.amp.GradScaler(device.type, enabled=precision == "fp16")
        criterion = torch.nn.CrossEntropyLoss(label_smoothing=config.label_smoothing)
        batches = endless(BatchIterator(images, split.labels[: len(images)], batch, split.mean, split.std, train=True,
                                        padding=2, pad_mode="reflect", device=device, channels_last=True))

        def step() -> int:
            x, y = next(batches)
            engine.train_step(model, x, y, criterion, optimizer, scaler, scheduler, precision)
            return len(y)
        return step

    names = {"fp32": "fp32", "bf16": "bf16 autocast"}
    contestants = [Contestant(names[p], trainer(p)) for p in names]
    warmup, repeats, steps = (1, 2, 1) if quick else (2, 5, 3)
    log(f"precision: fast net ({config.model}, width {config.width}), batch {batch}, {repeats} windows of {steps} steps")
    measured = measure_side_by_side(contestants, warmup=warmup, repeats=repeats, steps=steps, device=device,
                                    settle=not quick, log=log)
    fp32, bf16 = measured["fp32"], measured["bf16 autocast"]
    ratio = bf16.images_per_s / fp32.images_per_s
    engine_choice = resolve_precision(device, "auto")
    return {"benchmark": NAME, "title": f"bf16 autocast vs fp32: the fast net's train step, batch {batch}",
            "device": str(device), "baseline": "fp32",
            "rows": [{"name": n, "images_per_s": m.images_per_s, "windows_images_per_s": m.windows_images_per_s}
                     for n, m in measured.items()],
            "bf16_vs_fp32": ratio, "ratio_rounds": round_ratios(bf16, fp32), "engine_auto_precision": engine_choice,
            "verdict": (f"bf16 is {1 / ratio:.1f}x slower here: the engine's 'auto' ({engine_choice}) is right"
                        if ratio < 1 else f"bf16 is {ratio:.2f}x faster here: reconsider 'auto' ({engine_choice})")}


def format_result(payload: dict) -> str:
    columns = [("name", "precision", 16), ("images_per_s", "images/s", 10)]
    lines = [f"== {payload['title']}", format_table(columns, payload["rows"]),
             f"bf16 / fp32: {payload['bf16_vs_fp32']:.2f}x ({spread_text(payload['ratio_rounds'])})",
             f"verdict: {payload['verdict']}"]
    return "\n".join(lines)
