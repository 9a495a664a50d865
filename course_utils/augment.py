"""Training-time augmentation as batched tensor operations, and the torchvision reference.

The course's pipeline (``random_crop_flip``) works on a whole batch at once, on whatever
device holds it: no PIL, no worker processes. ``torchvision_train_transform`` is the
standard per-image pipeline that tutorials use; the lessons and benchmarks compare the two.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def random_crop_flip(
    images: torch.Tensor,
    padding: int = 4,
    flip: bool = True,
    generator: torch.Generator | None = None,
    *,
    mirror: torch.Tensor | None = None,
    pad_mode: str = "zeros",
) -> torch.Tensor:
    """Random crop with padding and random horizontal flip, for a batch.

    Args:
        images: ``(N, C, H, W)`` tensor of any dtype (uint8 before normalization, so the
            padding is black, exactly like torchvision's ``RandomCrop(32, padding=4)`` on PIL).
        padding: pixels of padding on each side; each image gets its own offset in
            ``[0, 2 * padding]`` per axis, i.e. ``(2p + 1) ** 2`` possible windows (81 for p=4).
        flip: mirror each image left-right with probability 1/2.
        generator: a CPU ``torch.Generator``; the random draws are made on the CPU and moved
            to the images' device, so the same seed gives the same batch on CPU and GPU.
        mirror: bool ``(N,)``: which images to mirror, chosen by the caller (the alternating
            flip); ``None`` draws them at random (if ``flip``).
        pad_mode: ``"zeros"`` (black border) or ``"reflect"`` (the border mirrors the image,
            as airbench's translate: no black pixels the test set never has).

    Returns:
        A new ``(N, C, H, W)`` tensor, same dtype and device.
    """
    offsets, mirror = draw_crop_flip(len(images), padding, flip, generator, mirror=mirror)
    return crop_flip(images, offsets.to(images.device), mirror.to(images.device), padding, pad_mode)


def draw_crop_flip(
    n: int,
    padding: int = 4,
    flip: bool = True,
    generator: torch.Generator | None = None,
    *,
    mirror: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The random part of ``random_crop_flip``, drawn on the CPU: int64 ``offsets`` ``(2, N)`` in
    ``[0, 2 * padding]`` (row 0: top, row 1: left) and bool ``mirror`` ``(N,)``.

    The order of the draws is fixed (all 2N offsets, then N coins unless ``mirror`` is given or
    ``flip`` is off): the same generator state gives the same crops, whether one batch draws them
    here or ``loader.BatchIterator`` draws a whole epoch's batches ahead, one after the other.
    """
    offsets = torch.randint(0, 2 * padding + 1, (2, n), generator=generator)
    if mirror is None:
        mirror = torch.rand(n, generator=generator).lt(0.5) if flip else torch.zeros(n, dtype=torch.bool)
    return offsets, mirror


def crop_flip(images: torch.Tensor, offsets: torch.Tensor, mirror: torch.Tensor, padding: int = 4,
              pad_mode: str = "zeros") -> torch.Tensor:
    """Cut each image's window at ``offsets`` (``(2, N)``: top, left, in the padded image) and mirror
    it where ``mirror`` (``(N,)``) is set: the deterministic part of ``random_crop_flip``.

    The index is built on ``images.device`` from ``offsets`` and ``mirror``, which must live there
    too: with everything on the GPU, nothing is copied from the host.
    """
    n, c, h, w = images.shape
    device = images.device
    rows = offsets[0, :, None] + torch.arange(h, device=device)  # (N, H) rows of the padded image
    cols = torch.where(mirror[:, None], torch.arange(w - 1, -1, -1, device=device),
                       torch.arange(w, device=device)) + offsets[1, :, None]  # (N, W)
    if pad_mode == "reflect":
        # Padded coordinate p is image coordinate p - padding, reflected at the borders: no pad needed.
        rows, cols = _reflect(rows - padding, h), _reflect(cols - padding, w)
        source, source_w = images, w
    elif pad_mode == "zeros":
        source = F.pad(images, (padding, padding, padding, padding)) if padding else images
        source_w = w + 2 * padding
    else:
        raise ValueError(f"pad_mode must be 'zeros' or 'reflect', got {pad_mode!r}")
    # One gather from the flattened (padded) images does crop and flip together: the index of
    # output pixel (y, x) of image i is rows[i, y] * source_w + cols[i, x].
    index = (rows[:, :, None] * source_w + cols[:, None, :]).view(n, 1, h * w)
    out = source.reshape(n, c, -1).gather(2, index.expand(n, c, h * w))
    return out.view(n, c, h, w)


def _reflect(coords: torch.Tensor, size: int) -> torch.Tensor:
    """Mirror coordinates in ``(-size, 2 * size - 1)`` into ``[0, size)`` without repeating the edge."""
    coords = coords.abs()
    return torch.where(coords >= size, 2 * (size - 1) - coords, coords)


def normalize(images: torch.Tensor, mean, std, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """uint8 ``(N, C, H, W)`` in [0, 255] -> ``dtype`` tensor ``(x / 255 - mean) / std`` per channel.

    ``mean`` and ``std``: 3 numbers each, or tensors already of ``dtype`` on ``images.device``
    (``channel_tensors``), which are used as they are: no copy from the host per batch.
    """
    mean_t, std_t = channel_tensors(mean, std, images.device, dtype)
    return (images.to(dtype) / 255.0 - mean_t) / std_t


def channel_tensors(mean, std, device, dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
    """``mean`` and ``std`` as ``(1, C, 1, 1)`` tensors on ``device``, made once for many batches."""
    return (torch.as_tensor(mean, dtype=dtype, device=device).view(1, -1, 1, 1),
            torch.as_tensor(std, dtype=dtype, device=device).view(1, -1, 1, 1))


class PILImageDataset(torch.utils.data.Dataset):
    """What ``torchvision.datasets.CIFAR10`` does per item: a uint8 HWC array becomes a PIL image
    and the per-image ``transform`` runs on it. The reference pipeline the lessons compare with."""

    def __init__(self, images, labels, transform):
        self.images, self.labels, self.transform = images, labels, transform

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int):
        from PIL import Image

        return self.transform(Image.fromarray(self.images[index])), int(self.labels[index])


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
