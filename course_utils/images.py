"""Image layout conversions between numpy HWC uint8 (what you look at) and torch NCHW (what models eat).
"""

from __future__ import annotations

import numpy as np
import torch

from course_utils.calibration import to_numpy


def to_chw(images: np.ndarray) -> torch.Tensor:
    """uint8 ``(N, H, W, C)`` numpy images -> a contiguous uint8 ``(N, C, H, W)`` tensor."""
    return torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).contiguous()


def to_hwc(images: torch.Tensor) -> np.ndarray:
    """uint8 ``(N, C, H, W)`` tensor -> ``(N, H, W, C)`` numpy, for plotting."""
    return images.permute(0, 2, 3, 1).cpu().numpy()


def denormalize_to_uint8(images: torch.Tensor, mean, std) -> torch.Tensor:
    """Invert ``augment.normalize``: float ``(N, C, H, W)`` -> uint8 in [0, 255], for looking at."""
    mean_t = torch.as_tensor(mean, dtype=images.dtype).view(1, -1, 1, 1)
    std_t = torch.as_tensor(std, dtype=images.dtype).view(1, -1, 1, 1)
    return ((images * std_t + mean_t) * 255).round().clamp(0, 255).to(torch.uint8)


def uint8_hwc_images(images) -> np.ndarray:
    """Return images as a numpy uint8 (N, H, W, 3) array, or raise with the shape found."""
    images = to_numpy(images, dtype=None)  # keep the dtype so float images are rejected, not cast
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(f"images must be uint8 (N, H, W, 3) HWC, got {images.dtype} {images.shape}")
    return images
