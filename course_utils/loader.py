"""Batches from in-memory tensors: no worker processes, so it works in any notebook on any OS.

The whole split lives as one uint8 tensor (on the GPU if you like: CIFAR-10 is 150 MB);
each batch is gathered, augmented and normalized there with a few tensor ops. An epoch's
random draws (order, crop offsets, mirrors) are made on the CPU when the epoch starts and
copied to the device in one go; batches slice them there, so a batch costs no copy from the
host and the GPU never waits for the CPU to hand it indices.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from course_utils.augment import channel_tensors, crop_flip, draw_crop_flip, normalize
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
        batch_size: images per batch; the last batch may be smaller (as a DataLoader's), unless
            ``drop_last``.
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
        drop_last: with ``train``, only full batches: the ``N mod batch_size`` images at the end of
            each epoch's permutation (others every epoch) are left out. A compiled model then sees
            one batch shape and compiles once; the full batches are the same as without it.

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
        drop_last: bool = False,
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
        self.mean_std = channel_tensors(mean, std, self.device)  # made once, not per batch
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
        self.drop_last = drop_last and train
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
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def mirror_of(self, batch_idx: torch.Tensor) -> torch.Tensor | None:
        """The alternating flip's mirror mask for a batch; ``None`` lets the crop draw it at random."""
        if not self.flip or self.flip_mode == "random":
            return None
        return self.first_mirror[batch_idx] ^ bool(self.epoch % 2)

    def epoch_plan(self) -> torch.Tensor:
        """This epoch's draws as one int64 ``(4, n)`` tensor on the images' device: row 0 the order
        (indices into the split), rows 1-2 the crop offsets (top, left), row 3 the mirror flag of
        each position; ``n`` is the images this epoch serves (this rank's shard, without the tail
        that ``drop_last`` leaves out). Without augmentation rows 1-3 are zero.

        Every draw comes from the epoch's CPU generator in the order the batches use them (the
        permutation, then each batch's ``draw_crop_flip``), so a batch is the same on any device
        and the same as ``random_crop_flip`` on that batch with the generator at that point.
        """
        generator = epoch_generator(self.seed, self.epoch)
        order = self._order(generator)
        if self.drop_last:
            order = order[: len(order) - len(order) % self.batch_size]
        plan = torch.zeros(4, len(order), dtype=torch.int64)
        plan[0] = order
        if self.train and self.augment:
            for start in range(0, len(order), self.batch_size):
                batch_idx = order[start : start + self.batch_size]
                offsets, mirror = draw_crop_flip(len(batch_idx), self.padding, self.flip, generator,
                                                 mirror=self.mirror_of(batch_idx))
                plan[1:3, start : start + len(batch_idx)] = offsets
                plan[3, start : start + len(batch_idx)] = mirror
        return plan.to(self.images.device)  # the epoch's one copy to the device (none if stored on the CPU)

    def __iter__(self):
        if not self.train:  # the fixed order: slices, no index and nothing to copy
            for start in range(0, len(self.labels), self.batch_size):
                yield self._finish(self.images[start : start + self.batch_size],
                                   self.labels[start : start + self.batch_size])
            return
        plan = self.epoch_plan()  # on the storage device, like the images
        for start in range(0, plan.shape[1], self.batch_size):
            batch = plan[:, start : start + self.batch_size]
            x = self.images[batch[0]]
            if self.augment:
                x = crop_flip(x, batch[1:3], batch[3].bool(), self.padding, self.pad_mode)
            yield self._finish(x, self.labels[batch[0]])

    def _finish(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Onto the device (a copy only when the split is stored off it), normalized, in the batch layout."""
        x, y = x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)
        x = normalize(x, *self.mean_std)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return x, y


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
