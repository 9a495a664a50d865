"""Training-time augmentation as batched tensor operations, and the torchvision reference.

The course's pipeline (``random_crop_flip``) works on a whole batch at once, on whatever
device holds it: no PIL, no worker processes. ``torchvision_train_transform`` is the
standard per-image pipeline that tutorials use; the lessons and benchmarks compare the two.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def random_crop_flip(
    images: torch.Tensor, padding: int = 4, flip: bool = True, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Random crop with zero padding and random horizontal flip, for a batch.

    Args:
        images: ``(N, C, H, W)`` tensor of any dtype (uint8 before normalization, so the
            padding is black, exactly like torchvision's ``RandomCrop(32, padding=4)`` on PIL).
        padding: pixels of zero padding on each side; each image gets its own offset in
            ``[0, 2 * padding]`` per axis, i.e. ``(2p + 1) ** 2`` possible windows (81 for p=4).
        flip: mirror each image left-right with probability 1/2.
        generator: a CPU ``torch.Generator``; the random draws are made on the CPU and moved
            to the images' device, so the same seed gives the same batch on CPU and GPU.

    Returns:
        A new ``(N, C, H, W)`` tensor, same dtype and device.
    """
    n, _, h, w = images.shape
    out = images
    if padding > 0:
        offsets = torch.randint(0, 2 * padding + 1, (2, n), generator=generator).to(images.device)
        padded = F.pad(images, (padding, padding, padding, padding))
        rows = offsets[0, :, None] + torch.arange(h, device=images.device)  # (N, H)
        cols = offsets[1, :, None] + torch.arange(w, device=images.device)  # (N, W)
        batch = torch.arange(n, device=images.device)[:, None, None]
        # Advanced indexing gathers every image's window in one op: (N, H, W, C) -> (N, C, H, W).
        out = padded.permute(0, 2, 3, 1)[batch, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2)
    if flip:
        mirror = torch.rand(n, generator=generator).lt(0.5).to(images.device)
        out = torch.where(mirror[:, None, None, None], out.flip(3), out)
    return out.contiguous()


def normalize(images: torch.Tensor, mean, std, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """uint8 ``(N, C, H, W)`` in [0, 255] -> ``dtype`` tensor ``(x / 255 - mean) / std`` per channel."""
    mean_t = torch.as_tensor(mean, dtype=dtype, device=images.device).view(1, -1, 1, 1)
    std_t = torch.as_tensor(std, dtype=dtype, device=images.device).view(1, -1, 1, 1)
    return (images.to(dtype) / 255.0 - mean_t) / std_t


def torchvision_train_transform(mean, std, padding: int = 4):
    """The standard per-image training pipeline (PIL crop + flip, ToTensor, Normalize)."""
    import torchvision.transforms as T

    return T.Compose(
        [T.RandomCrop(32, padding=padding), T.RandomHorizontalFlip(), T.ToTensor(), T.Normalize(mean, std)]
    )


def torchvision_eval_transform(mean, std):
    """The standard per-image evaluation pipeline: no augmentation."""
    import torchvision.transforms as T

    return T.Compose([T.ToTensor(), T.Normalize(mean, std)])
