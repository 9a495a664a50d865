"""Learning-rate sweeps: a grid of short runs through ``engine.train`` (one run directory each, so a
second call returns the finished grid without training; divergences recorded), and the LR range test.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Callable, Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch

from course_utils import engine
from course_utils.config import TrainConfig
from course_utils.repro import (
    autocast,
    resolve_channels_last,
    resolve_device,
    resolve_precision,
    seed_everything,
)


def lr_run_name(lr: float, warmup: bool) -> str:
    """The run directory name of one grid point, e.g. ``lr0.1-warmup`` or ``lr3-nowarmup``."""
    return f"lr{lr:g}-{'warmup' if warmup else 'nowarmup'}"


def grid_config(base_config: TrainConfig, lr: float, warmup: bool) -> TrainConfig:
    """``base_config`` at peak learning rate ``lr``, with its warmup (``warmup=True``) or none.

    ``keep_best`` is switched off: the grid reads validation accuracy from ``metrics.csv``, so
    best weights would only cost a second final evaluation. ``eta_min`` is capped at ``lr``.
    """
    if warmup and base_config.warmup_epochs == 0:
        raise ValueError("warmup=True needs base_config.warmup_epochs >= 1 (it sets the warmup length)")
    return base_config.replace(lr=float(lr), warmup_epochs=base_config.warmup_epochs if warmup else 0,
                               eta_min=min(base_config.eta_min, float(lr)), keep_best=False)


def grid_row(run: engine.Run, lr: float, warmup: bool) -> dict:
    """One grid point as a table row (accuracies are fractions; NaN where the run has none).

    ``val_acc`` is the last epoch's validation accuracy, ``best_val_acc`` the best over epochs
    (both from ``metrics.csv``); a diverged run has neither, and says where it stopped.
    """
    val_accs = [r["val_acc"] for r in run.metrics]
    status = run.final["status"] if run.final is not None else "unfinished"
    diverged = status == "diverged"
    return {
        "lr": float(lr),
        "warmup": bool(warmup),
        "warmup_epochs": run.config.warmup_epochs,
        "status": status,
        "val_acc": float("nan") if diverged or not val_accs else float(val_accs[-1]),
        "best_val_acc": float("nan") if diverged or not val_accs else float(max(val_accs)),
        "epochs_done": len(val_accs),
        "diverged_epoch": int(run.final["epoch"]) if diverged else None,
        "message": run.final.get("message", "") if diverged else "",
        "run_dir": str(run.run_dir),
    }


def lr_grid_runs(base_config: TrainConfig, lrs: Sequence[float], warmup: bool, root_dir, *,
                 log: Callable[[str], None] = print, verbose: bool = False, progress: bool = False) -> list[dict]:
    """Train (or load) one run per learning rate in ``root_dir/lr_run_name(lr, warmup)``.

    A run whose loss becomes non-finite is stopped by the engine (``TrainingDiverged``) and kept
    as a ``diverged`` row; calling again returns the stored grid without training. ``log`` gets
    one line per run (the engine's own message for a divergence); ``verbose`` also passes the
    engine's per-epoch lines. Returns ``grid_row`` dicts in the order of ``lrs``.
    """
    rows = []
    engine_log = log if verbose else (lambda *args, **kwargs: None)
    for lr in lrs:
        config = grid_config(base_config, lr, warmup)
        run_dir = Path(root_dir) / lr_run_name(lr, warmup)
        try:
            run = engine.train(config, run_dir, progress=progress, log=engine_log)
        except engine.TrainingDiverged:
            run = engine.load_run(run_dir)
        row = grid_row(run, lr, warmup)
        rows.append(row)
        label = f"lr {lr:<8g} {'warmup ' + str(config.warmup_epochs) + ' ep' if warmup else 'no warmup':<12}"
        if row["status"] == "diverged":
            log(f"{label} diverged: {row['message']}")
        else:
            log(f"{label} {row['status']}: val acc {100 * row['val_acc']:.2f}% "
                f"(best epoch {100 * row['best_val_acc']:.2f}%)")
    return rows


def format_lr_grid(rows: Sequence[dict]) -> str:
    """The grid as a text table, one line per run (validation accuracy in %)."""
    lines = [f"{'lr':>8}  {'warmup':<9}{'status':<10}{'val acc (last)':>15}{'best epoch':>12}"]
    for r in rows:
        warm = f"{r['warmup_epochs']} ep" if r["warmup"] else "none"
        if r["status"] == "diverged":
            tail = f"{'-':>15}{'-':>12}   non-finite loss in epoch {r['diverged_epoch']}"
        else:
            tail = f"{100 * r['val_acc']:>14.2f}%{100 * r['best_val_acc']:>11.2f}%"
        lines.append(f"{r['lr']:>8g}  {warm:<9}{r['status']:<10}{tail}")
    return "\n".join(lines)


def best_grid_point(rows: Sequence[dict], warmup: bool, metric: str = "val_acc") -> dict | None:
    """The finished row of one warmup setting with the highest ``metric`` (chosen on validation)."""
    finished = [r for r in rows if r["warmup"] == warmup and r["status"] == "finished"]
    return max(finished, key=lambda r: r[metric]) if finished else None


def lr_grid_summary(rows: Sequence[dict], num_classes: int) -> str:
    """What the grid shows, per warmup setting: the best lr (by validation), which lrs diverged,
    and which finished but stayed below twice chance accuracy (a quiet failure)."""
    lines = []
    for warmup in (True, False):
        part = [r for r in rows if r["warmup"] == warmup]
        if not part:
            continue
        best = best_grid_point(rows, warmup)
        diverged = [f"{r['lr']:g}" for r in part if r["status"] == "diverged"]
        weak = [f"{r['lr']:g}" for r in part if r["status"] == "finished" and r["val_acc"] < 2 / num_classes]
        name = f"with warmup ({part[0]['warmup_epochs']} epoch(s))" if warmup else "without warmup"
        best_text = (f"best validation accuracy {100 * best['val_acc']:.2f}% at lr {best['lr']:g}" if best
                     else "no run finished")
        lines.append(f"{name}: {best_text}; diverged at lr: {', '.join(diverged) or 'none'}; "
                     f"finished below {200 / num_classes:.0f}% (twice chance) at lr: {', '.join(weak) or 'none'}")
    return "\n".join(lines)


def plot_lr_grid(rows: Sequence[dict], metric: str = "val_acc", chance: float | None = None, ax=None):
    """Validation accuracy (%) against peak learning rate (log x), one line per warmup setting.

    Diverged runs are drawn as red crosses on the bottom edge. ``chance``: accuracy (fraction)
    of guessing, drawn dotted. Returns the Axes; never shows.
    """
    if ax is None:
        _, ax = plt.subplots(figsize=(6.5, 4), layout="constrained")
    for i, warmup in enumerate((True, False)):
        part = sorted((r for r in rows if r["warmup"] == warmup), key=lambda r: r["lr"])
        if not part:
            continue
        finished = [r for r in part if r["status"] == "finished"]
        label = f"warmup {part[0]['warmup_epochs']} epoch(s)" if warmup else "no warmup"
        ax.plot([r["lr"] for r in finished], [100 * r[metric] for r in finished], "o-", color=f"C{i}", label=label)
        diverged = [r["lr"] for r in part if r["status"] == "diverged"]
        if diverged:
            ax.plot(diverged, [0] * len(diverged), "x", color="tab:red", markersize=11 - 3 * i, mew=2.5 - i,
                    clip_on=False, zorder=5, label=f"diverged ({label})")
    if chance is not None:
        ax.axhline(100 * chance, color="gray", linestyle=":", label="chance")
    ax.set_xscale("log")
    ax.set_ylim(0, None)
    ax.set_xlabel("peak learning rate")
    ax.set_ylabel("validation accuracy (%)" + (" (best epoch)" if metric == "best_val_acc" else ""))
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    return ax


@dataclasses.dataclass
class LrRangeTest:
    """What ``lr_range_test`` measured; arrays have one entry per optimizer step taken."""

    lrs: np.ndarray  # (K,) the learning rate of each step, increasing
    losses: np.ndarray  # (K,) smoothed training loss after each step
    raw_losses: np.ndarray  # (K,) the batch loss of each step
    stop_reason: str
    min_loss_lr: float  # where the smoothed loss is lowest
    steepest_lr: float  # where the smoothed loss falls fastest per decade of lr (before the minimum)
    suggested_range: tuple[float, float]  # (loss starts to fall, loss stops falling): Smith's bounds


def lr_range_test(config: TrainConfig, *, start_lr: float = 1e-5, end_lr: float = 10.0, num_steps: int = 100,
                  smoothing: float = 0.9, stop_factor: float = 4.0, device=None) -> LrRangeTest:
    """The LR range test (Smith 2017, "Cyclical Learning Rates"; fastai's ``lr_find``).

    From ``config``'s initial weights, train on its training split (with its augmentation,
    optimizer, momentum and weight decay) for up to ``num_steps`` steps, the learning rate
    growing exponentially from ``start_lr`` to ``end_lr``. The batch loss is smoothed by a
    bias-corrected exponential moving average (``smoothing``; the curve lags by about
    ``smoothing / (1 - smoothing)`` steps). The test stops early once the smoothed loss
    exceeds ``stop_factor`` times its minimum, or a loss is not finite (that step is not kept).

    The suggested range is Smith's pair of bounds: the lr where the smoothed loss has fallen a
    tenth of the way from its start to its minimum, and the lr of the minimum. It is a quick
    first guess from a few hundred steps, not a replacement for a short grid of real runs.
    """
    if not 0 < start_lr < end_lr:
        raise ValueError(f"need 0 < start_lr < end_lr, got {start_lr}, {end_lr}")
    if num_steps < 2 or not 0 <= smoothing < 1 or stop_factor <= 1:
        raise ValueError("need num_steps >= 2, 0 <= smoothing < 1 and stop_factor > 1")
    device = torch.device(device) if device is not None else resolve_device(config.device)
    precision = resolve_precision(device, config.precision)
    seed_everything(config.seed)
    bundle = engine.build_data(config, device)
    model = engine.build_model(config, len(bundle.classes)).to(device)
    if resolve_channels_last(device, config.memory_format, config.width):
        model = model.to(memory_format=torch.channels_last)
    optimizer = engine.build_optimizer(config.replace(lr=start_lr, eta_min=0.0), model)
    scaler = torch.amp.GradScaler(device.type, enabled=precision == "fp16")
    criterion = torch.nn.CrossEntropyLoss(label_smoothing=config.label_smoothing)
    schedule = start_lr * (end_lr / start_lr) ** (np.arange(num_steps) / (num_steps - 1))

    lrs, losses, raw = [], [], []
    average, best = 0.0, math.inf
    stop_reason = f"reached end_lr={end_lr:g} after {num_steps} steps"
    model.train()
    step, epoch = 0, 0
    while step < num_steps:
        bundle.train.set_epoch(epoch)
        for x, y in bundle.train:
            for group in optimizer.param_groups:
                group["lr"] = float(schedule[step])
            with autocast(device, precision):
                loss = criterion(model(x), y)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            value = loss.item()
            if not math.isfinite(value):
                stop_reason = f"loss became {value} at step {step + 1} (lr {schedule[step]:.3g})"
                step = num_steps
                break
            average = smoothing * average + (1 - smoothing) * value
            smoothed = average / (1 - smoothing ** (step + 1))
            lrs.append(float(schedule[step]))
            losses.append(smoothed)
            raw.append(value)
            best = min(best, smoothed)
            step += 1
            if smoothed > stop_factor * best:
                stop_reason = (f"smoothed loss {smoothed:.3g} > {stop_factor:g} x its minimum {best:.3g} "
                               f"at step {step} (lr {schedule[step - 1]:.3g})")
                step = num_steps
            if step >= num_steps:
                break
        epoch += 1
    if len(lrs) < 2:
        raise RuntimeError(f"the range test stopped after {len(lrs)} step(s) ({stop_reason}): lower start_lr")
    lrs_a, losses_a = np.asarray(lrs), np.asarray(losses)
    lowest = int(np.argmin(losses_a))
    falling = losses_a[0] - 0.1 * (losses_a[0] - losses_a[lowest])
    lower = lrs_a[int(np.argmax(losses_a[: lowest + 1] <= falling))]
    slope = np.gradient(losses_a, np.log10(lrs_a))  # loss change per decade of lr
    settled = min(math.ceil(1 / (1 - smoothing)), lowest)  # the average's first steps are mostly one batch
    steepest = lrs_a[settled + int(np.argmin(slope[settled: lowest + 1]))]
    return LrRangeTest(lrs=lrs_a, losses=losses_a, raw_losses=np.asarray(raw), stop_reason=stop_reason,
                       min_loss_lr=float(lrs_a[lowest]), steepest_lr=float(steepest),
                       suggested_range=(float(lower), float(lrs_a[lowest])))


def plot_lr_range_test(result: LrRangeTest, ax=None, title: str | None = None):
    """Smoothed (and raw, faint) training loss against lr (log x), with the suggested range shaded."""
    if ax is None:
        _, ax = plt.subplots(figsize=(6.5, 4), layout="constrained")
    ax.plot(result.lrs, result.raw_losses, color="gray", alpha=0.35, linewidth=0.8, label="batch loss")
    ax.plot(result.lrs, result.losses, color="C0", label="smoothed loss")
    low, high = result.suggested_range
    ax.axvspan(low, high, color="C2", alpha=0.15, label=f"suggested range {low:.2g} to {high:.2g}")
    ax.axvline(result.steepest_lr, color="C1", linestyle="--", label=f"steepest descent {result.steepest_lr:.2g}")
    ax.set_xscale("log")
    top = max(result.losses[0], np.nanmin(result.losses)) * 1.6
    ax.set_ylim(max(0.0, np.nanmin(result.losses) * 0.8), top)
    ax.set_xlabel("learning rate")
    ax.set_ylabel("training loss")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    ax.set_title(title or "LR range test")
    return ax
