"""Batched augmentation and the in-memory batch iterator, on real CIFAR-10 images."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from course_utils.augment import normalize, random_crop_flip, torchvision_eval_transform
from course_utils.loader import BatchIterator

MEAN, STD = (0.49, 0.48, 0.45), (0.25, 0.24, 0.26)


def _identify_windows(original: torch.Tensor, augmented: torch.Tensor, padding: int = 4):
    """For every augmented image, the (dy, dx, flipped) windows of the padded original it equals."""
    padded = F.pad(original, (padding,) * 4)
    matches = torch.zeros(len(original), 2 * padding + 1, 2 * padding + 1, 2, dtype=torch.bool)
    for dy in range(2 * padding + 1):
        for dx in range(2 * padding + 1):
            window = padded[:, :, dy:dy + 32, dx:dx + 32]
            matches[:, dy, dx, 0] = (window == augmented).flatten(1).all(1)
            matches[:, dy, dx, 1] = (window.flip(3) == augmented).flatten(1).all(1)
    return matches


def test_every_augmented_image_is_a_window_of_the_padded_original(cifar10):
    original = torch.from_numpy(cifar10.x_train[:4000]).permute(0, 3, 1, 2).contiguous()
    augmented = random_crop_flip(original, padding=4, generator=torch.Generator().manual_seed(0))
    matches = _identify_windows(original, augmented)
    explained = matches.flatten(1).any(1)
    assert explained.all(), f"{(~explained).sum()} augmented images are no window of their original"
    # Count each image once, by its first matching window: all 81 offsets and both flips occur
    # (4000 draws over 162 outcomes: each expected ~25 times; the seed is fixed anyway).
    first = matches.flatten(1).float().argmax(1)
    seen = torch.zeros(81 * 2, dtype=torch.bool)
    seen[first] = True
    assert seen.all(), f"{(~seen).sum()} of the 162 (offset, flip) outcomes never occurred"


def test_augmentation_is_seeded():
    images = torch.arange(8 * 3 * 32 * 32, dtype=torch.int64).reshape(8, 3, 32, 32) % 251
    a = random_crop_flip(images, generator=torch.Generator().manual_seed(5))
    b = random_crop_flip(images, generator=torch.Generator().manual_seed(5))
    c = random_crop_flip(images, generator=torch.Generator().manual_seed(6))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_evaluation_batches_are_untouched_and_in_order(cifar10):
    images, labels = cifar10.x_test[:300], cifar10.y_test[:300]
    loader = BatchIterator(images, labels, 128, MEAN, STD, train=False, seed=3)
    xs, ys = zip(*loader)
    assert [len(y) for y in ys] == [128, 128, 44]
    expected = normalize(torch.from_numpy(images).permute(0, 3, 1, 2), MEAN, STD)
    assert torch.equal(torch.cat(xs), expected), "evaluation batches were augmented or reordered"
    assert torch.equal(torch.cat(ys), torch.from_numpy(labels))


def test_normalization_matches_torchvision_totensor_normalize(cifar10):
    ours = normalize(torch.from_numpy(cifar10.x_test[:4]).permute(0, 3, 1, 2), MEAN, STD)
    transform = torchvision_eval_transform(MEAN, STD)
    theirs = torch.stack([transform(Image.fromarray(img)) for img in cifar10.x_test[:4]])
    torch.testing.assert_close(ours, theirs, atol=1e-6, rtol=0)


def test_training_epoch_visits_every_image_once_in_a_seeded_order():
    n = 1000
    images = np.zeros((n, 32, 32, 3), np.uint8)
    loader = BatchIterator(images, np.arange(n), 128, MEAN, STD, train=True, seed=7)
    order0 = torch.cat([y for _, y in loader])
    assert sorted(order0.tolist()) == list(range(n)) and len(loader) == 8
    assert torch.equal(order0, torch.cat([y for _, y in loader])), "same epoch, different order"
    loader.set_epoch(1)
    assert not torch.equal(order0, torch.cat([y for _, y in loader])), "epochs share an order"


def test_data_parallel_shards_are_disjoint_and_equal():
    n = 1001
    images = np.zeros((n, 32, 32, 3), np.uint8)
    shards = []
    for rank in range(2):
        loader = BatchIterator(images, np.arange(n), 100, MEAN, STD, train=True, seed=1,
                               rank=rank, world_size=2)
        shards.append(torch.cat([y for _, y in loader]))
        assert len(loader) == 5
    assert len(shards[0]) == len(shards[1]) == 500
    assert not set(shards[0].tolist()) & set(shards[1].tolist()), "ranks share images"


def test_channels_last_batches(cifar10):
    loader = BatchIterator(cifar10.x_test[:64], cifar10.y_test[:64], 32, MEAN, STD, train=True,
                           channels_last=True)
    x, _ = next(iter(loader))
    assert x.is_contiguous(memory_format=torch.channels_last) and x.dtype == torch.float32


def _batches_drawn_one_by_one(images, labels, batch_size, seed, epoch, padding, pad_mode, flip_mode):
    """The training batches as ``random_crop_flip`` gives them batch by batch from the epoch's
    generator: the definition that ``BatchIterator``'s per-epoch draws must reproduce exactly."""
    from course_utils.loader import epoch_generator

    images = torch.as_tensor(images).permute(0, 3, 1, 2).contiguous()
    labels = torch.as_tensor(labels)
    first_mirror = torch.rand(len(labels), generator=epoch_generator(seed, -1)).lt(0.5)
    generator = epoch_generator(seed, epoch)
    order = torch.randperm(len(labels), generator=generator)
    for idx in order.split(batch_size):
        mirror = first_mirror[idx] ^ bool(epoch % 2) if flip_mode == "alternating" else None
        x = random_crop_flip(images[idx], padding, generator=generator, mirror=mirror, pad_mode=pad_mode)
        yield normalize(x, MEAN, STD), labels[idx]


@pytest.mark.parametrize("padding, pad_mode, flip_mode", [(4, "zeros", "random"), (2, "reflect", "alternating")])
def test_an_epochs_draws_made_ahead_give_the_batches_of_random_crop_flip(cifar10, padding, pad_mode, flip_mode):
    images, labels = cifar10.x_train[:700], cifar10.y_train[:700]
    loader = BatchIterator(images, labels, 128, MEAN, STD, train=True, padding=padding, pad_mode=pad_mode,
                           flip_mode=flip_mode, seed=4)
    for epoch in (0, 1):
        loader.set_epoch(epoch)
        ours = list(loader)
        expected = list(_batches_drawn_one_by_one(images, labels, 128, 4, epoch, padding, pad_mode, flip_mode))
        assert [len(y) for _, y in ours] == [128] * 5 + [60]
        for i, ((x, y), (x_ref, y_ref)) in enumerate(zip(ours, expected)):
            assert torch.equal(y, y_ref) and torch.equal(x, x_ref), f"epoch {epoch}, batch {i} differs"


def test_drop_last_serves_only_full_batches_and_leaves_them_unchanged(cifar10):
    images, labels = cifar10.x_train[:700], cifar10.y_train[:700]
    kwargs = dict(batch_size=128, mean=MEAN, std=STD, train=True, seed=2)
    full = BatchIterator(images, labels, drop_last=True, **kwargs)
    every = BatchIterator(images, labels, **kwargs)
    assert (len(full), len(every)) == (5, 6)
    for epoch in (0, 1):
        full.set_epoch(epoch), every.set_epoch(epoch)
        kept, all_batches = list(full), list(every)
        assert [len(y) for _, y in kept] == [128] * len(full)
        for (x, y), (x_all, y_all) in zip(kept, all_batches):
            assert torch.equal(x, x_all) and torch.equal(y, y_all)
    evaluation = BatchIterator(images, labels, 128, MEAN, STD, train=False, drop_last=True)
    assert sum(len(y) for _, y in evaluation) == 700, "evaluation never drops images"
