"""Weight initialization in one place, plus the diagnostics that show why it matters.

- ``init_weights(model, scheme, zero_init_residual)``: the reference ``"kaiming"`` scheme and
  the lesson's alternatives (``INIT_SCHEMES``).
- ``plain_net(depth, width, norm)``: a deep conv net without shortcuts, where a bad scale
  compounds layer after layer; ``plain_mlp(depth, width, norm)``: its fully connected twin,
  cheap enough to train from every scheme on a CPU.
- ``layer_statistics(model, images, labels)``: one forward/backward pass, per-layer activation
  mean/std and weight-gradient norm, as rows ready to plot (``as_columns``).
"""

from __future__ import annotations

import math
from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import nn

INIT_SCHEMES = ("kaiming", "trunc_normal", "xavier", "default", "small", "large", "dirac")
SMALL_STD = 0.01  # 0.17x the Kaiming std of a width-64 3x3 conv: activations vanish with depth
LARGE_STD = 0.2  # 3.4x that std: activations grow ~3x per layer, ~1e10x over 20 layers
TRUNC_NORMAL_STD = 0.02  # the ViT/BERT convention

WEIGHTED_LAYERS = (nn.Conv2d, nn.Linear)
NORM_LAYERS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.GroupNorm, nn.LayerNorm)


def _kaiming(weight: torch.Tensor) -> None:
    nn.init.kaiming_normal_(weight, mode="fan_in", nonlinearity="relu")


def _trunc_normal(weight: torch.Tensor) -> None:
    std = TRUNC_NORMAL_STD
    nn.init.trunc_normal_(weight, std=std, a=-2 * std, b=2 * std)


def _dirac(weight: torch.Tensor) -> None:
    """PyTorch's default init, then the first ``C_in`` filters of a conv as the identity
    (``dirac_``): each conv starts as an implicit residual connection (airbench)."""
    nn.init.kaiming_uniform_(weight, a=math.sqrt(5))  # what nn.Conv2d/nn.Linear do by default
    if weight.dim() == 4 and weight.shape[0] >= weight.shape[1]:
        nn.init.dirac_(weight[: weight.shape[1]])


_WEIGHT_INITS = {
    "dirac": _dirac,
    "kaiming": _kaiming,
    "trunc_normal": _trunc_normal,
    "xavier": nn.init.xavier_normal_,
    "small": lambda weight: nn.init.normal_(weight, std=SMALL_STD),
    "large": lambda weight: nn.init.normal_(weight, std=LARGE_STD),
}


@torch.no_grad()
def init_weights(model: nn.Module, scheme: str = "kaiming", zero_init_residual: bool = False) -> nn.Module:
    """Initialize every Conv2d/Linear weight by ``scheme``, zero their biases, set norms to identity.

    Schemes:

    - ``"kaiming"`` (reference for ResNets): ``N(0, 2 / fan_in)``, i.e.
      ``kaiming_normal_(mode="fan_in", nonlinearity="relu")``, for convs and linears alike.
      He et al. (2015) show that fan_in keeps the forward activations' variance constant and
      fan_out the backward gradients'; either avoids the exponential blow-up. We take fan_in
      because the forward scale is what the diagnostics lesson plots, and inside a stage
      (3x3, C -> C) the two are equal anyway; they differ only at the stem (fan_in 27 vs
      fan_out 576), at stage transitions (2x) and at the classifier. torchvision uses fan_out
      for convs; with normalization layers the difference does not show in training.
    - ``"trunc_normal"`` (reference for ViTs): ``N(0, 0.02^2)`` truncated at 2 std, as in
      ViT/DeiT/timm. ``create_model`` picks it for ViTs unless told otherwise; pass
      ``init="kaiming"`` to give a ViT the ResNet's scheme instead.
    - ``"xavier"``: ``xavier_normal_``, ``N(0, 2 / (fan_in + fan_out))``: ignores ReLU halving
      the variance, so activations shrink by ~sqrt(2) per layer in a plain net.
    - ``"default"``: PyTorch's own defaults, by calling every module's ``reset_parameters()``.
    - ``"dirac"`` (reference for the fast net): PyTorch's default, then each conv's first
      ``C_in`` filters set to the identity, so a conv starts by passing its input through.
    - ``"small"`` / ``"large"``: ``N(0, 0.01^2)`` / ``N(0, 0.2^2)``: vanishing / exploding.

    Biases are zeroed and norm layers (BatchNorm, GroupNorm, LayerNorm) start as the identity
    (weight 1, bias 0) in every scheme. Parameters outside those layers (the ViT's class token
    and position embedding) keep their constructor initialization.

    ``zero_init_residual`` (off by default; Goyal et al., 2017) zeroes the weight of the last
    norm in each residual block (BasicBlock: second, Bottleneck: third), so every block starts
    as the identity. Blocks announce that norm through a ``last_norm()`` method.

    Returns ``model`` (initialized in place).
    """
    if scheme not in INIT_SCHEMES:
        raise ValueError(f"unknown init scheme {scheme!r}; choose one of: {', '.join(INIT_SCHEMES)}")
    for module in model.modules():
        if scheme == "default":
            if module is not model and hasattr(module, "reset_parameters"):
                module.reset_parameters()
        elif isinstance(module, WEIGHTED_LAYERS):
            _WEIGHT_INITS[scheme](module.weight)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, NORM_LAYERS) and module.weight is not None:
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)
    if zero_init_residual:
        for module in model.modules():
            if callable(getattr(module, "last_norm", None)):
                nn.init.zeros_(module.last_norm().weight)
    return model


def plain_net(depth: int = 20, width: int = 64, norm: str | None = None, num_classes: int = 10) -> nn.Sequential:
    """``depth`` x (3x3 conv -> [BatchNorm] -> ReLU), then global average pooling and a linear layer.

    ``(N, 3, H, W) -> (N, num_classes)``; every conv keeps the resolution and has ``width``
    output channels. No shortcuts, so each layer's scale multiplies into the next. ``norm``
    is ``None`` or ``"batch"``. Weights come with PyTorch's defaults: apply ``init_weights``.
    """
    if norm not in (None, "batch"):
        raise ValueError(f"unknown norm {norm!r} for plain_net; choose None or 'batch'")
    layers: OrderedDict[str, nn.Module] = OrderedDict()
    for i in range(1, depth + 1):
        # A bias is redundant before BatchNorm (it subtracts the mean).
        layers[f"conv{i}"] = nn.Conv2d(3 if i == 1 else width, width, 3, padding=1, bias=norm is None)
        if norm == "batch":
            layers[f"norm{i}"] = nn.BatchNorm2d(width)
        layers[f"relu{i}"] = nn.ReLU(inplace=True)
    layers["pool"] = nn.AdaptiveAvgPool2d(1)
    layers["flatten"] = nn.Flatten()
    layers["fc"] = nn.Linear(width, num_classes)
    return nn.Sequential(layers)


def plain_mlp(depth: int = 20, width: int = 256, norm: str | None = None, in_features: int = 3 * 32 * 32,
              num_classes: int = 10) -> nn.Sequential:
    """Flatten, ``depth`` x (Linear -> [BatchNorm1d] -> ReLU), then a linear classifier.

    ``(N, 3, 32, 32) -> (N, num_classes)``. The fully connected twin of ``plain_net``: the same
    variance argument holds with fan_in = ``width`` (``in_features`` for the first layer), and
    one SGD step costs a fraction of the conv net's on a CPU. ``norm`` is ``None`` or
    ``"batch"``. Weights come with PyTorch's defaults: apply ``init_weights``.
    """
    if norm not in (None, "batch"):
        raise ValueError(f"unknown norm {norm!r} for plain_mlp; choose None or 'batch'")
    layers: OrderedDict[str, nn.Module] = OrderedDict(flatten=nn.Flatten())
    for i in range(1, depth + 1):
        layers[f"linear{i}"] = nn.Linear(in_features if i == 1 else width, width, bias=norm is None)
        if norm == "batch":
            layers[f"norm{i}"] = nn.BatchNorm1d(width)
        layers[f"relu{i}"] = nn.ReLU(inplace=True)
    layers["fc"] = nn.Linear(width, num_classes)
    return nn.Sequential(layers)


def layer_statistics(model: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> list[dict]:
    """Per Conv2d/Linear layer, in forward order: its output's mean/std and its weight-gradient norm.

    Runs one forward pass on ``images`` ``(N, 3, H, W)`` and one backward pass of the mean
    cross-entropy against ``labels`` ``(N,)``, in train mode (BatchNorm uses batch statistics,
    as in training). Returns one dict per layer with keys ``layer`` (module name), ``index``
    (0, 1, ...), ``kind`` (``"conv"`` or ``"linear"``), ``act_mean``, ``act_std`` (over the
    whole output tensor) and ``grad_norm`` (L2 norm of d loss / d weight), all plain floats.
    A layer called twice is reported at its first call.

    The model is left as it was: parameters and ``.grad`` untouched (gradients come from
    ``torch.autograd.grad``), BatchNorm running statistics and train/eval mode restored,
    hooks removed.
    """
    rows: list[dict] = []
    weights: list[torch.Tensor] = []
    seen: set[int] = set()

    def record(name: str, kind: str):
        def hook(module: nn.Module, _inputs, output: torch.Tensor) -> None:
            if id(module) in seen:
                return
            seen.add(id(module))
            out = output.detach().float()
            rows.append({"layer": name, "index": len(rows), "kind": kind,
                         "act_mean": out.mean().item(), "act_std": out.std().item()})
            weights.append(module.weight)
        return hook

    hooks = [
        module.register_forward_hook(record(name, "conv" if isinstance(module, nn.Conv2d) else "linear"))
        for name, module in model.named_modules()
        if isinstance(module, WEIGHTED_LAYERS)
    ]
    saved_buffers = {name: buffer.clone() for name, buffer in model.named_buffers()}
    was_training = model.training
    try:
        model.train()
        loss = F.cross_entropy(model(images), labels)
        trainable = [w for w in weights if w.requires_grad]
        grads = dict(zip(map(id, trainable), torch.autograd.grad(loss, trainable, allow_unused=True)))
    finally:
        for hook in hooks:
            hook.remove()
        model.train(was_training)
        with torch.no_grad():
            for name, buffer in model.named_buffers():
                buffer.copy_(saved_buffers[name])
    for row, weight in zip(rows, weights):
        grad = grads.get(id(weight))
        row["grad_norm"] = grad.norm().item() if grad is not None else float("nan")
    return rows


def as_columns(rows: list[dict]) -> dict[str, list]:
    """Rows of ``layer_statistics`` as one list per key, e.g. ``columns["act_std"]``, for plotting."""
    return {key: [row[key] for row in rows] for key in rows[0]} if rows else {}
