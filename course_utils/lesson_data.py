"""Helpers for the first three lessons (00 setup, 01 data, 02 augmentation).

Small pieces the notebooks show but should not reimplement: a description of the data copy,
the seeded-gradient check of reproducibility, profile differences as a table, the
augmentation viewer, and the speed comparison of the batched and torchvision pipelines.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from course_utils.augment import PILImageDataset, random_crop_flip, torchvision_train_transform
from course_utils.data import Dataset
from course_utils.engine import shown_path  # noqa: F401 - the lessons import it from here too
from course_utils.loader import BatchIterator
from course_utils.models import create_model
from course_utils.plots import show_image_grid
from course_utils.repro import seed_everything

# --------------------------------------------------------------------------- the data copy


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


# --------------------------------------------------------------------------- reproducibility


def seeded_gradients(seed: int | None, device="cpu", width: int = 8, batch_size: int = 16) -> torch.Tensor:
    """All parameter gradients (flattened, on the CPU) of one training step from ``seed``.

    Seeds everything (``seed=None``: seeds nothing, the random streams go on where they
    are), builds a ResNet-18 of ``width``, draws a random batch from the same generator and
    back-propagates the cross-entropy. The same seed must give the same bits.
    """
    if seed is not None:
        seed_everything(seed)
    model = create_model("resnet18", width=width).to(device)
    images = torch.randn(batch_size, 3, 32, 32).to(device)
    labels = torch.randint(0, 10, (batch_size,)).to(device)
    F.cross_entropy(model(images), labels).backward()
    return torch.cat([p.grad.flatten() for p in model.parameters()]).cpu()


def config_differences(configs: dict) -> dict[str, dict[str, object]]:
    """The keys on which named ``TrainConfig``s disagree: ``{key: {name: value}}``, in field order."""
    rows = {}
    for field in dataclasses.fields(next(iter(configs.values()))):
        values = {name: getattr(config, field.name) for name, config in configs.items()}
        if len({repr(v) for v in values.values()}) > 1:
            rows[field.name] = values
    return rows


def text_table(header, rows) -> str:
    """Rows of values as aligned plain text (it reads the same in a terminal, papermill and GitHub)."""
    cells = [[str(v) for v in header]] + [[str(v) for v in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    lines = ["  ".join(v.ljust(w) for v, w in zip(row, widths)).rstrip() for row in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


# --------------------------------------------------------------------------- augmentation


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


def augmented_draws(images: np.ndarray, draws: int = 5, padding: int = 4, seed: int = 0) -> np.ndarray:
    """Each image followed by ``draws`` crop+flip versions of it: uint8 ``(N * (draws + 1), H, W, C)``."""
    x = to_chw(images)
    generator = torch.Generator().manual_seed(seed)
    versions = [x] + [random_crop_flip(x, padding=padding, generator=generator) for _ in range(draws)]
    return to_hwc(torch.stack(versions, dim=1).flatten(0, 1))


def show_augmented_draws(images: np.ndarray, draws: int = 5, padding: int = 4, seed: int = 0, scale: float = 1.1):
    """A grid: one row per image, the original then ``draws`` augmented versions. Returns the Figure."""
    titles = (["original"] + [f"draw {i + 1}" for i in range(draws)]) * len(images)
    return show_image_grid(
        augmented_draws(images, draws, padding, seed), titles, ncols=draws + 1, scale=scale,
        suptitle=f"random crop (padding {padding}) + horizontal flip, seed {seed}",
    )


def augmentation_viewer(images: np.ndarray, draws: int = 5, padding: int = 4, seed: int = 0):
    """An ipywidgets control (padding 0..8, seed) that redraws ``show_augmented_draws`` on release.

    It draws only when a slider moves, never while the cell executes: ``interact``'s initial
    draw into an Output widget can deadlock unattended execution (papermill, nbval; see
    jupyter/nbconvert#1921). The lessons draw one static figure beside it.
    Returns a ``VBox`` whose ``children`` are the two sliders and the output area.
    """
    import ipywidgets as widgets
    import matplotlib.pyplot as plt

    # continuous_update=False: redraw once on release, not once per pixel of a drag (36-image grids).
    padding_slider = widgets.IntSlider(value=padding, min=0, max=8, description="padding", continuous_update=False)
    seed_slider = widgets.IntSlider(value=seed, min=0, max=99, description="seed", continuous_update=False)
    out = widgets.Output()

    def redraw(_change=None):
        with out:
            out.clear_output(wait=True)
            show_augmented_draws(images, draws, padding_slider.value, seed_slider.value)
            plt.show()

    padding_slider.observe(redraw, names="value")
    seed_slider.observe(redraw, names="value")
    return widgets.VBox([padding_slider, seed_slider, out])


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


def _images_per_second(batches, device: torch.device) -> float:
    iterator = iter(batches)
    next(iterator)  # warm-up: first-call allocations and lazy imports are not throughput
    started = time.perf_counter()
    seen = 0
    for x, _ in iterator:
        seen += len(x)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return seen / (time.perf_counter() - started)


def augmentation_throughput(
    images: np.ndarray, labels: np.ndarray, mean, std, batch_size: int = 128, padding: int = 4,
    device="cpu", threads: int | None = 1,
) -> dict[str, float]:
    """Images per second of one epoch of augmented, normalized training batches, both ways.

    ``batched``: ``loader.BatchIterator`` (gather, crop+flip, normalize as tensor ops on
    ``device``). ``torchvision``: ``augment.torchvision_train_transform`` per PIL image through a
    ``DataLoader`` with ``num_workers=0`` (on the CPU, as tutorials do). Same images, same batch
    size; the first batch of each is a warm-up and not timed.

    ``threads``: torch intra-op threads for both (restored afterwards; None: leave as is). One
    by default: the per-image PIL pipeline uses one core anyway, and on a busy shared machine
    extra threads mostly wait for each other, which would time the machine, not the pipeline.
    """
    device = torch.device(device)
    previous_threads = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        batched = BatchIterator(images, labels, batch_size, mean, std, train=True, padding=padding, device=device)
        reference = torch.utils.data.DataLoader(
            PILImageDataset(images, labels, torchvision_train_transform(mean, std, padding)),
            batch_size=batch_size, shuffle=True, num_workers=0,
        )
        result = {
            "images": len(images),
            "threads": torch.get_num_threads(),
            "batched": _images_per_second(batched, device),
            "torchvision": _images_per_second(reference, torch.device("cpu")),
        }
    finally:
        torch.set_num_threads(previous_threads)
    result["speedup"] = result["batched"] / result["torchvision"]
    return result
