"""Which classes the model confuses: the confusion matrix, per-class accuracy, the most confused pairs
(ordered and unordered), and mistakes that stay within a semantic group (animals, vehicles).
"""

from __future__ import annotations

from typing import Sequence

import matplotlib.pyplot as plt
import numpy as np
import seaborn as sns

from course_utils.calibration import to_numpy


def confusion_matrix(labels, preds, num_classes: int, normalize: bool = True) -> np.ndarray:
    """(C, C) matrix; entry [i, j] counts samples of true class i predicted as j.

    Rows are true classes, columns predictions. With ``normalize`` each row is divided
    by its count (float64, rows sum to 1, entry = rate); a class with no samples keeps
    an all-zero row instead of NaN. Without it, int64 counts.
    """
    labels = to_numpy(labels, dtype=np.int64)
    preds = to_numpy(preds, dtype=np.int64)
    if labels.shape != preds.shape or labels.ndim != 1:
        raise ValueError(f"labels and preds must be matching (N,) arrays, got {labels.shape} and {preds.shape}")
    for name, values in (("labels", labels), ("preds", preds)):
        if values.size and (values.min() < 0 or values.max() >= num_classes):
            raise ValueError(f"{name} must lie in [0, {num_classes})")
    counts = np.bincount(labels * num_classes + preds, minlength=num_classes**2).reshape(num_classes, num_classes)
    if not normalize:
        return counts
    row_sums = counts.sum(axis=1, keepdims=True)
    return counts / np.maximum(row_sums, 1)  # empty rows: 0 / 1 = 0


def per_class_accuracy(labels, preds, num_classes: int) -> np.ndarray:
    """(C,) fraction of each true class predicted correctly; NaN for a class with no samples."""
    labels = to_numpy(labels, dtype=np.int64)
    counts = confusion_matrix(labels, preds, num_classes, normalize=False)
    support = counts.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.diag(counts) / support


def most_confused_pairs(cm, class_names, k: int = 10) -> list[tuple[str, str, float]]:
    """The k largest off-diagonal entries of a confusion matrix, largest first.

    Returns [(true_name, predicted_name, rate), ...]; rate is the entry's value (a
    fraction for a normalized matrix, a count otherwise). Zero entries are never
    listed; ties keep row-major order (true class, then predicted class).
    """
    cm = to_numpy(cm)
    off_diagonal = cm.copy()
    np.fill_diagonal(off_diagonal, 0)
    flat = off_diagonal.ravel()
    order = np.argsort(-flat, kind="stable")  # stable: ties stay in row-major order
    pairs = []
    for index in order[:k]:
        if flat[index] <= 0:
            break
        true_id, pred_id = divmod(int(index), cm.shape[1])
        pairs.append((class_names[true_id], class_names[pred_id], float(flat[index])))
    return pairs


def plot_confusion_matrix(cm, class_names, ax=None):
    """Seaborn heatmap of a confusion matrix, rows = true, columns = predicted.

    Cells are annotated (2 decimals if normalized, counts otherwise) when there are
    at most 20 classes; beyond that numbers would not fit. Returns the Axes; never shows.
    """
    cm = to_numpy(cm, dtype=None)
    is_rate = np.issubdtype(cm.dtype, np.floating)  # confusion_matrix(normalize=True) gives floats
    if ax is None:
        size = max(4.0, 0.55 * len(class_names))
        _, ax = plt.subplots(figsize=(size + 1, size))
    sns.heatmap(cm, annot=len(class_names) <= 20, fmt=".2f" if is_rate else ".0f", cmap="Blues",
                xticklabels=class_names, yticklabels=class_names, square=True, cbar=True,
                annot_kws={"fontsize": 7}, ax=ax)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    ax.set_title("Confusion matrix" + (" (row-normalized)" if is_rate else " (counts)"))
    return ax


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
