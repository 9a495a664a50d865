"""Class imbalance: how accuracy follows class frequency on a long-tailed training set.

The long-tailed subset itself is ``data.long_tailed_subset`` (used by the engine through the
config key ``imbalance_ratio``: CIFAR-10-LT / CIFAR-100-LT of Cao et al. 2019, cut from the
run's train split); the remedy ``class_weighting: balanced`` (inverse class frequency) is in
the engine's loss (``engine.class_weights``). This module measures what they do:

- ``frequency_groups(train_counts)``: head / middle / tail thirds of the classes by frequency.
- ``accuracy_by_group(per_class_acc, train_counts)``: mean per-class accuracy of each third.
- ``frequency_weighted_accuracy``: the accuracy a test set distributed like the training set
  would report, which hides the tail.
- ``plot_accuracy_vs_frequency``: per-class accuracy against training images per class (many classes);
  ``plot_per_class_accuracy``: grouped bars, one per class and run, rarest class first (a few classes).
- ``plot_class_counts``: training images per class of one or more long-tailed sets (log scale).
- ``balanced_accuracy``: the mean of per-class accuracies. A comparison over seeds takes its
  noise from ``stats.mean_and_standard_error`` and ``stats.difference_with_noise`` (re-exported
  here for lesson 10).

Conventions: ``train_counts`` is ``(C,)`` training images per class, ``per_class_acc`` is
``(C,)`` fractions (NaN for a class absent from the evaluated split).
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

from course_utils.stats import difference_with_noise, mean_and_standard_error  # noqa: F401 - lesson 10 imports them from here

GROUPS = ("head", "middle", "tail")


def frequency_groups(train_counts) -> np.ndarray:
    """``(C,)`` group names: the most frequent third of classes ``head``, then ``middle``, ``tail``.

    Classes are ranked by count (ties by class index, so the split is deterministic) and cut
    into thirds; with C not divisible by 3 the head and middle get the extra classes.
    """
    counts = np.asarray(train_counts)
    order = np.lexsort((np.arange(len(counts)), -counts))  # most frequent first
    groups = np.empty(len(counts), dtype=object)
    for name, members in zip(GROUPS, np.array_split(order, 3)):
        groups[members] = name
    return groups


def accuracy_by_group(per_class_acc, train_counts) -> dict[str, dict]:
    """Per group: ``{"classes", "images_per_class": (min, max), "accuracy"}`` (mean of per-class accuracies)."""
    acc = np.asarray(per_class_acc, dtype=np.float64)
    counts = np.asarray(train_counts)
    groups = frequency_groups(counts)
    table = {}
    for name in GROUPS:
        members = groups == name
        table[name] = {
            "classes": int(members.sum()),
            "images_per_class": (int(counts[members].min()), int(counts[members].max())),
            "accuracy": float(np.nanmean(acc[members])),
        }
    return table


def frequency_weighted_accuracy(per_class_acc, train_counts) -> float:
    """Mean of per-class accuracies weighted by training frequency.

    That is the accuracy a test set with the training set's class proportions would report:
    the head classes dominate it, so a model that fails on the tail can still look good.
    The balanced accuracy (the plain mean over classes) is what a balanced test set reports.
    """
    acc = np.asarray(per_class_acc, dtype=np.float64)
    weights = np.asarray(train_counts, dtype=np.float64)
    present = ~np.isnan(acc)
    return float(np.sum(acc[present] * weights[present]) / np.sum(weights[present]))


def format_group_table(tables: dict[str, dict[str, dict]]) -> str:
    """``{run label: accuracy_by_group(...)}`` as a text table, one column per run (accuracy in %)."""
    labels = list(tables)
    first = tables[labels[0]]
    lines = [f"{'classes':<8}{'n':>4}{'images/class':>15}" + "".join(f"{label:>22}" for label in labels)]
    for name in GROUPS:
        low, high = first[name]["images_per_class"]
        lines.append(f"{name:<8}{first[name]['classes']:>4}{f'{low}-{high}':>15}"
                     + "".join(f"{100 * tables[label][name]['accuracy']:>21.2f}%" for label in labels))
    return "\n".join(lines)


def balanced_accuracy(per_class_acc) -> float:
    """The mean of per-class accuracies (classes absent from the split, NaN, left out).

    It is what a test set with the same number of images in every class reports, whatever
    the training distribution; on a split that is balanced already it equals plain accuracy.
    """
    return float(np.nanmean(np.asarray(per_class_acc, dtype=np.float64)))


def plot_class_counts(counts_by_label: dict, classes, ax=None):
    """Training images per class (log scale): one group of bars per class, one colour per set.

    ``counts_by_label`` maps a label (e.g. "ratio 100") to ``(C,)`` counts. Returns the Axes.
    """
    if ax is None:
        _, ax = plt.subplots(figsize=(8, 3.5), layout="constrained")
    x = np.arange(len(classes))
    width = 0.8 / max(len(counts_by_label), 1)
    for i, (label, counts) in enumerate(counts_by_label.items()):
        ax.bar(x - 0.4 + (i + 0.5) * width, counts, width, label=label, color=f"C{i}")
    ax.set_yscale("log")
    ax.set_xticks(x, classes, rotation=30)
    ax.set_ylabel("training images (log scale)")
    ax.grid(alpha=0.3, axis="y")
    ax.legend(fontsize=8, loc="upper right")
    return ax


def plot_accuracy_vs_frequency(train_counts, per_class_accs: dict, ax=None, window: int = 9):
    """Per-class accuracy (%) against training images per class (log scale), one colour per run.

    Dots are classes; the line is a running mean over ``window`` classes neighbouring in
    frequency, to show the trend through the per-class noise of many classes (CIFAR-100-LT).
    With ``window=1`` there is no trend to draw and no line: a line would join different
    classes (for CIFAR-10's ten, ``plot_per_class_accuracy`` names each class). Returns the Axes.
    """
    if ax is None:
        _, ax = plt.subplots(figsize=(7, 4), layout="constrained")
    counts = np.asarray(train_counts)
    order = np.argsort(counts, kind="stable")
    for i, (label, acc) in enumerate(per_class_accs.items()):
        acc = 100 * np.asarray(acc, dtype=np.float64)
        color = f"C{i}"
        k = min(window, len(order))
        ax.scatter(counts, acc, s=12 if k > 1 else 24, alpha=0.5 if k > 1 else 0.9, color=color,
                   label=label if k == 1 else None)
        if k > 1:
            smooth = np.convolve(np.nan_to_num(acc[order]), np.ones(k) / k, mode="valid")
            ax.plot(counts[order][k // 2: k // 2 + len(smooth)], smooth, color=color, label=f"{label} (running mean)")
    ax.set_xscale("log")
    ax.set_xlabel("training images of the class (log scale)")
    ax.set_ylabel("per-class accuracy (%)")
    ax.set_ylim(-3, 103)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return ax


def plot_per_class_accuracy(train_counts, per_class_accs: dict, class_names, ax=None):
    """Grouped bars: each class's accuracy (%) under each run, classes ordered from the rarest
    to the most frequent, each tick naming the class and its training images.

    For a few classes (CIFAR-10-LT's ten): every bar is one class under one run, so nothing
    joins two classes and every value has its class written under it. Returns the Axes.
    """
    counts = np.asarray(train_counts)
    if len(class_names) != len(counts):
        raise ValueError(f"{len(class_names)} class names for {len(counts)} class counts")
    if ax is None:
        _, ax = plt.subplots(figsize=(8, 4), layout="constrained")
    order = np.argsort(counts, kind="stable")
    x = np.arange(len(order))
    width = 0.8 / len(per_class_accs)
    for i, (label, acc) in enumerate(per_class_accs.items()):
        acc = 100 * np.asarray(acc, dtype=np.float64)
        ax.bar(x - 0.4 + (i + 0.5) * width, acc[order], width, color=f"C{i}", label=label)
    ax.set_xticks(x, [f"{class_names[c]}\n{counts[c]:,}" for c in order], fontsize=8)
    ax.set_xlabel("class, and its training images (rarest left)")
    ax.set_ylabel("per-class accuracy (%)")
    ax.set_ylim(0, 103)
    ax.grid(alpha=0.3, axis="y")
    ax.legend(fontsize=8)
    return ax
