"""Patch whitening: a frozen first convolution whose filters decorrelate small image patches.

Page (2018) and airbench initialize the first conv layer from the training images alone: the
eigenvectors of the covariance of all ``k x k`` patches, each scaled by ``1/sqrt(eigenvalue)``.
After it, every output channel is a patch direction with unit variance, so the next layers see
decorrelated inputs from step one and learn faster. Each filter appears twice, with both signs,
so that the GELU after it loses no information.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def patch_covariance(images: torch.Tensor, kernel_size: int) -> torch.Tensor:
    """Uncentred covariance of every ``kernel_size``-square patch (stride 1, no padding).

    Args:
        images: float ``(N, C, H, W)``, already normalized (so their mean is ~0).
    Returns:
        float64 ``(C*k*k, C*k*k)``; its index order matches a conv weight's ``(C, k, k)``.
    """
    columns = F.unfold(images.double(), kernel_size)  # (N, C*k*k, patches per image)
    flat = columns.transpose(1, 2).reshape(-1, columns.shape[1])
    return flat.T @ flat / len(flat)


def whitening_filters(images: torch.Tensor, kernel_size: int = 2, eps: float = 5e-4):
    """The whitening conv's weights and the patch eigenvalues, largest first.

    Returns:
        ``weight`` float32 ``(2*C*k*k, C, k, k)``: eigenvectors divided by ``sqrt(eigenvalue + eps)``,
        then the same filters negated; ``eigenvalues`` float64 ``(C*k*k,)``, descending.
    """
    channels = images.shape[1]
    eigenvalues, eigenvectors = torch.linalg.eigh(patch_covariance(images, kernel_size))
    eigenvalues, eigenvectors = eigenvalues.flip(0), eigenvectors.flip(1)  # eigh sorts ascending
    filters = (eigenvectors.T / torch.sqrt(eigenvalues + eps)[:, None]).reshape(-1, channels, kernel_size, kernel_size)
    return torch.cat([filters, -filters]).float(), eigenvalues
