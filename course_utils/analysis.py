"""Error analysis: where and why does the model fail?

- Confusion matrix, per-class accuracy and the most confused class pairs.
- Failure galleries: confident mistakes, unsure correct answers, ambiguous images.
- Background/texture probe: does accuracy survive when the border (background) is
  replaced, or does it collapse when the centre (usually the object) is hidden?
- Calibration of the most ambiguous samples versus the rest.

Conventions: ``probs`` (N, C) softmax probabilities, ``labels`` and ``preds`` (N,)
integer class ids, ``images`` (N, H, W, 3) uint8 HWC RGB. Arrays may be numpy or
torch; results are numpy. The model is never called here directly: the probe takes
a ``predict_fn`` so this module does not depend on the training engine.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Callable

import matplotlib.pyplot as plt
import numpy as np
import seaborn as sns

from course_utils.calibration import calibration_report, to_numpy

FAILURE_KINDS = ("confident_mistakes", "unsure_correct", "ambiguous")
PERTURB_MODES = ("border_noise", "border_swap", "center_occlude")

# CIFAR-10 train-set mean per channel (0.4914, 0.4822, 0.4465) x 255, rounded: the
# "neutral grey" fill that the normalized model sees as roughly zero input.
CIFAR10_MEAN_RGB_UINT8 = (125, 123, 114)


# --------------------------------------------------------------------------- confusion


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


# --------------------------------------------------------------------------- failures


def top2_margin(probs) -> np.ndarray:
    """(N,) top-1 minus top-2 probability; small margin = the model hesitates between two classes."""
    probs = to_numpy(probs)
    top2 = np.sort(probs, axis=1)[:, -2:]
    return top2[:, 1] - top2[:, 0]


def select_failures(probs, labels, kind: str, k: int, class_id: int | None = None) -> np.ndarray:
    """Indices (into probs/labels) of the k most telling samples of one kind.

    kind:
        ``confident_mistakes``  wrong predictions, highest confidence first.
        ``unsure_correct``      right predictions, lowest confidence first.
        ``ambiguous``           all samples, smallest top-2 margin first.
    class_id: if given, only samples whose TRUE label is class_id are considered.

    Returns int64 indices, at most k (fewer if fewer samples qualify). Ties keep the
    original order, so the result is deterministic.
    """
    probs = to_numpy(probs)
    labels = to_numpy(labels, dtype=np.int64)
    preds = probs.argmax(axis=1)
    confidence = probs.max(axis=1)
    if kind == "confident_mistakes":
        eligible, sort_key = preds != labels, -confidence
    elif kind == "unsure_correct":
        eligible, sort_key = preds == labels, confidence
    elif kind == "ambiguous":
        eligible, sort_key = np.ones(len(labels), dtype=bool), top2_margin(probs)
    else:
        raise ValueError(f"kind must be one of {FAILURE_KINDS}, got {kind!r}")
    if class_id is not None:
        eligible &= labels == class_id
    candidates = np.flatnonzero(eligible)
    order = np.argsort(sort_key[candidates], kind="stable")
    return candidates[order[:k]].astype(np.int64)


def failure_title(true_name: str, pred_name: str, confidence: float) -> str:
    """Caption for one gallery image, on two lines so long class names do not overlap."""
    return f"true: {true_name}\npred: {pred_name} / {confidence:.2f}"


def _file_safe(name: str) -> str:
    """Class name -> file-name fragment ('pickup truck' -> 'pickup_truck')."""
    return re.sub(r"[^A-Za-z0-9_-]+", "_", name).strip("_") or "class"


def _check_images(images) -> np.ndarray:
    """Return images as a numpy uint8 (N, H, W, 3) array, or raise with the shape found."""
    images = to_numpy(images, dtype=None)  # keep the dtype so float images are rejected, not cast
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(f"images must be uint8 (N, H, W, 3) HWC, got {images.dtype} {images.shape}")
    return images


def save_failure_galleries(images, probs, labels, class_names, out_dir, k: int = 16) -> list[Path]:
    """Write one PNG grid per failure kind, overall and per true class.

    Files: ``{kind}_overall.png`` and ``{kind}_{class}.png`` for each kind in
    FAILURE_KINDS and each class name, i.e. 3 * (1 + C) files (the course uses
    ``figures/failures/``). Each image is captioned with true class, predicted class
    and confidence. A gallery with no qualifying samples is still written (empty grid,
    "0 images" in its heading) so the file set is predictable.

    images: (N, H, W, 3) uint8; probs: (N, C); labels: (N,). Returns the written paths.
    """
    images = _check_images(images)
    probs = to_numpy(probs)
    labels = to_numpy(labels, dtype=np.int64)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    preds, confidence = probs.argmax(axis=1), probs.max(axis=1)

    ncols = int(np.ceil(np.sqrt(k)))
    nrows = int(np.ceil(k / ncols))
    # One figure reused for every gallery: re-creating 16 axes 33 times is the slow part.
    # Inches: 1.5 per image cell, 0.4 above each for its two-line caption, 0.35 for the heading.
    height = nrows * 1.9 + 0.35
    fig, axes = plt.subplots(nrows, ncols, figsize=(1.5 * ncols, height), squeeze=False)
    fig.subplots_adjust(left=0.02, right=0.98, bottom=0.1 / height, top=1 - 0.75 / height, wspace=0.08, hspace=0.3)
    heading = fig.suptitle("", fontsize=9, y=1 - 0.08 / height, va="top")
    empty_note = fig.text(0.5, 0.5, "no samples of this kind", ha="center", va="center", fontsize=9)
    axes = axes.ravel()
    cells = [ax.imshow(np.zeros_like(images[0]), interpolation="nearest") for ax in axes]
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])

    written = []
    try:
        for kind in FAILURE_KINDS:
            groups = [("overall", None)] + [(_file_safe(name), c) for c, name in enumerate(class_names)]
            for tag, class_id in groups:
                chosen = select_failures(probs, labels, kind, k, class_id=class_id)
                for cell, ax, slot in zip(cells, axes, range(len(axes))):
                    ax.set_visible(slot < len(chosen))
                    if slot < len(chosen):
                        i = chosen[slot]
                        cell.set_data(images[i])
                        ax.set_title(failure_title(class_names[labels[i]], class_names[preds[i]], confidence[i]),
                                     fontsize=7, linespacing=1.1)
                scope = "all classes" if class_id is None else f"true class {class_names[class_id]}"
                heading.set_text(f"{kind.replace('_', ' ')}: {scope} ({len(chosen)} images)")
                empty_note.set_visible(len(chosen) == 0)
                path = out_dir / f"{kind}_{tag}.png"
                fig.savefig(path, dpi=100)
                written.append(path)
    finally:
        plt.close(fig)  # galleries write dozens of files; never leak figures
    return written


# --------------------------------------------------------------------------- background probe


def border_center_masks(size: int = 32, border: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """Boolean (size, size) masks: the outer ``border`` pixels, and the rest (the centre).

    The two are complementary; border=8 on 32x32 leaves a 16x16 centre square.
    """
    if not 0 < 2 * border < size:
        raise ValueError(f"border must satisfy 0 < 2*border < size, got border={border}, size={size}")
    center = np.zeros((size, size), dtype=bool)
    center[border:size - border, border:size - border] = True
    return ~center, center


def perturb_images(images, mode: str, seed: int | np.random.Generator = 0, border: int = 8,
                   fill: str = "mean") -> np.ndarray:
    """Return a perturbed copy of a batch; pure numpy, uint8 (N, H, W, 3) in and out.

    mode:
        ``border_noise``    border pixels replaced by uniform noise in [0, 255].
        ``border_swap``     border taken from another image of the batch: a seeded random
                            cycle, so no image keeps its own border (needs N >= 2).
        ``center_occlude``  centre square filled with ``fill``: "mean" = CIFAR-10 mean
                            colour CIFAR10_MEAN_RGB_UINT8 (about zero after normalization),
                            or "zeros" = black.
    seed: int or numpy Generator; the same int gives the same output. Square images only.
    """
    images = _check_images(images)
    n, height, width, _ = images.shape
    if height != width:
        raise ValueError(f"images must be square, got {height}x{width}")
    border_mask, center_mask = border_center_masks(height, border)
    rng = np.random.default_rng(seed)
    out = images.copy()
    if mode == "border_noise":
        noise = rng.integers(0, 256, size=images.shape, dtype=np.uint8)
        out[:, border_mask] = noise[:, border_mask]
    elif mode == "border_swap":
        if n < 2:
            raise ValueError("border_swap needs at least 2 images")
        order = rng.permutation(n)
        donor = np.empty(n, dtype=np.int64)
        donor[order] = np.roll(order, -1)  # each image takes the next one's border in a single cycle
        out[:, border_mask] = images[donor][:, border_mask]
    elif mode == "center_occlude":
        if fill == "mean":
            colour = np.array(CIFAR10_MEAN_RGB_UINT8, dtype=np.uint8)
        elif fill == "zeros":
            colour = np.zeros(3, dtype=np.uint8)
        else:
            raise ValueError(f"fill must be 'mean' or 'zeros', got {fill!r}")
        out[:, center_mask] = colour
    else:
        raise ValueError(f"mode must be one of {PERTURB_MODES}, got {mode!r}")
    return out


def background_probe(predict_fn: Callable[[np.ndarray], np.ndarray], images, labels, num_classes: int,
                     seed: int = 0, border: int = 8) -> dict:
    """Accuracy on original images and under each PERTURB_MODES perturbation.

    predict_fn: uint8 (N, H, W, 3) images -> (N,) predicted class ids (numpy or torch);
    it owns batching, normalization and the device.

    Returns a dict keyed by mode name ("original", then PERTURB_MODES), each value a dict:
        ``accuracy``            overall fraction correct (float).
        ``per_class_accuracy``  (C,) fractions, NaN for absent classes.
        ``per_class_drop``      (C,) original minus this mode; positive = accuracy lost.
    A model that relies on the background loses accuracy under the border modes; one
    that looks at the object loses it under center_occlude.
    """
    images = _check_images(images)
    labels = to_numpy(labels, dtype=np.int64)
    variants = {"original": images}
    variants.update({mode: perturb_images(images, mode, seed=seed, border=border) for mode in PERTURB_MODES})
    results = {}
    for mode, batch in variants.items():
        preds = to_numpy(predict_fn(batch), dtype=np.int64)
        per_class = per_class_accuracy(labels, preds, num_classes)
        results[mode] = {"accuracy": float(np.mean(preds == labels)), "per_class_accuracy": per_class}
    for mode in results:
        results[mode]["per_class_drop"] = results["original"]["per_class_accuracy"] - results[mode]["per_class_accuracy"]
    return results


# --------------------------------------------------------------------------- ambiguity vs calibration


def ambiguity_split(probs, quantile: float = 0.1) -> np.ndarray:
    """(N,) bool mask of the round(quantile * N) samples with the smallest top-2 margin.

    Exactly that many are selected (ties broken by index), unlike a threshold on the
    margin, which can select more when many margins tie.
    """
    if not 0 <= quantile <= 1:
        raise ValueError(f"quantile must be in [0, 1], got {quantile}")
    margin = top2_margin(probs)
    n_ambiguous = int(round(quantile * len(margin)))
    mask = np.zeros(len(margin), dtype=bool)
    mask[np.argsort(margin, kind="stable")[:n_ambiguous]] = True
    return mask


def calibration_by_subset(probs, labels, mask, n_bins: int = 15) -> dict[str, dict[str, float]]:
    """calibration_report for the samples in ``mask`` ("subset") and the others ("rest").

    Each report also carries ``n``, the number of samples in it. Both parts must be
    non-empty. Typical use: ``calibration_by_subset(probs, labels, ambiguity_split(probs))``.
    """
    probs = to_numpy(probs)
    labels = to_numpy(labels, dtype=np.int64)
    mask = to_numpy(mask, dtype=bool)
    if mask.shape != labels.shape:
        raise ValueError(f"mask must be {labels.shape}, got {mask.shape}")
    if mask.all() or not mask.any():
        raise ValueError("mask must select some samples but not all")
    reports = {}
    for name, part in (("subset", mask), ("rest", ~mask)):
        reports[name] = {**calibration_report(probs[part], labels[part], n_bins), "n": int(part.sum())}
    return reports
