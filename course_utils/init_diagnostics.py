"""How an initialization behaves: fan-in/fan-out per layer, the predicted gain of a scheme,
activation and gradient scale through depth, and what each scheme does to training (several
seeds per scheme, so that a difference can be set against its noise).
"""

from __future__ import annotations

import math

import matplotlib.pyplot as plt
import numpy as np
import torch
import torch.nn.functional as F
from matplotlib.ticker import MaxNLocator
from torch import nn

from course_utils.evaluate import predict
from course_utils.init import (
    LARGE_STD,
    SMALL_STD,
    WEIGHTED_LAYERS,
    init_weights,
    layer_statistics,
    plain_net,
)

# One colour and line style per initialization scheme, the same in every figure of lesson 04. Schemes whose
# curves can coincide (default and small both sit at ln 10 without normalization) get dashes that interleave,
# so that neither hides the other.
SCHEME_COLORS = {"kaiming": "C0", "xavier": "C1", "default": "C2", "small": "C3", "large": "C4", "trunc_normal": "C5"}
SCHEME_LINESTYLES = {"kaiming": "-", "xavier": "-", "default": (0, (4, 4)), "small": (4, (4, 4)), "large": "-.",
                     "trunc_normal": ":"}


# plot_training_curves marks each scheme (by its place in the results) with its own symbol.
TRAINING_CURVE_MARKERS = ("o", "s", "^", "D", "v", "P")


def scheme_style(scheme: str, index: int = 0) -> dict:
    """Matplotlib ``color`` and ``linestyle`` of ``scheme`` (``C<index>``, solid, for a scheme without its own)."""
    return {"color": SCHEME_COLORS.get(scheme, f"C{index}"), "linestyle": SCHEME_LINESTYLES.get(scheme, "-")}


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
        ax.plot(layers[drawable], values[drawable], marker="o", ms=3, label=label, **scheme_style(scheme, i))
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


@torch.no_grad()
def accuracy(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, batch_size: int = 1000) -> float:
    """Fraction of ``images`` ``(N, 3, H, W)`` whose argmax logit is ``labels`` ``(N,)``, in eval mode."""
    logits, labels = predict(model, zip(images.split(batch_size), labels.split(batch_size)))
    return int((logits.argmax(1) == labels).sum()) / len(labels)


def train_each_scheme(make_net, schemes, seeds, batches_for_seed, val_images: torch.Tensor, val_labels: torch.Tensor,
                      lr: float = 0.01, momentum: float = 0.9, device="cpu") -> dict[str, list[dict]]:
    """Train ``make_net()`` from every scheme and seed with plain SGD; one step per batch.

    For each seed (outer loop), ``batches_for_seed(seed)`` gives the list of ``(x, y)`` batches,
    and every scheme trains on those same batches from a net built after
    ``torch.manual_seed(seed)``: within a seed the schemes differ only in their initialization,
    so per-seed differences between schemes are paired. Returns ``results[scheme]``, a list
    with one dict per seed: ``seed``, ``losses`` (``sgd_losses``: the training loss of each
    step, NaN from a divergence on) and ``val_accuracy`` on ``(val_images, val_labels)`` after
    the last step (NaN if the run diverged).
    """
    results: dict[str, list[dict]] = {scheme: [] for scheme in schemes}
    val_images, val_labels = val_images.to(device), val_labels.to(device)
    for seed in seeds:
        batches = [(x.to(device), y.to(device)) for x, y in batches_for_seed(seed)]
        for scheme in schemes:
            torch.manual_seed(seed)
            net = init_weights(make_net(), scheme).to(device)
            losses = sgd_losses(net, batches, lr, momentum)
            diverged = not math.isfinite(losses[-1])
            results[scheme].append({"seed": seed, "losses": losses,
                                    "val_accuracy": float("nan") if diverged else accuracy(net, val_images, val_labels)})
    return results


def running_mean(values, window: int) -> np.ndarray:
    """Mean of each ``window`` consecutive values (``len(values) - window + 1`` of them)."""
    values = np.asarray(values, dtype=float)
    window = max(1, min(window, len(values)))
    return np.convolve(values, np.ones(window) / window, mode="valid")


def plot_training_curves(results: dict, ax=None, title: str | None = None, window: int = 20,
                         chance: float | None = math.log(10)):
    """Training loss against SGD step, one line per (scheme, seed), smoothed over ``window`` steps.

    The seeds of a scheme share its colour and line style (``scheme_style``), so their spread
    shows the noise. Each scheme also has its own marker, placed at steps of its own, so that
    schemes whose curves coincide stay visible; schemes that sit on ``chance`` (ln 10, a uniform
    guess) at every step are named in a note on the figure. A run that went inf/NaN is not drawn;
    the legend says at which step it diverged.
    """
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 4))
    on_chance = []
    for i, (scheme, runs) in enumerate(results.items()):
        style = scheme_style(scheme, i)
        marker = dict(marker=TRAINING_CURVE_MARKERS[i % len(TRAINING_CURVE_MARKERS)], ms=4,
                      markevery=(12 * i, 12 * len(results)))  # schemes' markers never share a step
        diverged = [int(np.flatnonzero(~np.isfinite(r["losses"]))[0]) + 1 for r in runs if not np.isfinite(r["losses"]).all()]
        label = f"{scheme} ({len(runs)} seeds)"
        if diverged:
            label += f", {len(diverged)} inf/nan from step {min(diverged)}"
        drawn = []
        for run in runs:
            if not np.isfinite(run["losses"]).all():
                continue
            smooth = running_mean(run["losses"], window)
            steps = np.arange(len(smooth)) + min(window, len(run["losses"]))
            ax.plot(steps, smooth, lw=1.4, alpha=0.9, label=None if drawn else label, **style, **marker)
            drawn.append(smooth)
        if not drawn:
            ax.plot([], [], label=label, **style)
        elif chance is not None and all(np.max(np.abs(np.asarray(c) - chance)) < 0.005 for c in drawn):
            on_chance.append(scheme)
    if chance is not None:  # a pale band behind the curves, so that curves lying on it stay visible
        ax.axhline(chance, color="0.6", lw=3, alpha=0.3, zorder=0, label="ln(10): uniform guess")
    if on_chance:
        ax.annotate(f"{' and '.join(on_chance)}: at ln(10) = {chance:.3f} at every step", (0.98, chance),
                    xycoords=("axes fraction", "data"), xytext=(0, 6), textcoords="offset points", ha="right",
                    va="bottom", fontsize=8, color="0.25")
    ax.set_xlabel("SGD step")
    ax.set_ylabel(f"training loss (mean of the last {window} steps)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    if title:
        ax.set_title(title, fontsize=10)
    return ax
