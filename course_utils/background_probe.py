"""The background probe: does accuracy survive when the centre, or the corners, of an image is replaced?

The two regions have the same area (a 16x16 centre square and four 8x8 corner squares: 256
pixels each on a 32x32 image), so a difference between them is not a difference in how much
of the image was changed. The fills stay close to what the network saw in training:

- ``blur``   the region replaced by a Gaussian-blurred copy of itself (shape gone, colours kept);
- ``mean``   the region filled with its own mean colour, image by image;
- ``swap``   the same region taken from another image of a *different* class (real pixels);
- ``noise``  uniform noise: out of distribution, kept only to show what goes wrong with it.

``background_probe`` returns each image's correctness under every perturbation, so the
lesson can put a standard error beside every drop (paired over the same images).
"""

from __future__ import annotations

from typing import Callable

import matplotlib.pyplot as plt
import numpy as np

from course_utils.calibration import to_numpy
from course_utils.confusion import per_class_accuracy
from course_utils.images import uint8_hwc_images
from course_utils.stats import mean_and_standard_error

REGIONS = ("centre", "corners")
FILLS = ("blur", "mean", "swap")  # in-distribution fills; "noise" exists for the what-can-go-wrong cell
OUT_OF_DISTRIBUTION_FILLS = ("noise",)
PROBE_VARIANTS = tuple(f"{region}_{fill}" for region in REGIONS for fill in FILLS)


def region_masks(size: int = 32, corner: int = 8) -> dict[str, np.ndarray]:
    """Boolean (size, size) masks of equal area: ``centre`` (a square) and ``corners`` (four squares).

    The corners are ``corner`` x ``corner`` squares; the centre square has side 2 * corner, so
    both cover 4 * corner**2 pixels (256 of 1024 for 32x32 and corner=8: a quarter of the image).
    """
    if not 0 < 4 * corner <= size:  # the centre square (side 2 * corner) must not reach the corners
        raise ValueError(f"corner must satisfy 0 < 4 * corner <= size, got corner={corner}, size={size}")
    centre = np.zeros((size, size), dtype=bool)
    lo = (size - 2 * corner) // 2
    centre[lo:lo + 2 * corner, lo:lo + 2 * corner] = True
    corners = np.zeros((size, size), dtype=bool)
    for rows in (slice(0, corner), slice(size - corner, size)):
        for cols in (slice(0, corner), slice(size - corner, size)):
            corners[rows, cols] = True
    return {"centre": centre, "corners": corners}


def gaussian_blur(images, sigma: float = 2.0) -> np.ndarray:
    """Separable Gaussian blur of uint8 (N, H, W, 3) images (reflect padding); returns float64."""
    images = uint8_hwc_images(images).astype(np.float64)
    radius = int(np.ceil(3 * sigma))
    x = np.arange(-radius, radius + 1)
    kernel = np.exp(-x ** 2 / (2 * sigma ** 2))
    kernel /= kernel.sum()
    out = images
    for axis in (1, 2):
        pad = [(0, 0)] * 4
        pad[axis] = (radius, radius)
        padded = np.pad(out, pad, mode="reflect")
        out = sum(w * np.take(padded, np.arange(i, i + images.shape[axis]), axis=axis) for i, w in enumerate(kernel))
    return out


def donors_of_other_classes(labels, seed: int | np.random.Generator = 0) -> np.ndarray:
    """(N,) index of a random other image of a different class for every image (seeded)."""
    labels = to_numpy(labels, dtype=np.int64)
    if len(np.unique(labels)) < 2:
        raise ValueError("swapping from another class needs images of at least two classes")
    rng = np.random.default_rng(seed)
    return np.array([rng.choice(np.flatnonzero(labels != y)) for y in labels], dtype=np.int64)


def perturb_images(images, region: str, fill: str, labels=None, seed: int | np.random.Generator = 0,
                   corner: int = 8, sigma: float = 2.0) -> np.ndarray:
    """A perturbed copy of a batch: ``region`` of every image replaced by ``fill``; uint8 (N, H, W, 3) in and out.

    region: ``centre`` or ``corners`` (equal area, see ``region_masks``).
    fill: ``blur`` (Gaussian, ``sigma`` pixels), ``mean`` (the region's own mean colour, per image),
    ``swap`` (the same region of an image of another class: needs ``labels``), or ``noise``
    (uniform in [0, 255]: out of distribution). seed: the same int gives the same output.
    """
    images = uint8_hwc_images(images)
    n, height, width, _ = images.shape
    if height != width:
        raise ValueError(f"images must be square, got {height}x{width}")
    masks = region_masks(height, corner)
    if region not in masks:
        raise ValueError(f"region must be one of {REGIONS}, got {region!r}")
    mask = masks[region]
    rng = np.random.default_rng(seed)
    out = images.copy()
    if fill == "blur":
        out[:, mask] = np.clip(np.round(gaussian_blur(images, sigma)[:, mask]), 0, 255).astype(np.uint8)
    elif fill == "mean":
        out[:, mask] = np.round(images[:, mask].mean(axis=1, keepdims=True)).astype(np.uint8)
    elif fill == "swap":
        if labels is None:
            raise ValueError("fill='swap' needs the labels, to take each region from an image of another class")
        out[:, mask] = images[donors_of_other_classes(labels, rng)][:, mask]
    elif fill == "noise":
        out[:, mask] = rng.integers(0, 256, size=(n, int(mask.sum()), 3), dtype=np.uint8)
    else:
        raise ValueError(f"fill must be one of {FILLS + OUT_OF_DISTRIBUTION_FILLS}, got {fill!r}")
    return out


def paired_standard_error(correct_a, correct_b) -> float:
    """Standard error of mean(correct_a) - mean(correct_b) on the same n images (paired), as a fraction."""
    d = to_numpy(correct_a) - to_numpy(correct_b)
    return mean_and_standard_error(d)[1] if len(d) > 1 else float("nan")


def background_probe(predict_fn: Callable[[np.ndarray], np.ndarray], images, labels, num_classes: int,
                     variants=PROBE_VARIANTS, seed: int = 0, corner: int = 8) -> dict:
    """Accuracy on the original images and under each ``"{region}_{fill}"`` variant.

    predict_fn: uint8 (N, H, W, 3) images -> (N,) predicted class ids (numpy or torch);
    it owns batching, normalization and the device.

    Returns a dict keyed by "original", then each variant; each value a dict:
        ``preds``, ``correct``   (N,) predictions and bool correctness, image by image.
        ``accuracy``             overall fraction correct.
        ``per_class_accuracy``   (C,) fractions, NaN for absent classes.
        ``drop``, ``drop_se``    original minus this accuracy, and its paired standard error.
        ``per_class_drop``, ``per_class_drop_se``  the same per true class, (C,).
    """
    images = uint8_hwc_images(images)
    labels = to_numpy(labels, dtype=np.int64)
    batches = {"original": images}
    for variant in variants:
        region, fill = variant.split("_", 1)
        batches[variant] = perturb_images(images, region, fill, labels=labels, seed=seed, corner=corner)
    results = {}
    for name, batch in batches.items():
        preds = to_numpy(predict_fn(batch), dtype=np.int64)
        results[name] = {"preds": preds, "correct": preds == labels, "accuracy": float(np.mean(preds == labels)),
                         "per_class_accuracy": per_class_accuracy(labels, preds, num_classes)}
    base = results["original"]
    for r in results.values():
        r["drop"] = base["accuracy"] - r["accuracy"]
        r["drop_se"] = paired_standard_error(base["correct"], r["correct"])
        r["per_class_drop"] = base["per_class_accuracy"] - r["per_class_accuracy"]
        r["per_class_drop_se"] = np.array([paired_standard_error(base["correct"][labels == c], r["correct"][labels == c])
                                           if np.any(labels == c) else np.nan for c in range(num_classes)])
    return results


def format_probe_table(results: dict, class_names) -> str:
    """Probe results as text: per-class original accuracy (%), then each variant's drop ± its standard error (points)."""
    variants = [v for v in results if v != "original"]
    lines = [f"{'class':<12}{'original':>9}" + "".join(f"{v:>17}" for v in variants)]
    for c, name in enumerate(class_names):
        cells = "".join(f"{100 * results[v]['per_class_drop'][c]:>10.1f} ±{100 * results[v]['per_class_drop_se'][c]:4.1f}"
                        for v in variants)
        lines.append(f"{name:<12}{100 * results['original']['per_class_accuracy'][c]:>8.1f}%{cells}")
    overall = "".join(f"{100 * results[v]['drop']:>10.1f} ±{100 * results[v]['drop_se']:4.1f}" for v in variants)
    lines.append(f"{'all':<12}{100 * results['original']['accuracy']:>8.1f}%{overall}")
    return "\n".join(lines)


def plot_probe_drops(results: dict, class_names, fill: str = "swap"):
    """Two panels: the overall drop per fill (centre vs corners), and the per-class drop for one ``fill``.

    Bars are accuracy drops in points, with +-2 standard errors; the legend sits above the
    panels, clear of the bars. Returns the Figure.
    """
    fills = [f for f in FILLS if all(f"{r}_{f}" in results for r in REGIONS)]
    colours = {"centre": "tab:orange", "corners": "tab:blue"}
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4), width_ratios=(1, 2.6), layout="constrained")
    width = 0.38
    for i, region in enumerate(REGIONS):
        offset = (i - 0.5) * width
        left.bar(np.arange(len(fills)) + offset, [100 * results[f"{region}_{f}"]["drop"] for f in fills], width,
                 yerr=[200 * results[f"{region}_{f}"]["drop_se"] for f in fills], capsize=3,
                 color=colours[region], label=f"{region} replaced (256 pixels)")
        r = results[f"{region}_{fill}"]
        right.bar(np.arange(len(class_names)) + offset, 100 * r["per_class_drop"], width,
                  yerr=200 * r["per_class_drop_se"], capsize=2, color=colours[region])
    left.set_xticks(np.arange(len(fills)), fills)
    left.set_xlabel("fill")
    left.set_ylabel("accuracy drop (points, ± 2 s.e.)")
    left.set_title("all classes")
    right.set_xticks(np.arange(len(class_names)), class_names, rotation=30)
    right.set_title(f"per true class, fill = {fill}")
    for ax in (left, right):
        ax.axhline(0, color="black", linewidth=0.8)
    fig.legend(loc="outside upper center", ncol=len(REGIONS), frameon=False)
    return fig
