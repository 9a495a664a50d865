"""Helpers for lessons 03 (the ResNet), 04 (initialization) and 05 (training).

Small pieces the notebooks show but should not reimplement: real normalized batches, the
BasicBlock walkthrough and its diagram, per-stage activation maps, the batch-dependence of
BatchNorm, training throughput per width, the depth profiles and first SGD steps of the
initialization lesson, and the resume check and result table of the training lesson.
"""

from __future__ import annotations

import copy
import json
import math
import time
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import torch
import torch.nn.functional as F
from matplotlib.ticker import MaxNLocator
from torch import nn

from course_utils.augment import normalize
from course_utils.data import Dataset, channel_stats, split_train_val
from course_utils.engine import load_run, load_weights, weights_digest
from course_utils.init import LARGE_STD, SMALL_STD, WEIGHTED_LAYERS, init_weights, layer_statistics, plain_net
from course_utils.lesson_data import text_table
from course_utils.models import BasicBlock

# One colour per initialization scheme, the same in every figure of lesson 04.
SCHEME_COLORS = {"kaiming": "C0", "xavier": "C1", "default": "C2", "small": "C3", "large": "C4", "trunc_normal": "C5"}

# --------------------------------------------------------------------------- real batches


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


# --------------------------------------------------------------------------- lesson 03: the ResNet


def residual_branch(block: BasicBlock, x: torch.Tensor) -> torch.Tensor:
    """F(x) of a ``BasicBlock``: conv1, norm1, ReLU, conv2, norm2 (the block's output is ReLU(F(x) + shortcut(x)))."""
    return block.norm2(block.conv2(F.relu(block.norm1(block.conv1(x)))))


@torch.no_grad()
def block_walkthrough(block: BasicBlock, x: torch.Tensor) -> list[tuple[str, tuple[int, ...]]]:
    """The shape after every step of ``BasicBlock.forward`` on ``x``, in order.

    Steps: input, conv1, norm1 + ReLU, conv2, norm2 (the residual branch F(x)), shortcut(x),
    F(x) + shortcut(x), and the final ReLU. Runs in eval mode, then restores the mode.
    """
    was_training = block.training
    block.eval()
    try:
        steps = [("input x", x)]
        out = block.conv1(x)
        steps.append(("conv1 (3x3)", out))
        out = F.relu(block.norm1(out))
        steps.append(("norm1 + ReLU", out))
        out = block.conv2(out)
        steps.append(("conv2 (3x3)", out))
        residual = block.norm2(out)
        steps.append(("norm2 = F(x)", residual))
        skip = block.shortcut(x)
        steps.append(("shortcut(x)", skip))
        steps.append(("F(x) + shortcut(x)", residual + skip))
        steps.append(("ReLU = output", F.relu(residual + skip)))
    finally:
        block.train(was_training)
    return [(name, tuple(t.shape)) for name, t in steps]


def _box(ax, x, y, text, color, width=1.7, height=0.42):
    ax.add_patch(plt.Rectangle((x - width / 2, y - height / 2), width, height, facecolor=color,
                               edgecolor="0.3", linewidth=1))
    ax.text(x, y, text, ha="center", va="center", fontsize=8)


def _arrow(ax, start, end):
    ax.annotate("", xy=end, xytext=start, arrowprops=dict(arrowstyle="->", color="0.25", lw=1.1))


def draw_basic_block(block: BasicBlock, ax=None, title: str | None = None):
    """A diagram of ``block`` read from its modules: the residual branch and the shortcut.

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


def plot_stage_maps(rows: dict, image_uint8: np.ndarray):
    """One row per model (``{label: stage_activation_maps(...)}``), the input image first. Returns the Figure."""
    ncols = 1 + max(len(maps) for maps in rows.values())
    fig, axes = plt.subplots(len(rows), ncols, figsize=(1.75 * ncols, 2.0 * len(rows)), squeeze=False)
    for r, (label, maps) in enumerate(rows.items()):
        axes[r, 0].imshow(image_uint8, interpolation="nearest")
        axes[r, 0].set_title("input 32x32", fontsize=8)
        axes[r, 0].set_ylabel(label, fontsize=9)
        for c, (name, amap) in enumerate(maps, start=1):
            axes[r, c].imshow(amap, cmap="magma", interpolation="nearest")
            axes[r, c].set_title(f"{name} {amap.shape[0]}x{amap.shape[1]}", fontsize=8)
        for ax in axes[r]:
            ax.set_xticks([])
            ax.set_yticks([])
    fig.suptitle("mean activation over channels after each stage (untrained network, one image)", fontsize=9)
    fig.tight_layout()
    return fig


def normalized_moments(x: torch.Tensor, over: str, groups: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and std of ``x`` ``(N, C, H, W)`` per normalization unit.

    ``over="channel"``: one unit per channel, over ``(N, H, W)`` (what BatchNorm normalizes).
    ``over="sample_group"``: one unit per sample and group of ``C / groups`` channels, over
    ``(C / groups, H, W)`` (what GroupNorm normalizes). Returns two 1-D tensors.
    """
    if over == "channel":
        flat = x.transpose(0, 1).flatten(1)  # (C, N*H*W)
    elif over == "sample_group":
        flat = x.reshape(x.shape[0] * groups, -1)  # (N*G, C/G*H*W)
    else:
        raise ValueError(f"over must be 'channel' or 'sample_group', got {over!r}")
    return flat.mean(1), flat.std(1, unbiased=False)


def batch_dependence(model: nn.Module, images: torch.Tensor, index: int = 0) -> float:
    """Max |difference| of image ``index``'s logits: alone (batch of 1) vs. inside ``images``, train mode.

    BatchNorm in train mode normalizes with the batch's statistics, so an image's output depends
    on the other images of its batch; GroupNorm's does not. Works on a copy: ``model`` is untouched.
    """
    probe = copy.deepcopy(model).train()
    with torch.no_grad():
        in_batch = probe(images)[index]
        alone = probe(images[index : index + 1])[0]
    return float((in_batch - alone).abs().max())


def training_images_per_second(model: nn.Module, batch_size: int = 32, steps: int = 2, device="cpu",
                               lr: float = 0.1) -> float:
    """Images per second of SGD training steps (forward, backward, update) on random data, fp32.

    One warm-up step is not timed. Works on a copy of ``model`` moved to ``device``.
    """
    device = torch.device(device)
    probe = copy.deepcopy(model).to(device).train()
    optimizer = torch.optim.SGD(probe.parameters(), lr=lr, momentum=0.9)
    x = torch.randn(batch_size, 3, 32, 32, device=device)
    y = torch.randint(0, 10, (batch_size,), device=device)

    def step():
        optimizer.zero_grad(set_to_none=True)
        F.cross_entropy(probe(x), y).backward()
        optimizer.step()

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    step()
    sync()
    started = time.perf_counter()
    for _ in range(steps):
        step()
    sync()
    return batch_size * steps / (time.perf_counter() - started)


# --------------------------------------------------------------------------- lesson 04: initialization


def fan_table(model: nn.Module) -> list[dict]:
    """One row per distinct Conv2d/Linear weight shape of ``model``, in first-use order.

    Keys: ``layer`` (first module with that shape), ``count`` (modules sharing it), ``shape``,
    ``fan_in`` (inputs feeding one output: in_channels/groups x kernel area), ``fan_out``
    (outputs fed by one input: out_channels/groups x kernel area), and the Kaiming stds
    ``sqrt(2 / fan_in)`` and ``sqrt(2 / fan_out)``.
    """
    rows: dict[tuple, dict] = {}
    for name, module in model.named_modules():
        if not isinstance(module, WEIGHTED_LAYERS):
            continue
        shape = tuple(module.weight.shape)
        if shape in rows:
            rows[shape]["count"] += 1
            continue
        receptive = module.weight[0][0].numel()  # kernel area (1 for a Linear)
        groups = getattr(module, "groups", 1)
        fan_in = shape[1] * receptive
        fan_out = shape[0] // groups * receptive
        rows[shape] = {"layer": name, "count": 1, "shape": shape, "fan_in": fan_in, "fan_out": fan_out,
                       "std_fan_in": math.sqrt(2 / fan_in), "std_fan_out": math.sqrt(2 / fan_out)}
    return list(rows.values())


def scheme_weight_std(scheme: str, fan_in: int, fan_out: int) -> float:
    """The std of a conv/linear weight under ``scheme`` (see ``init.init_weights``)."""
    stds = {
        "kaiming": math.sqrt(2 / fan_in),
        "xavier": math.sqrt(2 / (fan_in + fan_out)),
        "default": 1 / math.sqrt(3 * fan_in),  # kaiming_uniform_(a=sqrt(5)): U(-1/sqrt(fan_in), 1/sqrt(fan_in))
        "small": SMALL_STD,
        "large": LARGE_STD,
    }
    if scheme not in stds:
        raise ValueError(f"no closed-form std for scheme {scheme!r}; choose one of {', '.join(stds)}")
    return stds[scheme]


def predicted_gain(scheme: str, fan_in: int, fan_out: int) -> float:
    """Per-layer factor on the activation std of a ReLU network: ``sqrt(fan_in * Var(w) / 2)``.

    From ``Var(y) = fan_in * Var(w) * E[x^2]`` and ``E[x^2] = Var(y_prev) / 2`` after a ReLU;
    Kaiming's fan_in std makes it exactly 1. Biases are ignored (``"default"`` has nonzero ones).
    """
    return scheme_weight_std(scheme, fan_in, fan_out) * math.sqrt(fan_in / 2)


def weight_norms(model: nn.Module) -> dict[str, float]:
    """L2 norm of every Conv2d/Linear weight, by module name."""
    return {name: float(m.weight.detach().norm()) for name, m in model.named_modules() if isinstance(m, WEIGHTED_LAYERS)}


def depth_profiles(schemes, images: torch.Tensor, labels: torch.Tensor, depth: int = 20, width: int = 32,
                   norm: str | None = None, seed: int = 0, device="cpu") -> dict[str, dict[str, list]]:
    """``layer_statistics`` of a freshly initialized ``plain_net`` for each scheme, as columns.

    Every net is built from the same seed. Besides ``layer_statistics``' columns (``act_std``,
    ``grad_norm``, ...) each profile has ``weight_norm`` and ``relative_grad`` =
    ``grad_norm / weight_norm``: the size of an SGD step relative to the weight, per unit of
    learning rate (the "effective learning rate" that BatchNorm makes depend on the weight scale).
    The nets are built on the CPU (same draws everywhere) and run on ``device``.
    """
    profiles = {}
    images, labels = images.to(device), labels.to(device)
    for scheme in schemes:
        torch.manual_seed(seed)
        net = init_weights(plain_net(depth, width, norm), scheme).to(device)
        rows = layer_statistics(net, images, labels)
        norms = weight_norms(net)
        columns = {key: [row[key] for row in rows] for key in rows[0]}
        columns["weight_norm"] = [norms[name] for name in columns["layer"]]
        columns["relative_grad"] = [g / w if w > 0 else float("nan")
                                    for g, w in zip(columns["grad_norm"], columns["weight_norm"])]
        profiles[scheme] = columns
    return profiles


def conv_scale_probe(images: torch.Tensor, labels: torch.Tensor, scales=(0.1, 1.0, 10.0), depth: int = 20,
                     width: int = 32, seed: int = 0, device="cpu") -> list[dict]:
    """BatchNorm's scale invariance, measured: one Kaiming plain net with BatchNorm, conv weights times ``c``.

    For each ``c`` in ``scales`` the same seeded ``plain_net(depth, width, "batch")`` is built,
    every Conv2d weight is multiplied by ``c`` (the classifier, which no BatchNorm follows, is
    left alone), and one forward/backward pass in train mode gives the loss and, over the
    convolutions, the median gradient norm and median ``||grad|| / ||w||``. Returns one dict per
    scale with keys ``scale``, ``loss``, ``grad_norm``, ``relative_grad``.
    """
    images, labels = images.to(device), labels.to(device)
    rows = []
    for c in scales:
        torch.manual_seed(seed)
        net = init_weights(plain_net(depth, width, "batch"), "kaiming").to(device).train()
        convs = [m for m in net.modules() if isinstance(m, nn.Conv2d)]
        with torch.no_grad():
            for conv in convs:
                conv.weight.mul_(c)
        loss = F.cross_entropy(net(images), labels)
        grads = torch.autograd.grad(loss, [conv.weight for conv in convs])
        grad_norms = torch.stack([g.norm() for g in grads])
        weight_norms_ = torch.stack([conv.weight.detach().norm() for conv in convs])
        rows.append({"scale": c, "loss": loss.item(), "grad_norm": float(grad_norms.median()),
                     "relative_grad": float((grad_norms / weight_norms_).median())})
    return rows


def plot_depth_profiles(profiles: dict, key: str, ax=None, title: str | None = None, ylabel: str | None = None):
    """One line per scheme: ``key`` against layer number, log scale.

    Zeros (underflow), infinities and NaNs cannot sit on a log axis: the legend says how
    many layers of a scheme were left out, rather than hiding them silently.
    """
    if ax is None:
        _, ax = plt.subplots(figsize=(5, 3.5))
    for i, (scheme, columns) in enumerate(profiles.items()):
        values = np.asarray(columns[key], dtype=float)
        layers = np.arange(1, len(values) + 1)
        drawable = np.isfinite(values) & (values > 0)
        label = scheme
        if not drawable.all():
            label += f" ({(~drawable).sum()} layers 0/inf/nan, not drawn)"
        ax.plot(layers[drawable], values[drawable], "o-", ms=3, color=SCHEME_COLORS.get(scheme, f"C{i}"), label=label)
    ax.set_yscale("log")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("layer (conv 1..depth, then the linear classifier)")
    ax.set_ylabel(ylabel or key)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7)
    if title:
        ax.set_title(title, fontsize=10)
    return ax


def sgd_losses(model: nn.Module, batches, lr: float = 0.01, momentum: float = 0.9) -> list[float]:
    """The training loss of each SGD step over ``batches`` (one step per batch).

    Once the loss is inf or NaN the remaining steps are reported as NaN without computing
    them (nothing can be learned from there).
    """
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum)
    model.train()
    losses = []
    for x, y in batches:
        if losses and not math.isfinite(losses[-1]):
            losses.append(float("nan"))
            continue
        loss = F.cross_entropy(model(x), y)
        losses.append(loss.item())
        if not math.isfinite(losses[-1]):
            continue
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return losses


def first_steps(schemes, batches, depth: int = 20, width: int = 32, norm: str | None = None, lr: float = 0.01,
                seed: int = 0, device="cpu") -> dict[str, list[float]]:
    """``sgd_losses`` of a freshly initialized ``plain_net`` per scheme, all built from the same seed."""
    batches = [(x.to(device), y.to(device)) for x, y in batches]
    curves = {}
    for scheme in schemes:
        torch.manual_seed(seed)
        net = init_weights(plain_net(depth, width, norm), scheme).to(device)
        curves[scheme] = sgd_losses(net, batches, lr)
    return curves


def plot_first_steps(curves: dict, ax=None, title: str | None = None, log: bool = True,
                     chance: float | None = math.log(10)):
    """Training loss per SGD step, one line per scheme; the step where a loss went inf/NaN is named.

    ``log=False`` gives a linear axis, for a close look at the schemes that did not blow up.
    """
    if ax is None:
        _, ax = plt.subplots(figsize=(5, 3.5))
    for i, (scheme, losses) in enumerate(curves.items()):
        values = np.asarray(losses, dtype=float)
        steps = np.arange(1, len(values) + 1)
        finite = np.isfinite(values)
        label = scheme
        if not finite.all():
            label += f" (inf/nan from step {int(np.flatnonzero(~finite)[0]) + 1})"
        ax.plot(steps[finite], values[finite], "o-", ms=3, color=SCHEME_COLORS.get(scheme, f"C{i}"), label=label)
    if chance is not None:
        ax.axhline(chance, color="0.5", ls=":", lw=1, label="ln(10): uniform guess")
    if log:
        ax.set_yscale("log")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("SGD step")
    ax.set_ylabel("training loss" + (" (log scale)" if log else ""))
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7)
    if title:
        ax.set_title(title, fontsize=10)
    return ax


# --------------------------------------------------------------------------- lesson 05: training


def run_dataset(config) -> Dataset:
    """The dataset a run of ``config`` trains on, from the engine's in-process cache.

    Loading it through that cache means the lesson and the ``engine.train`` call that follows
    decompress the file once, not twice.
    """
    from course_utils import engine

    return engine.load_dataset_cached(config.dataset, config.data_dir)


def run_state(run_dir) -> str:
    """What ``engine.train`` will do with ``run_dir``: ``"finished"``, ``"diverged"``, ``"resumable"`` or ``"new"``."""
    run_dir = Path(run_dir)
    if (run_dir / "final.json").exists():
        return json.loads((run_dir / "final.json").read_text()).get("status", "finished")
    if (run_dir / "last.pt").exists():
        return "resumable"
    return "new"


def compare_runs(run_a, run_b) -> dict:
    """Are two finished runs the same? Weights (sha256 of every tensor), metrics, final table.

    Metrics are compared without the timing columns (``epoch_seconds``, ``images_per_s``);
    the final tables without ``rank_weight_digests`` (compared through the weights already)
    and ``final_evaluation_seconds`` (a timing).
    """
    def without_timings(rows):
        return [{k: v for k, v in row.items() if k not in ("epoch_seconds", "images_per_s")} for row in rows]

    def without_digests(final):
        skip = ("rank_weight_digests", "final_evaluation_seconds")
        return {k: v for k, v in (final or {}).items() if k not in skip}

    a, b = load_run(run_a), load_run(run_b)
    digests = [weights_digest(load_weights(d, "last")[0]) for d in (run_a, run_b)]
    return {
        "digest_a": digests[0], "digest_b": digests[1], "same_weights": digests[0] == digests[1],
        "same_metrics": without_timings(a.metrics) == without_timings(b.metrics),
        "same_final": without_digests(a.final) == without_digests(b.final),
    }


def result_table(run, reference: dict, label: str) -> str:
    """Our final accuracies (last epoch, best-by-validation) next to the reference, as text.

    ``reference``: ``{"train"|"val"|"test": accuracy in %}`` of the original study.
    ``label``: what produced ours (profile, hardware, data); printed above the table.
    """
    final = run.final
    columns = [("ours: last epoch", final["last"])]
    if "best" in final:
        columns.append((f"ours: best val (epoch {final['best']['epoch']})", final["best"]))
    header = ["split"] + [name for name, _ in columns] + ["reference (original study, not ours)"]
    rows = [[split] + [f"{100 * table[split]['accuracy']:.2f}%" for _, table in columns] + [f"~{reference[split]:.2f}%"]
            for split in ("train", "val", "test")]
    return f"ours: {label}\n" + text_table(header, rows)


def run_label(run) -> str:
    """Profile-independent facts of a run for labels: epochs, width, device, precision, data file."""
    env_path = Path(run.run_dir) / "environment.json"
    env = json.loads(env_path.read_text()) if env_path.exists() else {}
    data_source = (run.final or {}).get("data_source", env.get("data_source", "?"))
    return (f"{run.config.model} width {run.config.width}, {run.config.epochs} epochs, "
            f"{env.get('device_name', '?')} ({env.get('precision', '?')}), data {data_source}")
