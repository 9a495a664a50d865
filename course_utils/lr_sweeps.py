"""Learning-rate sweeps: a grid of short runs through ``engine.train`` (one run directory per learning
rate, warmup setting and seed, so a second call returns the finished grid without training; divergences
recorded), the grid grouped into points with their spread over seeds, and the LR range test.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Callable, Sequence

import matplotlib.ticker
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


def lr_run_name(lr: float, warmup: bool, seed: int = 0) -> str:
    """The run directory name of one grid run, e.g. ``lr0.1-warmup-seed0`` or ``lr3-nowarmup-seed1``."""
    return f"lr{lr:g}-{'warmup' if warmup else 'nowarmup'}-seed{seed}"


def grid_config(base_config: TrainConfig, lr: float, warmup: bool, seed: int | None = None) -> TrainConfig:
    """``base_config`` at peak learning rate ``lr``, with its warmup (``warmup=True``) or none.

    ``seed`` (default: the base config's) sets the initial weights and the batch order.
    ``keep_best`` is switched off: the grid reads validation accuracy from ``metrics.csv``, so
    best weights would only cost a second final evaluation. ``eta_min`` is capped at ``lr``.
    """
    if warmup and base_config.warmup_epochs == 0:
        raise ValueError("warmup=True needs base_config.warmup_epochs >= 1 (it sets the warmup length)")
    eta_min = None if base_config.eta_min is None else min(base_config.eta_min, float(lr))
    return base_config.replace(lr=float(lr), warmup_epochs=base_config.warmup_epochs if warmup else 0,
                               eta_min=eta_min, keep_best=False, seed=base_config.seed if seed is None else int(seed))


def grid_row(run: engine.Run, lr: float, warmup: bool) -> dict:
    """One grid run as a table row (accuracies are fractions; NaN where the run has none).

    ``val_acc`` is the last epoch's validation accuracy, ``best_val_acc`` the best over epochs
    (both from ``metrics.csv``); a diverged run has neither, and says where it stopped.
    """
    val_accs = [r["val_acc"] for r in run.metrics]
    status = run.final["status"] if run.final is not None else "unfinished"
    diverged = status == "diverged"
    return {
        "lr": float(lr),
        "warmup": bool(warmup),
        "seed": run.config.seed,
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
                 seeds: Sequence[int] | None = None, log: Callable[[str], None] = print, verbose: bool = False,
                 progress: bool = False) -> list[dict]:
    """Train (or load) one run per learning rate and seed in ``root_dir/lr_run_name(lr, warmup, seed)``.

    ``seeds`` default to ``[base_config.seed]``. A run whose loss becomes non-finite is stopped
    by the engine (``TrainingDiverged``) and kept as a ``diverged`` row; calling again returns
    the stored grid without training. ``log`` gets one line per run (the engine's own message
    for a divergence); ``verbose`` also passes the engine's per-epoch lines. Returns
    ``grid_row`` dicts, learning rates in the order of ``lrs``, seeds in the order of ``seeds``.
    """
    seeds = [base_config.seed] if seeds is None else [int(s) for s in seeds]
    rows = []
    engine_log = log if verbose else (lambda *args, **kwargs: None)
    for lr in lrs:
        for seed in seeds:
            config = grid_config(base_config, lr, warmup, seed)
            run_dir = Path(root_dir) / lr_run_name(lr, warmup, seed)
            try:
                run = engine.train(config, run_dir, progress=progress, log=engine_log)
            except engine.TrainingDiverged:
                run = engine.load_run(run_dir)
            row = grid_row(run, lr, warmup)
            rows.append(row)
            label = (f"lr {lr:<8g} {'warmup ' + str(config.warmup_epochs) + ' ep' if warmup else 'no warmup':<12}"
                     f"seed {seed:<3}")
            if row["status"] == "diverged":
                log(f"{label} diverged: {row['message']}")
            else:
                log(f"{label} {row['status']}: val acc {100 * row['val_acc']:.2f}% "
                    f"(best epoch {100 * row['best_val_acc']:.2f}%)")
    return rows


def format_lr_grid(rows: Sequence[dict]) -> str:
    """The grid as a text table, one line per run (validation accuracy in %)."""
    lines = [f"{'lr':>8}  {'warmup':<9}{'seed':>5}  {'status':<10}{'val acc (last)':>15}{'best epoch':>12}"]
    for r in rows:
        warm = f"{r['warmup_epochs']} ep" if r["warmup"] else "none"
        if r["status"] == "diverged":
            tail = f"{'-':>15}{'-':>12}   non-finite loss in epoch {r['diverged_epoch']}"
        else:
            tail = f"{100 * r['val_acc']:>14.2f}%{100 * r['best_val_acc']:>11.2f}%"
        lines.append(f"{r['lr']:>8g}  {warm:<9}{r['seed']:>5}  {r['status']:<10}{tail}")
    return "\n".join(lines)


def lr_grid_points(rows: Sequence[dict], metric: str = "val_acc") -> list[dict]:
    """The grid's runs grouped by (warmup, lr): one dict per grid point, warmup first, lr rising.

    Each point: ``lr``, ``warmup``, ``warmup_epochs``, ``seeds`` and ``values`` (``metric`` of
    the finished runs, fractions), ``n`` (finished runs), ``n_diverged``, ``mean`` (NaN if none
    finished) and ``sd`` (the sample standard deviation over seeds, ``ddof=1``; NaN if n < 2).
    """
    points: dict[tuple, dict] = {}
    for r in rows:
        key = (r["warmup"], r["lr"])
        p = points.setdefault(key, {"lr": r["lr"], "warmup": r["warmup"], "warmup_epochs": r["warmup_epochs"],
                                    "seeds": [], "values": [], "n_diverged": 0})
        if r["status"] == "finished":
            p["seeds"].append(r["seed"])
            p["values"].append(float(r[metric]))
        elif r["status"] == "diverged":
            p["n_diverged"] += 1
    out = []
    for key in sorted(points, key=lambda k: (not k[0], k[1])):
        p = points[key]
        values = np.asarray(p["values"], dtype=float)
        p["n"] = len(values)
        p["mean"] = float(values.mean()) if len(values) else float("nan")
        p["sd"] = float(values.std(ddof=1)) if len(values) >= 2 else float("nan")
        out.append(p)
    return out


def plot_lr_grid(points: Sequence[dict], chance: float | None = None, ax=None, ylabel: str = "validation accuracy (%)"):
    """Mean accuracy (%) per grid point against peak learning rate (log x), one line per warmup setting.

    ``points``: ``lr_grid_points`` dicts; if they carry ``se`` (a fraction) it is drawn as an error
    bar, and every seed's value is a small dot. The x-axis spans the learning rates where some run
    finished; a diverged learning rate more than a decade beyond them sits in one off-scale slot
    at the right (its tick says so). Diverged runs are crosses on the bottom edge in the colour of
    their setting, side by side. ``chance``: accuracy (fraction) of guessing, dotted. Returns the Axes.
    """
    if ax is None:
        _, ax = plt.subplots(figsize=(7, 4.2), layout="constrained")
    finished_lrs = sorted({p["lr"] for p in points if p["n"] > 0})
    if not finished_lrs:
        finished_lrs = sorted({p["lr"] for p in points})
    low, high = finished_lrs[0], finished_lrs[-1]
    slot = high * 10 ** 0.75  # where off-scale divergences are drawn
    off_scale = sorted({p["lr"] for p in points if p["n_diverged"] and p["lr"] > high * 10})

    def x_of(lr):
        return slot if lr > high * 10 else lr

    for i, warmup in enumerate((True, False)):
        part = [p for p in points if p["warmup"] == warmup]
        if not part:
            continue
        color = f"C{i}"
        label = f"warmup {part[0]['warmup_epochs']} epoch(s)" if warmup else "no warmup"
        done = [p for p in part if p["n"] > 0]
        se = [100 * p.get("se", float("nan")) for p in done]
        ax.errorbar([p["lr"] for p in done], [100 * p["mean"] for p in done],
                    yerr=None if all(np.isnan(se)) else np.nan_to_num(se), fmt="o-", color=color, capsize=3,
                    label=f"{label}: mean" + (" ± SE" if not all(np.isnan(se)) else ""))
        for p in done:
            ax.plot([p["lr"]] * p["n"], [100 * v for v in p["values"]], ".", color=color, alpha=0.45, markersize=5)
        diverged = [p for p in part if p["n_diverged"]]
        if diverged:
            shift = 10 ** (0.05 * (1 if i else -1))  # side by side: warmup left, no warmup right
            ax.plot([x_of(p["lr"]) * shift for p in diverged], [0] * len(diverged), "X", color=color,
                    markeredgecolor="black", markersize=10, clip_on=False, zorder=5, label=f"diverged ({label})")
    if chance is not None:
        ax.axhline(100 * chance, color="gray", linestyle=":", label="chance")
    ax.set_xscale("log")
    right = slot * 10 ** 0.3 if off_scale else high * 10 ** 0.3
    ax.set_xlim(low / 10 ** 0.3, right)
    ticks = finished_lrs + ([slot] if off_scale else [])
    labels = [f"{lr:g}" for lr in finished_lrs] + (["/".join(f"{lr:g}" for lr in off_scale) + "\n(off scale)"]
                                                 if off_scale else [])
    ax.set_xticks(ticks, labels)
    ax.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
    if off_scale:
        ax.axvline(high * 10 ** 0.4, color="gray", linewidth=0.8, linestyle=(0, (2, 2)))
    ax.set_ylim(0, None)
    ax.set_xlabel("peak learning rate")
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
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
    optimizer = engine.build_optimizer(config.replace(lr=start_lr, eta_min=None if config.eta_min is None else 0.0), model)
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
