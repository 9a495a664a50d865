"""Batches from in-memory tensors: no worker processes, so it works in any notebook on any OS.

The whole split lives as one uint8 tensor (on the GPU if you like: CIFAR-10 is 150 MB);
each batch is gathered, augmented and normalized there with a few tensor ops.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from course_utils.augment import normalize, random_crop_flip
from course_utils.data import Dataset, channel_stats, split_train_val


def epoch_generator(seed: int, epoch: int) -> torch.Generator:
    """A CPU generator for one epoch, derived from (seed, epoch) alone.

    Deriving it (instead of carrying one generator across epochs) makes the data order of
    any epoch reproducible on its own: resuming at epoch k needs no saved generator state.
    """
    return torch.Generator().manual_seed(seed * 1_000_003 + epoch)


class BatchIterator:
    """Iterate over ``(images, labels)`` batches of an in-memory split.

    Args:
        images: uint8 ``(N, 32, 32, 3)`` (numpy, HWC) or ``(N, 3, 32, 32)`` (tensor, CHW).
        labels: int ``(N,)``.
        batch_size: images per batch; the last batch may be smaller (as a DataLoader's).
        mean, std: per-channel normalization in [0, 1] units.
        train: shuffle every epoch and augment; otherwise fixed order, no augmentation.
        augment: with ``train``, apply random crop (``padding``) and horizontal flip (``flip``).
        flip_mode: ``"random"``: each image mirrored with probability 1/2 in every epoch;
            ``"alternating"`` (airbench): each image gets a random mirror state once, then all
            images flip together every other epoch, so every image is seen both ways in any two
            consecutive epochs instead of by chance.
        pad_mode: the crop's padding, ``"zeros"`` or ``"reflect"`` (see ``random_crop_flip``).
        seed: seeds the per-epoch order and augmentation (see ``epoch_generator``).
        device: where batches are produced.
        keep_on_device: store the whole split on ``device`` (fast on a GPU) instead of on
            the CPU with a copy per batch.
        channels_last: return batches in channels-last memory format (faster convs).
        rank, world_size: for data parallelism, each rank takes a disjoint, equal-sized shard
            of every epoch's permutation.

    Yields:
        ``x``: float32 ``(B, 3, 32, 32)`` normalized images; ``y``: int64 ``(B,)``.
    """

    def __init__(
        self,
        images,
        labels,
        batch_size: int,
        mean,
        std,
        *,
        train: bool,
        augment: bool = True,
        padding: int = 4,
        flip: bool = True,
        flip_mode: str = "random",
        pad_mode: str = "zeros",
        seed: int = 0,
        device="cpu",
        keep_on_device: bool = True,
        channels_last: bool = False,
        rank: int = 0,
        world_size: int = 1,
    ):
        self.device = torch.device(device)
        storage = self.device if keep_on_device else torch.device("cpu")
        images = torch.as_tensor(np.asarray(images)) if not torch.is_tensor(images) else images
        if images.shape[-1] == 3:  # HWC -> CHW
            images = images.permute(0, 3, 1, 2)
        self.images = images.contiguous().to(storage)
        self.labels = torch.as_tensor(np.asarray(labels), dtype=torch.int64).to(storage)
        if len(self.images) != len(self.labels):
            raise ValueError(f"{len(self.images)} images but {len(self.labels)} labels")
        self.batch_size = batch_size
        self.mean, self.std = mean, std
        self.train, self.augment = train, augment
        self.padding, self.flip = padding, flip
        if flip_mode not in ("random", "alternating"):
            raise ValueError(f"flip_mode must be 'random' or 'alternating', got {flip_mode!r}")
        self.flip_mode, self.pad_mode = flip_mode, pad_mode
        self.seed = seed
        # The alternating flip's per-image starting state: drawn once, from the seed alone.
        self.first_mirror = torch.rand(len(self.labels), generator=epoch_generator(seed, -1)).lt(0.5)
        self.channels_last = channels_last
        self.rank, self.world_size = rank, world_size
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose order and augmentation the next iteration uses."""
        self.epoch = epoch

    def _order(self, generator: torch.Generator) -> torch.Tensor:
        n = len(self.labels)
        if not self.train:
            return torch.arange(n)
        perm = torch.randperm(n, generator=generator)
        if self.world_size > 1:  # equal-length, disjoint shards of the same permutation
            perm = perm[: n - n % self.world_size][self.rank :: self.world_size]
        return perm

    def __len__(self) -> int:
        n = len(self.labels)
        if self.train and self.world_size > 1:
            n = n // self.world_size
        return math.ceil(n / self.batch_size)

    def mirror_of(self, batch_idx: torch.Tensor) -> torch.Tensor | None:
        """The alternating flip's mirror mask for a batch; ``None`` lets the crop draw it at random."""
        if not self.flip or self.flip_mode == "random":
            return None
        return self.first_mirror[batch_idx] ^ bool(self.epoch % 2)

    def __iter__(self):
        generator = epoch_generator(self.seed, self.epoch)
        order = self._order(generator)
        for start in range(0, len(order), self.batch_size):
            batch_idx = order[start : start + self.batch_size]
            idx = batch_idx.to(self.images.device)
            x = self.images[idx].to(self.device, non_blocking=True)
            y = self.labels[idx].to(self.device, non_blocking=True)
            if self.train and self.augment:
                x = random_crop_flip(x, self.padding, self.flip, generator=generator,
                                     mirror=self.mirror_of(batch_idx), pad_mode=self.pad_mode)
            x = normalize(x, self.mean, self.std)
            if self.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            yield x, y


def normalized_batches(dataset: Dataset, batch_size: int, count: int = 1, seed: int = 0, split_seed: int = 42):
    """``count`` random batches of the 40k training split, normalized, without augmentation.

    Normalization uses the training split's own channel statistics, as every run does. The
    images are drawn without replacement by a generator seeded with ``seed``. Returns
    ``(batches, (mean, std))`` with ``batches`` a list of ``(x, y)``: float32
    ``(batch_size, 3, 32, 32)`` and int64 ``(batch_size,)``, on the CPU.
    """
    train_idx, _ = split_train_val(len(dataset.y_train), 10_000, seed=split_seed)
    mean, std = channel_stats(dataset.x_train[train_idx])
    order = torch.randperm(len(train_idx), generator=torch.Generator().manual_seed(seed)).numpy()
    picked = train_idx[order[: batch_size * count]]
    x = normalize(torch.from_numpy(dataset.x_train[picked]).permute(0, 3, 1, 2).contiguous(), mean, std)
    y = torch.from_numpy(dataset.y_train[picked])
    return list(zip(x.split(batch_size), y.split(batch_size))), (mean, std)
