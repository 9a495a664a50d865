"""How long a lesson's training will take: measured here, and estimated for reference GPUs.

Before a lesson trains, it calls ``announce_training`` with the runs it is about to train:

    from course_utils.timing import announce_training
    announce_training({"resnet18": (config, RUN_DIR)}, DEVICE, PROFILE)

It times a few real optimizer steps (``engine.train_step``: the config's model, batch size,
precision and memory format, on this device) and multiplies by the steps each run still has
to take (a finished run takes none; an interrupted one only its remaining epochs). The batches
are random tensors: a step's cost does not depend on the pixels, and the course's data path
adds little (it is a few tensor ops on the device).

``reference_gpu_hours`` is different: an *estimate* for GPUs we do not have, from FLOPs.
FLOPs per image are counted by ``torch.utils.flop_counter`` on one real forward+backward
pass; the throughput assumed for each GPU is its published dense tensor-core peak times a
utilization we assume (see ``REFERENCE_GPUS``). Nothing in it is measured on those GPUs.
"""

from __future__ import annotations

import functools
import math
import time
from pathlib import Path

import torch

from course_utils.config import TrainConfig

TRAIN_IMAGES = 50_000  # CIFAR-10 and CIFAR-100 training sets, before the train/val split
TEST_IMAGES = 10_000  # CIFAR-10 and CIFAR-100 test sets
NUM_CLASSES = {"cifar10": 10, "cifar100": 100}

# Published dense tensor-core peaks (NVIDIA data sheets: T4 fp16 65 TFLOPS; A100 bf16 312 TFLOPS)
# times an ASSUMED utilization. CIFAR's 32x32 feature maps at batch 128 are small kernels with
# launch overhead between them, so these GPUs run far below peak; the bigger the GPU, the more
# it idles (hence 10% for the T4, 5% for the A100). These are assumptions, not measurements.
REFERENCE_GPUS = {
    "T4": {"peak_flops": 65e12, "utilization": 0.10, "precision": "fp16"},
    "A100": {"peak_flops": 312e12, "utilization": 0.05, "precision": "bf16"},
}
ONE_HOUR = 3600.0


def train_images(config: TrainConfig) -> int:
    """Training images per epoch, from the config alone (no data loaded); exact unless long-tailed."""
    from course_utils.data import long_tailed_counts

    classes = NUM_CLASSES.get(config.dataset, 10)
    per_class = (TRAIN_IMAGES - config.val_size) // classes
    counts = [per_class] * classes
    if config.imbalance_ratio is not None:
        counts = list(long_tailed_counts(per_class, classes, config.imbalance_ratio))
    if config.train_per_class is not None:
        counts = [min(c, config.train_per_class) for c in counts]
    return int(sum(counts))


def validation_images(config: TrainConfig) -> int:
    classes = NUM_CLASSES.get(config.dataset, 10)
    if config.val_per_class is not None:
        return min(config.val_per_class * classes, config.val_size)
    return config.val_size


def test_images(config: TrainConfig) -> int:
    """Test images a run evaluates: CIFAR's 10,000, or ``test_per_class`` of each class."""
    if config.test_per_class is not None:
        return min(config.test_per_class * NUM_CLASSES.get(config.dataset, 10), TEST_IMAGES)
    return TEST_IMAGES


def steps_per_epoch(config: TrainConfig) -> int:
    return math.ceil(train_images(config) / config.batch_size)


def epochs_left(config: TrainConfig, run_dir=None) -> int:
    """Epochs ``engine.train`` will still run in ``run_dir``: none if finished, the rest if interrupted."""
    if run_dir is None:
        return config.epochs
    run_dir = Path(run_dir)
    if (run_dir / "final.json").exists():
        return 0
    metrics = run_dir / "metrics.csv"
    if (run_dir / "last.pt").exists() and metrics.exists():
        done = max(0, len(metrics.read_text().strip().splitlines()) - 1)  # minus the header
        return max(0, config.epochs - done)
    return config.epochs


def _timing_key(config: TrainConfig) -> tuple:
    return (config.model, config.width, config.norm, config.batch_size, config.dataset, config.optimizer,
            config.precision, config.memory_format, config.compile)


_STEP_SECONDS: dict[tuple, float] = {}  # one timing per (model, width, batch, ..., device) per kernel


def _time_steps(config: TrainConfig, device_name: str, steps: int) -> float:
    from course_utils import engine
    from course_utils.repro import resolve_channels_last, resolve_precision

    device = torch.device(device_name)
    precision = resolve_precision(device, config.precision)
    model = engine.build_model(config, NUM_CLASSES.get(config.dataset, 10)).to(device)
    channels_last = resolve_channels_last(device, config.memory_format, config.width)
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    model.train()
    optimizer = engine.build_optimizer(config, model)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1e-3)  # tiny steps: nothing diverges
    scaler = torch.amp.GradScaler(device.type, enabled=precision == "fp16")
    criterion = torch.nn.CrossEntropyLoss()
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(config.batch_size, 3, 32, 32, generator=generator).to(device, memory_format=memory_format)
    y = torch.randint(0, NUM_CLASSES.get(config.dataset, 10), (config.batch_size,), generator=generator).to(device)

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    engine.train_step(model, x, y, criterion, optimizer, scaler, scheduler, precision)  # warm-up (allocations, cuDNN)
    sync()
    started = time.perf_counter()
    for _ in range(steps):
        engine.train_step(model, x, y, criterion, optimizer, scaler, scheduler, precision)
    sync()
    return (time.perf_counter() - started) / steps


def seconds_per_step(config: TrainConfig, device, steps: int = 3) -> float:
    """Measured seconds of one optimizer step of ``config`` on ``device`` (mean of ``steps`` after a warm-up)."""
    key = (*_timing_key(config), str(torch.device(device)), steps)
    if key not in _STEP_SECONDS:
        _STEP_SECONDS[key] = _time_steps(config, str(torch.device(device)), steps)
    return _STEP_SECONDS[key]


def run_seconds(config: TrainConfig, step_seconds: float, epochs: int) -> float:
    """Training plus per-epoch validation: a forward pass costs about a third of a training step."""
    per_epoch = steps_per_epoch(config) * step_seconds
    per_epoch += validation_images(config) / config.batch_size * step_seconds / 3
    return epochs * per_epoch


def format_duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def estimate_training(runs: dict, device, steps: int = 3) -> list[dict]:
    """One row per run: ``{"run", "model", "width", "batch", "epochs_left", "steps", "s_per_step", "seconds"}``.

    ``runs`` maps a name to ``config`` or ``(config, run_dir)``; with a run directory, a finished
    run counts zero steps and an interrupted one its remaining epochs.
    """
    rows = []
    for name, spec in runs.items():
        config, run_dir = spec if isinstance(spec, tuple) else (spec, None)
        left = epochs_left(config, run_dir)
        step_s = seconds_per_step(config, device, steps) if left else 0.0
        rows.append({"run": name, "model": config.model, "width": config.width, "batch": config.batch_size,
                     "epochs_left": left, "steps": left * steps_per_epoch(config), "s_per_step": step_s,
                     "seconds": run_seconds(config, step_s, left)})
    return rows


def announce_training(runs: dict, device, profile: str, steps: int = 3) -> float:
    """Print how long the training ahead will take here (from timed steps); return the seconds.

    Call it before a lesson trains, with every run the lesson will train. If ``auto`` chose a
    profile and the estimate exceeds an hour, it says so loudly and names cheaper profiles.
    """
    from course_utils.tables import text_table

    rows = estimate_training(runs, device, steps)
    total = sum(r["seconds"] for r in rows)
    device = torch.device(device)
    print(f"training ahead in the {profile} profile on {device} (each model's step timed {steps}x here):")
    print(text_table(["run", "model", "width", "batch", "epochs to run", "steps", "s/step", "estimate"],
                     [[r["run"], r["model"], r["width"], r["batch"], r["epochs_left"], f"{r['steps']:,}",
                       f"{r['s_per_step']:.3f}" if r["steps"] else "-",
                       format_duration(r["seconds"]) if r["steps"] else "done (loads)"] for r in rows]))
    print(f"estimated total: {format_duration(total)} (finished runs are loaded, not trained again)")
    if total > ONE_HOUR and profile != "full":
        print("WARNING: more than an hour. For less, set profile = \"smoke\" (minutes, numbers that only show it runs).")
    return total


# --- estimates for reference GPUs (FLOPs, not measured) --------------------------------------

@functools.lru_cache(maxsize=None)
def _train_flops_per_image(model: str, width: int, norm: str, dataset: str) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    from course_utils.models import create_model

    net = create_model(model, num_classes=NUM_CLASSES.get(dataset, 10), norm=norm, width=width)
    net.train()
    x = torch.randn(2, 3, 32, 32)
    with FlopCounterMode(display=False) as counter:
        net(x).sum().backward()
    return counter.get_total_flops() / 2


def train_flops_per_image(config: TrainConfig) -> float:
    """FLOPs of one training image (forward + backward), counted by torch's FlopCounterMode."""
    return _train_flops_per_image(config.model, config.width, config.norm, config.dataset)


def run_flops(config: TrainConfig) -> float:
    """FLOPs of a whole run: training images x epochs, plus a forward pass (a third) over validation."""
    per_image = train_flops_per_image(config)
    return config.epochs * per_image * (train_images(config) + validation_images(config) / 3)


def reference_gpu_hours(configs) -> dict[str, float]:
    """ESTIMATED hours of the given runs on each ``REFERENCE_GPUS`` entry: FLOPs / (peak x utilization)."""
    flops = sum(run_flops(c) for c in configs)
    return {gpu: flops / (spec["peak_flops"] * spec["utilization"]) / ONE_HOUR for gpu, spec in REFERENCE_GPUS.items()}


def format_reference_estimate(configs) -> str:
    hours = reference_gpu_hours(configs)
    shown = ", ".join(f"{gpu} ~{format_duration(h * ONE_HOUR)}" for gpu, h in hours.items())
    assumptions = "; ".join(f"{gpu}: {spec['peak_flops'] / 1e12:.0f} TFLOPS {spec['precision']} peak x "
                            f"{spec['utilization']:.0%} assumed utilization" for gpu, spec in REFERENCE_GPUS.items())
    return f"ESTIMATE, not measured: {shown} (counted FLOPs / assumed throughput; {assumptions})"
