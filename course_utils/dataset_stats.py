"""What the data copy is and what its pixels look like: exact vs JPEG-degraded images, per-image
statistics, and the pixel summary of a padded batch.
"""

from __future__ import annotations

import numpy as np
import torch

from course_utils.data import Dataset


def exactness_masks(dataset: Dataset) -> tuple[np.ndarray, np.ndarray] | None:
    """``(train_exact, test_exact)`` boolean masks if the cache marks pixel-exact images, else None.

    The course's offline copy carries them (only ``x_train[:4000]`` and ``x_test[:1000]`` are
    pixel-exact; the rest were decoded from JPEG). A torchvision download has none: all exact.
    """
    with np.load(dataset.source, allow_pickle=False) as npz:
        if "train_exact" not in npz.files or "test_exact" not in npz.files:
            return None
        return npz["train_exact"].astype(bool), npz["test_exact"].astype(bool)


def describe_data_source(dataset: Dataset) -> str:
    """One line naming the cache file, its note, and how many of its images are pixel-exact."""
    parts = [f"data: {dataset.source.name}"]
    if dataset.note:
        parts.append(f"note: {dataset.note}")
    masks = exactness_masks(dataset)
    if masks is None:
        parts.append("no exactness masks (a torchvision download is pixel-exact)")
    else:
        train_exact, test_exact = masks
        parts.append(
            f"pixel-exact: {train_exact.sum():,} of {len(train_exact):,} train and {test_exact.sum():,} of "
            f"{len(test_exact):,} test images, the others JPEG-degraded"
        )
    return "; ".join(parts)


def mean_per_image_std(images: np.ndarray, chunk: int = 4096) -> tuple[float, float, float]:
    """The mean over images of each image's own per-channel std, in [0, 1] units.

    This is the quantity behind the widely copied "std" (0.2023, 0.1994, 0.2010): it leaves
    out the variation *between* images, so it is smaller than the dataset std.
    """
    total = torch.zeros(3, dtype=torch.float64)
    for start in range(0, len(images), chunk):
        x = torch.from_numpy(images[start : start + chunk]).flatten(1, 2).float()  # (n, H*W, 3)
        total += x.std(dim=1, unbiased=False).double().sum(0)
    return tuple(float(s) for s in total / len(images) / 255.0)


def pixel_summary(images: torch.Tensor, border: int = 4) -> dict[str, float]:
    """Statistics of uint8 ``(N, C, H, W)`` images that augmentation changes.

    ``mean``: all pixels in [0, 1]; ``border_mean``: the outer ``border``-pixel ring, where
    padding lands; ``black_fraction``: pixels that are exactly (0, 0, 0).
    """
    x = images.float() / 255
    ring = torch.ones(images.shape[-2:], dtype=torch.bool)
    ring[border:-border, border:-border] = False
    return {
        "mean": float(x.mean()),
        "border_mean": float(x[..., ring].mean()),
        "black_fraction": float((images == 0).all(dim=1).float().mean()),
    }
