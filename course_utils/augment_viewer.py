"""Looking at augmentation: several random draws of the same images, as a grid or an ipywidgets viewer.
"""

from __future__ import annotations

import numpy as np
import torch

from course_utils.augment import random_crop_flip
from course_utils.images import to_chw, to_hwc
from course_utils.plots import show_image_grid


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
