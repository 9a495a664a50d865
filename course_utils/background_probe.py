"""The background probe: does accuracy survive when part of the image is replaced?
"""

from __future__ import annotations

from typing import Callable

import matplotlib.pyplot as plt
import numpy as np

from course_utils.calibration import to_numpy
from course_utils.confusion import per_class_accuracy
from course_utils.images import uint8_hwc_images

PERTURB_MODES = ("border_noise", "border_swap", "center_occlude")


# CIFAR-10 train-set mean per channel (0.4914, 0.4822, 0.4465) x 255, rounded: the
# "neutral grey" fill that the normalized model sees as roughly zero input.
CIFAR10_MEAN_RGB_UINT8 = (125, 123, 114)


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
    images = uint8_hwc_images(images)
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
    images = uint8_hwc_images(images)
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


def format_probe_table(results: dict, class_names) -> str:
    """``background_probe.background_probe`` results as text: accuracy per class, and its drop per mode (points)."""
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
