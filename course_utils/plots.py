"""Figures shared by the lessons: image grids, learning curves, the learning-rate schedule.

Every function draws into a matplotlib Axes (made if not given) and returns it; nothing
calls ``plt.show()``, so the same code serves notebooks, scripts and tests.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
from matplotlib import transforms
from matplotlib.ticker import MaxNLocator


def _axes(ax, figsize=(6, 4)):
    if ax is None:
        _, ax = plt.subplots(figsize=figsize)
    return ax


def show_image_grid(images: np.ndarray, titles=None, ncols: int = 10, scale: float = 1.1, suptitle: str | None = None):
    """uint8 ``(N, 32, 32, 3)`` images in a grid, each with an optional title. Returns the Figure."""
    n = len(images)
    nrows = int(np.ceil(n / ncols))
    # Each title line beyond the first needs room of its own, or it runs into the image above.
    title_lines = max((str(t).count("\n") + 1 for t in titles), default=1) if titles is not None else 1
    row_height = scale * 1.15 + 0.14 * (title_lines - 1)
    fig, axes = plt.subplots(nrows, ncols, figsize=(ncols * scale, nrows * row_height), squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i < n:
            ax.imshow(images[i], interpolation="nearest")
            if titles is not None:
                ax.set_title(str(titles[i]), fontsize=7)
    if suptitle:
        fig.suptitle(suptitle)
    fig.tight_layout()
    return fig


def examples_per_class(images: np.ndarray, labels: np.ndarray, classes, per_class: int = 8, seed: int = 0):
    """A grid with one row per class: ``per_class`` random examples of each. Returns the Figure."""
    rng = np.random.default_rng(seed)
    picks, titles = [], []
    for c, name in enumerate(classes):
        members = rng.choice(np.flatnonzero(labels == c), per_class, replace=False)
        picks.extend(members)
        titles.extend([name] + [""] * (per_class - 1))
    return show_image_grid(images[np.asarray(picks)], titles, ncols=per_class)


def plot_class_balance(counts: dict, classes, ax=None):
    """Grouped bars: images per class in each named split (``{"train": counts, "val": ...}``)."""
    ax = _axes(ax, (8, 3.5))
    width = 0.8 / len(counts)
    x = np.arange(len(classes))
    for i, (name, values) in enumerate(counts.items()):
        ax.bar(x + i * width - 0.4 + width / 2, values, width, label=name)
    ax.set_xticks(x, classes, rotation=30)
    ax.set_ylabel("images")
    ax.legend()
    return ax


def robust_upper_limit(values, whisker: float = 3.0, factor: float = 3.0) -> float:
    """The largest of ``values`` that is not a far outlier: where a loss axis can stop.

    A value is a far outlier when it lies above Tukey's far-out fence of the *other* values,
    ``Q3 + whisker * IQR``, and also more than ``factor`` times their upper quartile ``Q3``.
    Leaving the value out of its own fence matters for short runs: in 4 points, one spike
    lifts Q3 enough to hide itself. The ``factor`` keeps an ordinary steep first epoch
    (2.3, then ~1) on the axis; only a point that would squash the rest is cut. With fewer
    than 4 finite values nothing is an outlier.

    The epoch-1 validation loss of a short run can be 10-100x the rest (stale BatchNorm
    running statistics after epoch 1 at the peak learning rate; lesson 05 measures it).
    """
    values = np.asarray([v for v in values if np.isfinite(v)], dtype=float)
    if values.size == 0:
        return 1.0
    if values.size < 4:
        return float(values.max())
    kept = []
    for i, v in enumerate(values):
        others = np.delete(values, i)
        q1, q3 = np.quantile(others, [0.25, 0.75])
        if not (v > q3 + whisker * (q3 - q1) and v > factor * q3):
            kept.append(v)
    return float(max(kept))


def plot_learning_curves(runs: dict, metric: str = "loss", ax=None, title: str | None = None):
    """Train and validation ``metric`` ("loss" or "acc") per epoch for one or more runs.

    ``runs`` maps a label to a run's metrics rows (``Run.metrics``). Solid: validation;
    dashed: training (measured on augmented batches while training, as usual). For losses the
    y-axis stops just above ``robust_upper_limit`` of all values plotted: points above it
    (usually an epoch-1 validation loss) are drawn as triangles on the top edge, labelled with
    their value, and the bottom of the axis sits just below the lowest value shown. Epoch ticks
    are whole numbers.
    """
    ax = _axes(ax)
    scale = 100 if metric == "acc" else 1
    series = []  # (label, epochs, values, colour, line style)
    for i, (label, rows) in enumerate(runs.items()):
        epochs = [r["epoch"] for r in rows]
        for split, style in (("train", "--"), ("val", "-")):
            series.append((f"{label} {split}", epochs, [scale * r[f"{split}_{metric}"] for r in rows], f"C{i}", style))
    top = None
    if metric == "loss" and series:
        top = robust_upper_limit([v for *_, values, _, _ in series for v in values])
        if not any(v > top for *_, values, _, _ in series for v in values):
            top = None
    if top is None:
        for label, epochs, values, color, style in series:
            ax.plot(epochs, values, style, color=color, label=label)
    else:
        _plot_with_clipped_points(ax, series, top)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("epoch")
    ax.set_ylabel("accuracy (%)" if metric == "acc" else "cross-entropy loss")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    if title:
        ax.set_title(title)
    return ax


def _plot_with_clipped_points(ax, series, top: float) -> None:
    """Learning curves whose values above ``top`` (a loss spike) leave the axis.

    Each clipped point becomes a triangle on the top edge, and the curve reaches it: a dotted
    segment of the curve's colour joins the triangle to its in-range neighbours, so no segment
    enters from outside the axes, cut off from its point. The values are listed in the top
    right corner, one row each, in the curve's colour, so labels never sit on one another
    however many runs spike at the same epochs.
    """
    kept = [v for *_, values, _, _ in series for v in values if np.isfinite(v) and v <= top]
    ylim_top = top * 1.12 if top > 0 else top + 1
    # The axis spans the values it shows: from 0, curves between 1.5 and 2.2 filled a fifth of it.
    low = min(kept) - 0.05 * (ylim_top - min(kept))
    ax.set_ylim(max(low, 0.0) if min(kept) >= 0 else low, ylim_top)
    clipped = []  # (epoch, value, colour, label, index among this epoch's triangles)
    per_epoch = {}
    for label, epochs, values, color, style in series:
        shown = [v if v <= top else np.nan for v in values]
        ax.plot(epochs, shown, style, color=color, label=label)
        for k, (e, v) in enumerate(zip(epochs, values)):
            if v <= top:
                continue
            j = per_epoch[e] = per_epoch.get(e, -1) + 1
            clipped.append((e, v, color, label, j))
            for n in (k - 1, k + 1):  # a dotted link to each in-range neighbour
                if 0 <= n < len(values) and values[n] <= top:
                    ax.plot([e, epochs[n]], [ylim_top, values[n]], ":", color=color, linewidth=1.2)
    for row, (e, v, color, label, j) in enumerate(sorted(clipped, key=lambda p: (p[0], p[4]))):
        # Triangles of one epoch sit side by side, 7 points apart, so each run's spike shows.
        dx = 7.0 * (j - (per_epoch[e]) / 2)
        at = transforms.offset_copy(ax.transData, fig=ax.figure, x=dx, y=0, units="points")
        ax.plot([e], [ylim_top], "^", color=color, markersize=7, clip_on=False, transform=at)
        ax.annotate(f"{v:.3g}: {label}, epoch {e}", (1.0, 1.0), xycoords="axes fraction",
                    textcoords="offset points", xytext=(-4, -12 - 9 * row), ha="right", fontsize=7,
                    color=color, bbox={"boxstyle": "square,pad=0.1", "facecolor": "white", "edgecolor": "none",
                                       "alpha": 0.8})
    ax.annotate("above the axis (triangles on its top edge):", (1.0, 1.0), xycoords="axes fraction",
                textcoords="offset points", xytext=(-4, -3), ha="right", fontsize=7, alpha=0.8)


def plot_lr_schedule(lrs, steps_per_epoch: int, ax=None, title: str | None = None):
    """The per-step learning rate against epochs (fractional), with the warmup visible."""
    ax = _axes(ax, (6, 3))
    steps = np.arange(len(lrs))
    ax.plot(steps / steps_per_epoch, lrs)
    ax.set_xlabel("epoch")
    ax.set_ylabel("learning rate")
    ax.grid(alpha=0.3)
    if title:
        ax.set_title(title)
    return ax


def save_figure(fig_or_ax, path: Path, dpi: int = 120) -> Path:
    """Save a Figure (or an Axes' figure) to ``path``, creating its folder."""
    fig = fig_or_ax.figure if hasattr(fig_or_ax, "figure") and not hasattr(fig_or_ax, "savefig") else fig_or_ax
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi, bbox_inches="tight")
    return path
