"""Benchmark: the fast net's training step compiled by ``torch.compile`` against eager, side by side.

Same model, same weights, same batches, same device; the only difference is ``torch.compile``
(Inductor: fused elementwise kernels around oneDNN convolutions on a CPU). Compiling is paid once,
so the row also reports its cost and what it means for ``configs/fast.yaml``'s 18 epochs: the
saving over the whole run, compile time counted. ``--quick`` compiles with the ``eager`` backend
(Dynamo's graph capture only): seconds instead of minutes, for tests; its numbers mean nothing.
"""

from __future__ import annotations

import math
import time

import torch

from benchmarks.common import (Contestant, TrainSplit, endless, format_table, measure_side_by_side, round_ratios,
                               spread_text, synchronizer)
from course_utils import engine
from course_utils.config import CONFIG_DIR, load_config
from course_utils.loader import BatchIterator
from course_utils.repro import seed_everything
from course_utils.schedule import warmup_schedule

NAME = "compile"
BASELINE = "eager"


def run(split: TrainSplit, device: torch.device, *, quick: bool = False, log=print) -> dict:
    config = load_config(CONFIG_DIR / "fast.yaml", ["width=16", "batch_size=50"] if quick else [])
    batch = config.batch_size
    images = torch.as_tensor(split.images[: 4 * batch]).permute(0, 3, 1, 2).contiguous()
    sync = synchronizer(device)
    first_step_seconds = {}

    def trainer(name: str, compiled: bool):
        seed_everything(0)
        model = engine.build_model(config, 10).to(device).to(memory_format=torch.channels_last)
        trainable = torch.compile(model, backend="eager" if quick else "inductor") if compiled else model
        optimizer = engine.build_optimizer(config, model)
        scheduler = warmup_schedule(optimizer, 10_000, 10, config.eta_min, config.schedule)
        scaler = torch.amp.GradScaler(device.type, enabled=False)
        criterion = torch.nn.CrossEntropyLoss(label_smoothing=config.label_smoothing)
        batches = endless(BatchIterator(images, split.labels[: len(images)], batch, split.mean, split.std, train=True,
                                        padding=2, pad_mode="reflect", device=device, channels_last=True))

        def step() -> int:
            x, y = next(batches)
            engine.train_step(trainable, x, y, criterion, optimizer, scaler, scheduler, "fp32")
            return len(y)

        started = time.perf_counter()  # the first step: graph capture and code generation when compiled
        step()
        sync()
        first_step_seconds[name] = time.perf_counter() - started
        return step

    compiled_name = "torch.compile" + (" (eager backend)" if quick else " (inductor)")
    contestants = [Contestant(BASELINE, trainer(BASELINE, False)), Contestant(compiled_name, trainer(compiled_name, True))]
    warmup, repeats, steps = (1, 2, 1) if quick else (2, 5, 3)
    log(f"compile: fast net ({config.model}, width {config.width}), batch {batch}, fp32, {repeats} windows of {steps} "
        f"steps; first steps: eager {first_step_seconds[BASELINE]:.1f} s, compiled {first_step_seconds[compiled_name]:.1f} s")
    measured = measure_side_by_side(contestants, warmup=warmup, repeats=repeats, steps=steps, device=device,
                                    settle=not quick, log=log)
    eager, compiled = measured[BASELINE], measured[compiled_name]
    ratio = compiled.images_per_s / eager.images_per_s
    compile_seconds = first_step_seconds[compiled_name] - first_step_seconds[BASELINE]
    run_steps = config.epochs * math.ceil(40_000 / batch)  # fast.yaml on the 40k split
    saved = run_steps * batch * (1 / eager.images_per_s - 1 / compiled.images_per_s) - compile_seconds
    return {"benchmark": NAME, "title": f"torch.compile vs eager: the fast net's train step, batch {batch}, fp32",
            "device": str(device), "baseline": BASELINE,
            "rows": [{"name": n, "images_per_s": m.images_per_s, "windows_images_per_s": m.windows_images_per_s}
                     for n, m in measured.items()],
            "compiled_vs_eager": ratio, "ratio_rounds": round_ratios(compiled, eager),
            "compile_seconds": compile_seconds, "run_steps": run_steps, "run_seconds_saved": saved,
            "verdict": (f"compiled steps are {ratio:.2f}x eager's; over fast.yaml's {run_steps} steps that "
                        f"{'saves' if saved > 0 else 'costs'} {abs(saved) / 60:.1f} min with the "
                        f"{compile_seconds:.0f} s of compiling counted")}


def format_result(payload: dict) -> str:
    columns = [("name", "train step", 28), ("images_per_s", "images/s", 10)]
    return "\n".join([f"== {payload['title']}", format_table(columns, payload["rows"]),
                      f"compiled / eager: {payload['compiled_vs_eager']:.2f}x ({spread_text(payload['ratio_rounds'])})",
                      f"compiling (first step, beyond eager's): {payload['compile_seconds']:.1f} s",
                      f"verdict: {payload['verdict']}"])
