"""Many runs at once: the learning-rate grid, the LR range test, and comparing trained runs.

- ``lr_grid_runs``: one short run per learning rate through ``engine.train`` (each in its own
  run directory, so a second call returns the finished grid without training), divergences
  caught and recorded; ``plot_lr_grid`` draws validation accuracy against the learning rate.
- ``lr_range_test``: Smith (2017) / fastai's ``lr_find``: train from the initial weights with
  an exponentially increasing learning rate and watch the smoothed loss; ``plot_lr_range_test``.
- ``learning_curve_summary``: the numbers that tell whether a run overfits.
- ``predictions_of_run``, ``classifier_of_run``: a trained run's logits on a split, and a
  ``uint8 images -> predicted classes`` function for probes.
- ``calibration_comparison`` and ``format_calibration_table``: accuracy, NLL, ECE, MCE and Brier
  of several runs, before and after temperature scaling fitted on validation and applied to test.
- ``confused_pairs_unordered``, ``mistakes_within_groups``, ``format_probe_table`` and
  ``plot_probe_drops``: summaries of where a run's mistakes go, for the failure analysis.

Nothing here selects anything by the test set: the grid and the range test read training and
validation numbers only, and temperature is always fitted on validation.
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
from course_utils.analysis import PERTURB_MODES, confusion_matrix
from course_utils.calibration import (apply_temperature, calibration_report, fit_temperature, plot_reliability_diagram,
                                      softmax)
from course_utils.config import TrainConfig
from course_utils.data import stratified_subset
from course_utils.evaluate import predict
from course_utils.loader import BatchIterator
from course_utils.repro import autocast, resolve_channels_last, resolve_device, resolve_precision, seed_everything

SPLITS = ("val", "test")

# --------------------------------------------------------------------------- the learning-rate grid


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


# --------------------------------------------------------------------------- the LR range test


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


# --------------------------------------------------------------------------- overfitting


def learning_curve_summary(run: engine.Run) -> dict:
    """Where validation loss bottoms out, and where training accuracy ends (fractions).

    ``final_train_acc_clean`` is the final table's training accuracy (no augmentation), when
    the run finished; ``final_train_acc`` is the last epoch's, measured on training batches.
    """
    rows = run.metrics
    if not rows:
        raise ValueError(f"{run.run_dir}: no finished epoch")
    best = min(rows, key=lambda r: r["val_loss"])
    last = rows[-1]
    clean = run.final["last"]["train"]["accuracy"] if run.finished else float("nan")
    return {
        "epochs": len(rows),
        "min_val_loss_epoch": int(best["epoch"]),
        "min_val_loss": float(best["val_loss"]),
        "final_val_loss": float(last["val_loss"]),
        "val_loss_rise": float(last["val_loss"] - best["val_loss"]),
        "final_train_acc": float(last["train_acc"]),
        "final_train_acc_clean": float(clean),
        "final_val_acc": float(last["val_acc"]),
    }


def format_curve_summaries(summaries: dict[str, dict]) -> str:
    """A text table of ``learning_curve_summary`` results, one line per named run."""
    lines = [f"{'run':<24}{'epochs':>7}{'min val loss (epoch)':>22}{'final val loss':>16}"
             f"{'final train acc':>17}{'final val acc':>15}"]
    for name, s in summaries.items():
        lines.append(f"{name:<24}{s['epochs']:>7}{s['min_val_loss']:>14.4f} (ep {s['min_val_loss_epoch']:>2})"
                     f"{s['final_val_loss']:>16.4f}{100 * s['final_train_acc_clean']:>16.2f}%"
                     f"{100 * s['final_val_acc']:>14.2f}%")
    return "\n".join(lines)


def overfitting_verdict(name: str, summary: dict) -> str:
    """One line saying what a run's curves show: did validation loss turn up, where did training end."""
    s = summary
    if s["min_val_loss_epoch"] < s["epochs"]:
        val = (f"validation loss was lowest at epoch {s['min_val_loss_epoch']} of {s['epochs']} "
               f"({s['min_val_loss']:.4f}) and ended {s['val_loss_rise']:+.4f} above that")
    else:
        val = f"validation loss was still at its lowest in the last epoch ({s['final_val_loss']:.4f})"
    return f"{name}: {val}; training accuracy (no augmentation) ended at {100 * s['final_train_acc_clean']:.2f}%"


# --------------------------------------------------------------------------- predictions of a trained run


@dataclasses.dataclass
class SplitPredictions:
    """A trained run's logits on one split, with the labels and images they belong to."""

    logits: np.ndarray  # (N, C) float32
    labels: np.ndarray  # (N,) int64
    images: np.ndarray  # (N, 32, 32, 3) uint8 HWC RGB, in the same order
    classes: list[str]
    split: str
    which: str  # "last" or "best" weights

    @property
    def probs(self) -> np.ndarray:
        """(N, C) softmax probabilities, float64."""
        return softmax(self.logits)

    @property
    def preds(self) -> np.ndarray:
        return self.logits.argmax(axis=1)

    def __iter__(self):  # ``logits, labels = predictions_of_run(...)`` also works
        return iter((self.logits, self.labels))


def _model_and_data(run_dir, which: str, device):
    run = engine.load_run(run_dir)
    device = torch.device(device) if device is not None else resolve_device(run.config.device)
    model, config = engine.load_weights(run_dir, which, device=device)
    return model, engine.build_data(config, device), device


def predictions_of_run(run_dir, split: str = "val", which: str = "last", per_class: int | None = None,
                       device=None) -> SplitPredictions:
    """Logits of a trained run (its ``last`` or ``best`` weights) on ``val`` or ``test``.

    The split, normalization and device are the run's own (``engine.build_data`` on its
    config). ``per_class``: a stratified subset of that many images per class (seeded, the
    same every call), to keep quick profiles quick; None takes the whole split.
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    model, bundle, device = _model_and_data(run_dir, which, device)
    batches = getattr(bundle, split)
    images, labels = batches.images, batches.labels  # uint8 CHW and int64, in the split's order
    if per_class is not None:
        keep = torch.as_tensor(stratified_subset(labels.cpu().numpy(), per_class, seed=0)).to(images.device)
        images, labels = images[keep], labels[keep]
        batches = BatchIterator(images, labels, batch_size=batches.batch_size, mean=bundle.mean, std=bundle.std,
                                train=False, device=device, channels_last=batches.channels_last)
    logits, labels_out = predict(model, batches)
    return SplitPredictions(logits=logits.numpy(), labels=labels_out.numpy().astype(np.int64),
                            images=images.permute(0, 2, 3, 1).cpu().numpy(), classes=list(bundle.classes),
                            split=split, which=which)


def classifier_of_run(run_dir, which: str = "last", device=None,
                      batch_size: int = 512) -> Callable[[np.ndarray], np.ndarray]:
    """``predict_fn(images) -> (N,) predicted class ids`` for uint8 ``(N, 32, 32, 3)`` images.

    Normalizes with the run's own training-split statistics and batches on the run's device:
    the ``predict_fn`` that ``analysis.background_probe`` expects.
    """
    model, bundle, device = _model_and_data(run_dir, which, device)
    channels_last = bundle.val.channels_last

    def predict_fn(images: np.ndarray) -> np.ndarray:
        batches = BatchIterator(images, np.zeros(len(images), dtype=np.int64), batch_size=batch_size,
                                mean=bundle.mean, std=bundle.std, train=False, device=device,
                                channels_last=channels_last)
        return predict(model, batches)[0].argmax(1).numpy()

    return predict_fn


# --------------------------------------------------------------------------- calibration of several runs


def calibration_comparison(predictions: dict[str, dict[str, tuple]], n_bins: int = 15) -> list[dict]:
    """Calibration of several runs on test, before and after temperature scaling.

    ``predictions[name] = {"val": (logits, labels), "test": (logits, labels)}`` (a
    ``SplitPredictions`` works as such a pair). The temperature is fitted on ``val`` only and
    applied to ``test``. Returns two rows per run, ``scaling`` "none" then "temperature", each
    with ``run``, ``temperature`` (1.0 for "none") and ``calibration_report``'s numbers.
    """
    rows = []
    for name, splits in predictions.items():
        val_logits, val_labels = splits["val"]
        test_logits, test_labels = splits["test"]
        temperature = fit_temperature(val_logits, val_labels)
        for scaling, t in (("none", 1.0), ("temperature", temperature)):
            report = calibration_report(apply_temperature(test_logits, t), test_labels, n_bins)
            rows.append({"run": name, "scaling": scaling, "temperature": float(t), **report})
    return rows


def format_calibration_table(rows: Sequence[dict]) -> str:
    """The rows of ``calibration_comparison`` as text: accuracy, ECE, MCE in %; NLL in nats."""
    lines = [f"{'run':<22}{'scaling':<13}{'T':>6}{'accuracy':>10}{'NLL':>8}{'ECE':>8}{'MCE':>8}{'Brier':>8}"]
    for r in rows:
        scaling = "none" if r["scaling"] == "none" else "T (val)"
        lines.append(f"{r['run']:<22}{scaling:<13}{r['temperature']:>6.3f}{100 * r['accuracy']:>9.2f}%"
                     f"{r['nll']:>8.4f}{100 * r['ece']:>7.2f}%{100 * r['mce']:>7.2f}%{r['brier']:>8.4f}")
    return "\n".join(lines)


def plot_reliability_panels(panels: dict[str, tuple], n_bins: int = 15, ncols: int = 2, size: float = 4.2):
    """Reliability diagrams side by side: ``panels[title] = (probs, labels)``. Returns the Figure."""
    nrows = math.ceil(len(panels) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(ncols * size * 1.1, nrows * size), squeeze=False,
                             layout="constrained")
    for ax, (title, (probs, labels)) in zip(axes.flat, panels.items()):
        plot_reliability_diagram(probs, labels, n_bins=n_bins, ax=ax, title=title)
    for ax in list(axes.flat)[len(panels):]:
        ax.set_visible(False)
    return fig


# --------------------------------------------------------------------------- where the mistakes go

# CIFAR-10's classes in two super-groups, to ask whether mistakes stay "in the family".
CIFAR10_GROUPS = {"animal": ("bird", "cat", "deer", "dog", "frog", "horse"),
                  "vehicle": ("airplane", "automobile", "ship", "truck")}


def confused_pairs_unordered(labels, preds, class_names, k: int = 5) -> list[tuple[str, str, int, float]]:
    """The k class pairs {a, b} with the most mistakes in either direction, most first.

    Returns ``[(a, b, count, share), ...]``: ``count`` = a taken for b plus b taken for a, and
    ``share`` = that count over all mistakes. Pairs with no mistakes are never listed.
    """
    counts = confusion_matrix(labels, preds, len(class_names), normalize=False)
    both_ways = np.triu(counts + counts.T, k=1)
    mistakes = int(counts.sum() - np.trace(counts))
    order = np.argsort(-both_ways.ravel(), kind="stable")[:k]
    pairs = []
    for index in order:
        a, b = divmod(int(index), len(class_names))
        if both_ways[a, b] == 0:
            break
        pairs.append((class_names[a], class_names[b], int(both_ways[a, b]), float(both_ways[a, b] / mistakes)))
    return pairs


def mistakes_within_groups(labels, preds, class_names, groups: dict[str, Sequence[str]] = CIFAR10_GROUPS) -> dict:
    """How many mistakes land in the true class's own group (e.g. an animal taken for another animal).

    Returns ``mistakes``, ``within`` (count), ``share`` (fraction) and ``chance_share``: the
    share expected if each of these mistakes went to a wrong class drawn uniformly at random.
    """
    group_of = {name: g for g, names in groups.items() for name in names}
    missing = [c for c in class_names if c not in group_of]
    if missing:
        raise ValueError(f"classes without a group: {missing}")
    group_id = np.array([list(groups).index(group_of[c]) for c in class_names])
    labels = np.asarray(labels, dtype=np.int64)
    preds = np.asarray(preds, dtype=np.int64)
    wrong = preds != labels
    if not wrong.any():
        return {"mistakes": 0, "within": 0, "share": float("nan"), "chance_share": float("nan")}
    same = group_id[preds[wrong]] == group_id[labels[wrong]]
    group_size = np.bincount(group_id)[group_id]  # size of each class's group
    chance = (group_size[labels[wrong]] - 1) / (len(class_names) - 1)
    return {"mistakes": int(wrong.sum()), "within": int(same.sum()), "share": float(same.mean()),
            "chance_share": float(chance.mean())}


def format_probe_table(results: dict, class_names) -> str:
    """``analysis.background_probe`` results as text: accuracy per class, and its drop per mode (points)."""
    modes = [m for m in results if m != "original"]
    lines = [f"{'class':<12}{'original':>10}" + "".join(f"{m + ' drop':>22}" for m in modes)]
    for c, name in enumerate(class_names):
        cells = "".join(f"{100 * results[m]['per_class_drop'][c]:>21.1f} " for m in modes)
        lines.append(f"{name:<12}{100 * results['original']['per_class_accuracy'][c]:>9.1f}%{cells}")
    overall = "".join(f"{100 * (results['original']['accuracy'] - results[m]['accuracy']):>21.1f} " for m in modes)
    lines.append(f"{'all':<12}{100 * results['original']['accuracy']:>9.1f}%{overall}")
    return "\n".join(lines)


def plot_probe_drops(results: dict, class_names, ax=None):
    """Grouped bars: per-class accuracy drop (points) under each perturbation of the probe."""
    modes = [m for m in PERTURB_MODES if m in results]
    if ax is None:
        _, ax = plt.subplots(figsize=(9, 3.8), layout="constrained")
    x = np.arange(len(class_names))
    width = 0.8 / len(modes)
    for i, mode in enumerate(modes):
        ax.bar(x - 0.4 + (i + 0.5) * width, 100 * results[mode]["per_class_drop"], width,
               label=f"{mode} (all: {100 * (results['original']['accuracy'] - results[mode]['accuracy']):.1f})")
    ax.axhline(0, color="black", linewidth=0.8)
    ax.set_xticks(x, class_names, rotation=30)
    ax.set_ylabel("accuracy drop (points)")
    ax.set_title("Accuracy lost when the border (background) or the centre (object) is changed")
    ax.legend(fontsize=8)
    return ax
