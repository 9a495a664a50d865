"""Benchmark 2: end-to-end training throughput, the course's engine setup against a tutorial loop.

Course rows run the engine's own pieces (``engine.build_model``, ``engine.build_optimizer``,
``loader.BatchIterator``, ``repro.resolve_*``, ``repro.autocast``, the warmup-cosine schedule and
gradient scaler) through ``EngineTrainer.step``, which calls ``engine.train_step``, the step
``engine.train`` itself runs. The baseline is the loop of a typical
tutorial (kuangliu/pytorch-cifar's ``train()``): the torchvision DataLoader of benchmark 1 with
its better worker setting, NCHW float32, eager, ``loss.item()`` every step, same model, same
optimizer, same batch size. Ablation rows change one setting at a time and name the row they
are compared with, so each speed-up's contribution is its own ratio.
"""

from __future__ import annotations

import dataclasses
import math

import torch

from benchmarks.common import (
    Contestant,
    TrainSplit,
    endless,
    format_table,
    measure_side_by_side,
    ratio_text,
    round_ratios,
    spread_text,
    target_line,
    target_verdict,
    torchvision_loader,
)
from course_utils import engine
from course_utils.augment import torchvision_eval_transform, torchvision_train_transform
from course_utils.config import TrainConfig
from course_utils.evaluate import evaluate
from course_utils.loader import BatchIterator
from course_utils.profiles import profile_config
from course_utils.repro import resolve_channels_last, resolve_precision, seed_everything, set_deterministic
from course_utils.schedule import warmup_cosine

NAME = "training"
NUM_CLASSES = 10
REFERENCE_TRAIN_IMAGES = 40_000
REFERENCE_VAL_IMAGES = 10_000
EVAL_BATCH_SIZE = 512  # the engine's evaluation batch size
CPU_WIDTH = 16  # the laptop profile's width: width 64 trains at ~30 img/s on a 2-core CPU
QUICK_WIDTH = 8
TARGET_RATIO = 1.5  # course engine setup vs the reference loop, on the course's 2-core CPU
REFERENCE = "reference loop"


@dataclasses.dataclass(frozen=True)
class Steps:
    warmup: int  # training steps before timing (first calls, worker start-up, compilation)
    repeats: int  # measured windows per row; the median is reported
    steps: int  # training steps per window


STEPS = {("cpu", False): Steps(3, 7, 5), ("cuda", False): Steps(10, 5, 20),
         ("cpu", True): Steps(1, 2, 1), ("cuda", True): Steps(2, 2, 2)}


@dataclasses.dataclass(frozen=True)
class Variant:
    """One row: a loop and its speed settings."""

    name: str
    loop: str  # "engine" (BatchIterator + the engine's step) or "tutorial" (DataLoader + tutorial step)
    channels_last: bool
    precision: str  # fp32 | bf16 | fp16
    compile: bool = False
    deterministic: bool = True  # the engine's set_deterministic(config.deterministic)
    compared_to: str | None = None  # the row this one differs from in one setting
    effect: str = ""  # what that comparison isolates
    course_default: bool = False  # the settings that engine.train picks by itself (config "auto")
    skip_reason: str | None = None  # why this row is not measured on this device

    @property
    def settings(self) -> str:
        fmt = "channels_last" if self.channels_last else "NCHW"
        return f"{fmt}, {self.precision}, {'compiled' if self.compile else 'eager'}"


def reference_config(width: int) -> TrainConfig:
    """The reference recipe (``configs/config.yaml``) at ``width``."""
    return profile_config("full", [f"width={width}"])


def default_width(device: torch.device, quick: bool) -> int:
    if quick:
        return QUICK_WIDTH
    return 64 if device.type == "cuda" else CPU_WIDTH


def plan_variants(device: torch.device, config: TrainConfig, ref_workers: int, compile_on_cpu: bool = False,
                  extended: bool = False) -> list[Variant]:
    """The rows: the reference loop, then one speed setting changed at a time.

    ``extended`` adds the GPU benchmark's extra rows: the other memory format at reduced
    precision, and deterministic mode off.
    """
    on_gpu = device.type == "cuda"
    auto_precision = resolve_precision(device, config.precision)  # bf16 / fp16 on GPUs, fp32 on CPUs
    auto_cl = resolve_channels_last(device, config.memory_format, config.width)  # channels_last at width 16, 32, 64
    fmt = "channels_last" if auto_cl else "NCHW"
    no_amp = None if on_gpu else "autocast rows run on GPUs; on a CPU, `--only precision` times bf16 (fp16 needs CUDA)"
    no_compile = None if (on_gpu or compile_on_cpu) else "torch.compile on a CPU takes minutes: pass --compile"
    reference = f"{REFERENCE} (torchvision DataLoader, {ref_workers} workers)"
    contiguous = "course data path (NCHW, fp32, eager)"
    channels_last = "course + channels_last (fp32, eager)"
    bf16 = f"course + bf16 autocast ({fmt}, eager)"
    fp16 = f"course + fp16 autocast + GradScaler ({fmt}, eager)"
    fp32_auto = contiguous if not auto_cl else channels_last
    auto_name = {"fp32": fp32_auto, "bf16": bf16, "fp16": fp16}[auto_precision]
    rows = [
        Variant(reference, "tutorial", False, "fp32", deterministic=False),
        Variant(contiguous, "engine", False, "fp32", compared_to=reference,
                effect="data path alone (BatchIterator + engine step vs DataLoader + tutorial step)"),
        Variant(channels_last, "engine", True, "fp32", compared_to=contiguous,
                effect="memory format: channels_last vs contiguous (NCHW)"),
        Variant(bf16, "engine", auto_cl, "bf16", compared_to=fp32_auto, effect=f"precision: bf16 vs fp32 ({fmt})",
                skip_reason=no_amp or (None if torch.cuda.is_bf16_supported() else "this GPU has no bf16")),
        Variant(fp16, "engine", auto_cl, "fp16", compared_to=fp32_auto, effect=f"precision: fp16 vs fp32 ({fmt})",
                skip_reason=no_amp),
    ]
    if extended:  # the other memory format at reduced precision: is channels_last still worth it there?
        low = auto_precision if auto_precision != "fp32" else "bf16"
        other_fmt = "NCHW" if auto_cl else "channels_last"
        rows.append(Variant(f"course + {low} autocast ({other_fmt}, eager)", "engine", not auto_cl, low,
                            compared_to=bf16 if low == "bf16" else fp16,
                            effect=f"memory format at {low}: {other_fmt} vs {fmt}", skip_reason=no_amp))
    rows.append(Variant("course defaults + torch.compile", "engine", auto_cl, auto_precision, compile=True,
                        compared_to=auto_name, effect="torch.compile on vs off", skip_reason=no_compile))
    if extended:
        rows.append(Variant("course defaults, deterministic off", "engine", auto_cl, auto_precision,
                            deterministic=False, compared_to=auto_name,
                            effect="deterministic mode off (cudnn.benchmark autotuning on) vs on"))
    rows = [dataclasses.replace(v, course_default=True) if v.name == auto_name else v for v in rows]
    return rows


# --------------------------------------------------------------------------- the two loops


def device_images(split: TrainSplit, device: torch.device, stop: int | None = None) -> torch.Tensor:
    """The split's images as one CHW uint8 tensor on ``device``, shared by every engine row."""
    return torch.as_tensor(split.images[:stop]).permute(0, 3, 1, 2).contiguous().to(device)


class EngineTrainer:
    """The engine's setup and inner loop (``engine.train``), one optimizer step per ``step()``."""

    def __init__(self, config: TrainConfig, variant: Variant, device: torch.device, images: torch.Tensor,
                 labels, mean, std, val_images: torch.Tensor | None = None, val_labels=None):
        self.variant, self.device = variant, device
        # drop_last with compile, as engine.train (engine.drops_last): one batch shape, compiled once.
        self.batches = endless(BatchIterator(images, labels, config.batch_size, mean, std, train=True,
                                             augment=config.augment, padding=config.crop_padding, seed=config.seed,
                                             device=device, channels_last=variant.channels_last,
                                             drop_last=variant.compile))
        steps_per_epoch = math.ceil(REFERENCE_TRAIN_IMAGES / config.batch_size)
        seed_everything(config.seed)
        self.model = engine.build_model(config, NUM_CLASSES).to(device)
        if variant.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.optimizer = engine.build_optimizer(config, self.model)
        self.scheduler = warmup_cosine(self.optimizer, steps_per_epoch * config.epochs,
                                       steps_per_epoch * config.warmup_epochs, config.eta_min)
        self.scaler = torch.amp.GradScaler(device.type, enabled=variant.precision == "fp16")
        self.criterion = torch.nn.CrossEntropyLoss(label_smoothing=config.label_smoothing)
        self.trainable = torch.compile(self.model) if variant.compile else self.model
        self.sync_every = 1 if device.type == "cpu" else 25  # as the engine: a GPU sync per step costs speed
        self.losses = torch.zeros(self.sync_every, device=device)
        self.correct = torch.zeros((), device=device)
        self.count = 0
        self.val_batches = None
        if val_images is not None:
            self.val_batches = endless(BatchIterator(val_images, val_labels, EVAL_BATCH_SIZE, mean, std, train=False,
                                                     device=device, channels_last=variant.channels_last))

    def activate(self) -> None:
        set_deterministic(self.variant.deterministic, self.device)

    def step(self) -> int:
        x, y = next(self.batches)
        loss, correct = engine.train_step(self.trainable, x, y, self.criterion, self.optimizer, self.scaler,
                                          self.scheduler, self.variant.precision)
        self.losses[self.count % self.sync_every] = loss.float()
        self.correct += correct
        self.count += 1
        if self.count % self.sync_every == 0 and not bool(torch.isfinite(self.losses).all()):
            raise FloatingPointError(f"{self.variant.name}: the loss became non-finite")  # the engine's divergence stop
        return len(y)

    def validate(self, batches: int) -> int:
        """``evaluate`` (the engine's validation, eager model) over ``batches`` validation batches."""
        counted = []

        def take():
            for _ in range(batches):
                x, y = next(self.val_batches)
                counted.append(len(y))
                yield x, y

        evaluate(self.model, take(), self.variant.precision)
        return sum(counted)


class TutorialTrainer:
    """kuangliu/pytorch-cifar's ``train()`` and ``test()`` loops over torchvision DataLoaders."""

    def __init__(self, config: TrainConfig, variant: Variant, device: torch.device, images, labels, mean, std,
                 workers: int, val_images=None, val_labels=None):
        self.device = device
        transform = torchvision_train_transform(mean, std, config.crop_padding)
        self.batches = endless(torchvision_loader(images, labels, transform, config.batch_size, workers,
                                                  shuffle=True, device=device))
        seed_everything(config.seed)
        self.model = engine.build_model(config, NUM_CLASSES).to(device)
        self.optimizer = engine.build_optimizer(config, self.model)
        self.criterion = torch.nn.CrossEntropyLoss()
        self.train_loss, self.test_loss, self.correct = 0.0, 0.0, 0
        self.val_batches = None
        if val_images is not None:
            self.val_batches = endless(torchvision_loader(val_images, val_labels, torchvision_eval_transform(mean, std),
                                                          EVAL_BATCH_SIZE, workers, shuffle=False, device=device))

    def activate(self) -> None:
        set_deterministic(False, self.device)  # the tutorial sets cudnn.benchmark = True

    def step(self) -> int:
        inputs, targets = next(self.batches)
        inputs, targets = inputs.to(self.device), targets.to(self.device)
        self.optimizer.zero_grad()
        outputs = self.model(inputs)
        loss = self.criterion(outputs, targets)
        loss.backward()
        self.optimizer.step()
        self.train_loss += loss.item()
        self.correct += outputs.max(1)[1].eq(targets).sum().item()
        return len(targets)

    def validate(self, batches: int) -> int:
        self.model.eval()
        seen = 0
        with torch.no_grad():
            for _ in range(batches):
                inputs, targets = next(self.val_batches)
                inputs, targets = inputs.to(self.device), targets.to(self.device)
                outputs = self.model(inputs)
                self.test_loss += self.criterion(outputs, targets).item()
                self.correct += outputs.max(1)[1].eq(targets).sum().item()
                seen += len(targets)
        self.model.train()
        return seen


def build_trainer(variant: Variant, config: TrainConfig, device: torch.device, split: TrainSplit, ref_workers: int,
                  shared_images: torch.Tensor, train_stop: int | None = None):
    """A trainer for ``variant`` on the first ``train_stop`` images of ``split``; the rest, if any, is
    its validation set. Engine rows share ``shared_images`` (``device_images(split)``) instead of a copy each."""
    n = len(split.labels) if train_stop is None else train_stop
    val = (split.images[n:], split.labels[n:]) if n < len(split.labels) else (None, None)
    if variant.loop == "tutorial":
        return TutorialTrainer(config, variant, device, split.images[:n], split.labels[:n], split.mean, split.std,
                               ref_workers, *val)
    val_tensor = shared_images[n:] if val[0] is not None else None
    return EngineTrainer(config, variant, device, shared_images[:n], split.labels[:n], split.mean, split.std,
                         val_tensor, val[1])


# --------------------------------------------------------------------------- results


def ratio_rows(variants: list[Variant], measured: dict, key: str = "images_per_s") -> list[dict]:
    """Rows for the JSON: each variant's number, its ratio to the reference and to ``compared_to``."""
    by_name = {v.name: measured.get(v.name) for v in variants}
    reference = variants[0].name
    rows = []
    for v in variants:
        value = by_name[v.name]
        base = by_name[reference]
        other = by_name.get(v.compared_to) if v.compared_to else None
        rows.append({
            "name": v.name,
            "loop": v.loop,
            "settings": v.settings,
            "channels_last": v.channels_last,
            "precision": v.precision,
            "compile": v.compile,
            "deterministic": v.deterministic,
            "course_default": v.course_default,
            "compared_to": v.compared_to,
            "effect": v.effect or None,
            "skipped": v.skip_reason,
            key: value,
            "speedup_vs_reference": None if value is None else value / base,
            "speedup_vs_compared": None if value is None or other is None else value / other,
        })
    return rows


def run(split: TrainSplit, device: torch.device, ref_workers: int, *, quick: bool = False, width: int | None = None,
        compile_on_cpu: bool = False, log=print) -> dict:
    """Measure every row side by side; return the JSON payload."""
    width = width or default_width(device, quick)
    config = reference_config(width)
    steps = STEPS[(device.type, quick)]
    variants = plan_variants(device, config, ref_workers, compile_on_cpu)
    measured_variants = [v for v in variants if v.skip_reason is None]
    shared = device_images(split, device)
    contestants = []
    for v in measured_variants:
        trainer = build_trainer(v, config, device, split, ref_workers, shared)
        # One settle step: a DataLoader's queue, filled while other rows ran, is worth a few percent of
        # a compute-bound CPU window; on a GPU the tutorial loop waits for data, so it drains the queue first.
        settle = 1 + 2 * ref_workers if v.loop == "tutorial" and device.type == "cuda" else 1
        contestants.append(Contestant(v.name, trainer.step, settle=settle, activate=trainer.activate))
    log(f"training: ResNet-18 width {width}, batch {config.batch_size}, {steps.repeats} windows of {steps.steps} "
        f"steps after {steps.warmup} warmup steps, {len(contestants)} rows")
    results = measure_side_by_side(contestants, warmup=steps.warmup, repeats=steps.repeats, steps=steps.steps,
                                   device=device, settle=not quick, log=log)
    rows = ratio_rows(variants, {name: m.images_per_s for name, m in results.items()})
    for row in rows:
        m = results.get(row["name"])
        row["windows_images_per_s"] = None if m is None else m.windows_images_per_s
        row["round_ratios_vs_reference"] = None if m is None else round_ratios(m, results[variants[0].name])
        row["warmup_seconds"] = None if m is None else m.warmup_seconds
    default = next(r for r in rows if r["course_default"])
    payload = {
        "benchmark": NAME,
        "title": f"Training throughput: images/s of training steps, ResNet-18 width {width}, batch {config.batch_size}",
        "device": str(device),
        "width": width,
        "width_why": ("the reference width" if width == 64 else
                      f"width {width} (the reference is 64, ~30 img/s on a 2-core CPU): keeps the benchmark short"),
        "batch_size": config.batch_size,
        "optimizer": f"{config.optimizer} lr {config.lr} momentum {config.momentum} weight decay {config.weight_decay}",
        "baseline": variants[0].name,
        "baseline_why": "a typical tutorial loop (kuangliu/pytorch-cifar train()) with benchmark 1's better "
                        "DataLoader setting, NCHW float32, eager",
        "reference_workers": ref_workers,
        "steps": dataclasses.asdict(steps),
        "rows": rows,
        "course_default": default["name"],
        "course_vs_baseline": default["speedup_vs_reference"],
        "ratio_rounds": default["round_ratios_vs_reference"],
        "notes": [
            "course rows run engine.build_model / build_optimizer, loader.BatchIterator, repro.resolve_* and "
            "engine.train_step (the step engine.train runs); the course default row is what engine.train "
            "picks on this device (memory_format and precision 'auto', compile off)",
            "each ablation row changes one setting of the row named in 'compared to'",
            "median of the windows; warmup steps (first calls, worker start-up, compilation) are excluded",
        ],
    }
    if device.type == "cpu":
        payload["target"] = target_verdict("course engine setup vs the reference loop on this CPU",
                                           default["speedup_vs_reference"], TARGET_RATIO)
    return payload


def format_result(payload: dict, value_key: str = "images_per_s", value_title: str = "images/s") -> str:
    columns = [("label", "row", 52), (value_key, value_title, 9), ("vs_ref", "vs ref", 7),
               ("spread", "ref rounds", 16), ("vs_cmp", "vs compared", 11), ("effect", "what the comparison isolates", 30)]
    rows = []
    for r in payload["rows"]:
        label = r["name"] + (" [course default]" if r["course_default"] else "")
        rounds = r.get("round_ratios_vs_reference")
        rows.append({"label": label, value_key: r[value_key], "vs_ref": ratio_text(r["speedup_vs_reference"]),
                     "spread": spread_text(rounds) if rounds else None,
                     "vs_cmp": ratio_text(r["speedup_vs_compared"]),
                     "effect": f"skipped: {r['skipped']}" if r["skipped"] else (r["effect"] or "baseline")})
    lines = [f"== {payload['title']}", format_table(columns, rows),
             f"baseline: {payload['baseline']} ({payload['baseline_why']})",
             f"width: {payload['width_why']}"]
    if "target" in payload:
        lines.append(target_line(payload["target"]))
    lines += [f"note: {n}" for n in payload["notes"]]
    return "\n".join(lines)
