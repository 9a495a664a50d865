"""Looking inside the CIFAR ResNet: a basic block's diagram and per-stage activation maps.

The block's code itself is written on the page of lesson 03 and checked there against ``models.BasicBlock``.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import torch
from torch import nn

from course_utils.models import BasicBlock


def _box(ax, x, y, text, color, width=1.7, height=0.42):
    ax.add_patch(plt.Rectangle((x - width / 2, y - height / 2), width, height, facecolor=color,
                               edgecolor="0.3", linewidth=1))
    ax.text(x, y, text, ha="center", va="center", fontsize=8)


def _arrow(ax, start, end):
    ax.annotate("", xy=end, xytext=start, arrowprops=dict(arrowstyle="->", color="0.25", lw=1.1))


def draw_basic_block(block: BasicBlock, ax=None, title: str | None = None):
    """A diagram of ``block`` read from its modules: the residual branch and the shortcut.

    ``block``: a ``models.BasicBlock``, or any module with the same ``conv1``, ``norm1``, ``conv2``
    and ``shortcut`` attributes (such as the block lesson 03 writes on its page).

    The labels (channels, kernel sizes, strides, norm type) come from the block itself, so
    the figure cannot drift from the code. Returns the Axes.
    """
    if ax is None:
        _, ax = plt.subplots(figsize=(4, 5.2))
    c1, c2 = block.conv1, block.conv2
    norm = type(block.norm1).__name__
    branch = [
        (f"conv {c1.kernel_size[0]}x{c1.kernel_size[1]}, {c1.in_channels}->{c1.out_channels}, stride {c1.stride[0]}",
         "#cfe2f3"),
        (norm, "#fce5cd"), ("ReLU", "#d9ead3"),
        (f"conv {c2.kernel_size[0]}x{c2.kernel_size[1]}, {c2.in_channels}->{c2.out_channels}", "#cfe2f3"),
        (norm, "#fce5cd"),
    ]
    top, step, x_branch, x_skip = 6.4, 0.9, 0.0, 2.65
    ax.text(x_branch, top + 0.55, f"x  ({c1.in_channels} channels)", ha="center", fontsize=9)
    ys = [top - i * step for i in range(len(branch))]
    for (text, color), y in zip(branch, ys):
        _box(ax, x_branch, y, text, color, width=2.3)
    for y0, y1 in zip(ys, ys[1:]):
        _arrow(ax, (x_branch, y0 - 0.21), (x_branch, y1 + 0.21))
    _arrow(ax, (x_branch, top + 0.45), (x_branch, top + 0.21))
    y_add = ys[-1] - step
    ax.add_patch(plt.Circle((x_branch, y_add), 0.2, facecolor="white", edgecolor="0.3"))
    ax.text(x_branch, y_add, "+", ha="center", va="center", fontsize=12)
    _arrow(ax, (x_branch, ys[-1] - 0.21), (x_branch, y_add + 0.2))
    # The shortcut: from x, down the right side, into the sum.
    ax.plot([x_branch + 0.1, x_skip], [top + 0.42, top + 0.42], color="0.25", lw=1.1)
    projection = not isinstance(block.shortcut, nn.Identity)
    if projection:
        conv = block.shortcut[0]
        y_proj = (top + y_add) / 2
        ax.plot([x_skip, x_skip], [top + 0.42, y_proj + 0.45], color="0.25", lw=1.1)
        _box(ax, x_skip, y_proj + 0.2, f"conv {conv.kernel_size[0]}x{conv.kernel_size[1]}, "
             f"{conv.in_channels}->{conv.out_channels}, stride {conv.stride[0]}", "#cfe2f3", width=2.3)
        _box(ax, x_skip, y_proj - 0.35, type(block.shortcut[1]).__name__, "#fce5cd", width=2.3)
        ax.plot([x_skip, x_skip], [y_proj - 0.56, y_add], color="0.25", lw=1.1)
        ax.text(x_skip + 1.25, y_proj - 0.05, "projection", rotation=90, va="center", fontsize=8, color="0.3")
    else:
        ax.plot([x_skip, x_skip], [top + 0.42, y_add], color="0.25", lw=1.1)
        ax.text(x_skip + 0.15, (top + y_add) / 2, "identity", rotation=90, va="center", fontsize=8, color="0.3")
    _arrow(ax, (x_skip, y_add), (x_branch + 0.2, y_add))
    _box(ax, x_branch, y_add - step * 0.8, "ReLU", "#d9ead3")
    _arrow(ax, (x_branch, y_add - 0.2), (x_branch, y_add - step * 0.8 + 0.21))
    ax.text(x_branch, y_add - step * 0.8 - 0.55, f"out  ({c2.out_channels} channels)", ha="center", fontsize=9)
    ax.set_xlim(-1.4, 4.1)
    ax.set_ylim(y_add - step * 0.8 - 0.8, top + 0.8)
    ax.set_aspect("equal")
    ax.axis("off")
    if title:
        ax.set_title(title, fontsize=10)
    return ax


@torch.no_grad()
def stage_activation_maps(model: nn.Module, image: torch.Tensor) -> list[tuple[str, np.ndarray]]:
    """For one normalized image ``(3, H, W)``: each spatial stage's output, averaged over channels.

    Runs the ResNet's ``stem`` and ``layer1..layer4`` in eval mode and returns
    ``[(name, map)]`` with ``map`` a float ``(h, w)`` array: what resolution each stage works at.
    """
    was_training = model.training
    model.eval()
    try:
        x = image.unsqueeze(0)
        maps = []
        for name in ("stem", "layer1", "layer2", "layer3", "layer4"):
            x = getattr(model, name)(x)
            maps.append((name, x[0].mean(0).cpu().numpy()))
    finally:
        model.train(was_training)
    return maps


def plot_stage_maps(rows: dict, image_uint8: np.ndarray, annotate_up_to: int = 4):
    """One row per model (``{label: stage_activation_maps(...)}``), the input image first. Returns the Figure.

    Each stage (column) has one colour scale, shared by the rows and shown by a colorbar under the column,
    so the same stage can be compared across models and a 1x1 map shows its value, not a blank square.
    Maps of at most ``annotate_up_to`` positions also print their values.
    """
    ncols = 1 + max(len(maps) for maps in rows.values())
    fig, axes = plt.subplots(len(rows), ncols, figsize=(1.9 * ncols, 2.0 * len(rows) + 0.9), squeeze=False,
                             layout="constrained")
    columns: dict[int, list] = {}
    for r, maps in enumerate(rows.values()):
        for c, (_, amap) in enumerate(maps, start=1):
            columns.setdefault(c, []).append(amap)
    limits = {c: (min(float(m.min()) for m in ms), max(float(m.max()) for m in ms)) for c, ms in columns.items()}
    for r, (label, maps) in enumerate(rows.items()):
        axes[r, 0].imshow(image_uint8, interpolation="nearest")
        axes[r, 0].set_title("input 32x32", fontsize=8)
        axes[r, 0].set_ylabel(label, fontsize=9)
        for c, (name, amap) in enumerate(maps, start=1):
            vmin, vmax = limits[c]
            axes[r, c].imshow(amap, cmap="magma", interpolation="nearest", vmin=vmin, vmax=vmax)
            axes[r, c].set_title(f"{name} {amap.shape[0]}x{amap.shape[1]}", fontsize=8)
            if amap.size <= annotate_up_to:
                middle = (vmin + vmax) / 2
                for (i, j), value in np.ndenumerate(amap):
                    axes[r, c].text(j, i, f"{value:.2f}", ha="center", va="center", fontsize=8,
                                    color="black" if value > middle else "white")
        for ax in axes[r]:
            ax.set_xticks([])
            ax.set_yticks([])
    for c in columns:
        bar = fig.colorbar(axes[0, c].images[0], ax=axes[:, c], orientation="horizontal", shrink=0.9, aspect=12)
        bar.ax.tick_params(labelsize=7)
    fig.suptitle("mean activation over channels after each stage (untrained network, one image);"
                 " one colour scale per stage", fontsize=9)
    return fig
