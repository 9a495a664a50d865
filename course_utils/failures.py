"""Failure galleries: confident mistakes, unsure correct answers and ambiguous images, calibration on a
subset, and the published label errors of the CIFAR-10 test set (is a confident mistake the label's fault?).
"""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from course_utils.calibration import calibration_report, to_numpy
from course_utils.images import uint8_hwc_images

FAILURE_KINDS = ("confident_mistakes", "unsure_correct", "ambiguous")

# Northcutt et al. (2021), shipped with its citation in reference/README.md.
LABEL_ERRORS_FILE = Path(__file__).resolve().parents[1] / "reference" / "cifar10_test_label_errors.json"


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




def save_failure_galleries(images, probs, labels, class_names, out_dir, k: int = 16) -> list[Path]:
    """Write one PNG grid per failure kind, overall and per true class.

    Files: ``{kind}_overall.png`` and ``{kind}_{class}.png`` for each kind in
    FAILURE_KINDS and each class name, i.e. 3 * (1 + C) files (the course uses
    ``figures/failures/``). Each image is captioned with true class, predicted class
    and confidence. A gallery with no qualifying samples is still written (empty grid,
    "0 images" in its heading) so the file set is predictable.

    images: (N, H, W, 3) uint8; probs: (N, C); labels: (N,). Returns the written paths.
    """
    images = uint8_hwc_images(images)
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


# --------------------------------------------------------------------------- published label errors


@dataclasses.dataclass
class LabelErrors:
    """Published label errors of a test set, with the raters' votes.

    ``candidates``: every image shown to the raters (position in the official test set, given
    label); ``errors`` those judged mislabeled, and ``raters_label`` the label a majority chose
    instead (-1 where no label won a majority: such images can be excluded, not relabeled).
    """

    candidate_index: np.ndarray  # (M,) int64, positions in the official test set
    candidate_given: np.ndarray  # (M,) int64 class ids of the dataset's label
    error_index: np.ndarray  # (E,) int64, sorted
    raters_label: np.ndarray  # (E,) int64 class id, -1 where no majority
    criterion: str
    source: str


def load_label_errors(class_names, path=LABEL_ERRORS_FILE, max_given_votes: int = 2,
                      majority: int = 3) -> LabelErrors:
    """The CIFAR-10 test-set label errors of Northcutt et al. (2021) as class ids.

    An image is an error when at most ``max_given_votes`` of its 5 raters chose the given label
    (their criterion: fewer than 3 of 5); its ``raters_label`` is the guessed label when at least
    ``majority`` of the 5 chose it. ``class_names`` maps the file's names to ids (the dataset's order).
    """
    data = json.loads(Path(path).read_text())
    ids = {name: i for i, name in enumerate(class_names)}
    rows = sorted(data["candidates"], key=lambda c: c["index"])
    errors = [c for c in rows if c["votes"]["given"] <= max_given_votes]
    return LabelErrors(
        candidate_index=np.array([c["index"] for c in rows], dtype=np.int64),
        candidate_given=np.array([ids[c["given"]] for c in rows], dtype=np.int64),
        error_index=np.array([c["index"] for c in errors], dtype=np.int64),
        raters_label=np.array([ids[c["guessed"]] if c["votes"]["guessed"] >= majority else -1 for c in errors],
                              dtype=np.int64),
        criterion=data["criterion"], source=data["source"])


def accuracy_with_label_errors_fixed(preds, labels, indices, errors: LabelErrors) -> dict[str, float | int]:
    """Accuracy as measured, with the published label errors excluded, and with them relabeled.

    preds, labels: (N,) on a test split whose images sit at ``indices`` of the official test set.
    ``excluded``: accuracy without the error images. ``relabeled``: errors with a raters' label
    scored against it, errors without one excluded. Also the counts ``n``, ``n_errors`` (errors in
    this split), ``n_relabeled``.
    """
    preds, labels, indices = (to_numpy(a, dtype=np.int64) for a in (preds, labels, indices))
    is_error = np.isin(indices, errors.error_index)
    new_label = labels.copy()
    position = np.searchsorted(errors.error_index, indices[is_error])
    new_label[is_error] = errors.raters_label[position]
    keep = new_label >= 0
    return {"n": len(labels), "n_errors": int(is_error.sum()), "n_relabeled": int((is_error & keep).sum()),
            "measured": float(np.mean(preds == labels)),
            "excluded": float(np.mean(preds[~is_error] == labels[~is_error])),
            "relabeled": float(np.mean(preds[keep] == new_label[keep]))}
