"""The course's models, built through one entry point: ``create_model(name, ...)``.

Registered names (see ``list_models()``):

- ``resnet18``, ``resnet34``, ``resnet50``: the CIFAR ResNets of kuangliu/pytorch-cifar
  (3x3 stride-1 stem, no max-pool, stages of 64/128/256/512 channels at strides 1/2/2/2).
  ``stem="imagenet"`` swaps in torchvision's 7x7 stride-2 conv + 3x3 stride-2 max-pool, to
  show why that stem fails on 32x32 images (8x8 maps after the stem, 1x1 in the last stage).
- ``resnet20``, ``resnet32``, ``resnet44``, ``resnet56``, ``resnet110``: He et al. (2016)'s CIFAR
  family, 6n+2 layers in three stages of n BasicBlocks with 16/32/64 channels (``width`` = the
  first stage's channels, 16 by default). ``shortcut="A"`` (their CIFAR choice, the default) pads
  the identity with zero channels when a stage doubles them; ``shortcut="B"`` uses a 1x1
  projection. ``plain20`` ... ``plain110``: the same networks without shortcuts, for the
  degradation experiment (the deeper plain net trains worse).
- ``vit_tiny``, ``vit_small`` (alias ``vit``): a ViT for 32x32 images, patch size 4.
- ``fastnet``, ``fastnet_wide``: airbench's fast net (frozen patch-whitening conv, three
  conv-pool-BatchNorm-GELU groups of ``width * (1, 2, 2)`` or ``width * (1, 4, 4)`` channels).

Every model takes images ``(N, 3, 32, 32)`` (either memory format) and returns logits
``(N, num_classes)``. Parameter counts at each model's default width (64; 16 for the CIFAR family,
whose counts are those of He et al.'s Table 6), 10 classes, printed by ``count_parameters``;
GroupNorm and BatchNorm have the same parameters, so the counts agree:

=============  ============
resnet20          269,722
resnet32          464,154
resnet44          658,586
resnet56          853,018
resnet110       1,727,962
resnet18       11,173,962
resnet34       21,282,122
resnet50       23,520,842
vit_tiny        1,806,538
vit_small       8,335,882
fastnet           569,656
fastnet_wide    1,972,792
=============  ============
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from course_utils.init import INIT_SCHEMES, init_weights
from course_utils.whitening import whitening_filters

NORMS = ("batch", "group", "none")  # "none": no normalization, to show what BatchNorm buys
STEMS = ("cifar", "imagenet")
GROUPNORM_MAX_GROUPS = 32  # Wu & He (2018)'s default group count


# --------------------------------------------------------------------------- registry

_MODELS: dict[str, Callable[..., nn.Module]] = {}
_ALIASES = {"vit": "vit_small"}


def register_model(builder: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
    """Register ``builder(num_classes, norm, width, **kwargs)`` under its function name."""
    _MODELS[builder.__name__] = builder
    return builder


def list_models() -> list[str]:
    """The registered model names, sorted (aliases such as ``"vit"`` not repeated)."""
    return sorted(_MODELS)


def create_model(
    name: str,
    num_classes: int = 10,
    norm: str = "batch",
    width: int | None = None,
    init: str | None = None,
    zero_init_residual: bool = False,
    **kwargs,
) -> nn.Module:
    """Build a registered model and initialize its weights.

    Args:
        name: one of ``list_models()``, or the alias ``"vit"`` (= ``"vit_small"``).
        num_classes: size of the output logits ``(N, num_classes)``.
        norm: ``"batch"``, ``"group"`` or ``"none"`` (see ``make_norm``); ViTs use LayerNorm and accept
            only the default.
        width: channels of the first ResNet stage; ``None`` takes the model's own (64 = the
            reference ResNet-18, whose stages then have ``width * (1, 2, 4, 8)`` channels; 16 for
            the CIFAR family, ``width * (1, 2, 4)``). For ViTs it scales the embedding
            dimension by ``width / 64`` (the head count stays, so the head dimension shrinks).
        init: a scheme of ``course_utils.init.INIT_SCHEMES``; ``None`` applies the model's
            reference scheme (``"kaiming"`` for ResNets, ``"trunc_normal"`` for ViTs).
        zero_init_residual: start every residual block as the identity (see ``init_weights``).
        **kwargs: model-specific options, e.g. ``stem="imagenet"`` for the ResNets.
    """
    canonical = _ALIASES.get(name, name)
    if canonical not in _MODELS:
        choices = ", ".join(list_models() + sorted(_ALIASES))
        raise ValueError(f"unknown model {name!r}; choose one of: {choices}")
    if norm not in NORMS:
        raise ValueError(f"unknown norm {norm!r}; choose one of: {', '.join(NORMS)}")
    if width is not None and (isinstance(width, bool) or not isinstance(width, int) or width < 1):
        raise ValueError(f"width must be a positive int (64 = reference), got {width!r}")
    if zero_init_residual and norm == "none":
        raise ValueError("zero_init_residual zeroes each block's last norm; norm='none' has no norm to zero")
    if init is not None and init not in INIT_SCHEMES:
        raise ValueError(f"unknown init scheme {init!r}; choose one of: {', '.join(INIT_SCHEMES)}")
    if width is not None:
        kwargs["width"] = width
    model = _MODELS[canonical](num_classes=num_classes, norm=norm, **kwargs)
    scheme = init if init is not None else model.reference_init
    return init_weights(model, scheme=scheme, zero_init_residual=zero_init_residual)


# --------------------------------------------------------------------------- inspection


def count_parameters(model: nn.Module) -> int:
    """Number of parameters (shared ones counted once), trainable or not."""
    return sum(p.numel() for p in model.parameters())


@torch.no_grad()
def feature_map_shapes(
    model: nn.Module, input_shape: tuple[int, ...] = (1, 3, 32, 32)
) -> list[tuple[str, tuple[int, ...]]]:
    """Output shape of each top-level child (stem, layer1..layer4, pool, fc for a ResNet).

    Runs one forward pass on zeros of ``input_shape`` in eval mode (so BatchNorm works on a
    1x1 map with batch 1), then restores the mode. Returns ``[(child_name, shape), ...]`` in
    forward order, e.g. ``("layer4", (1, 512, 4, 4))`` for the CIFAR ResNet-18.
    """
    shapes: list[tuple[str, tuple[int, ...]]] = []
    hooks = [
        child.register_forward_hook(lambda _m, _i, out, name=name: shapes.append((name, tuple(out.shape))))
        for name, child in model.named_children()
    ]
    was_training = model.training
    try:
        model.eval()
        device = next(model.parameters()).device
        model(torch.zeros(input_shape, device=device))
    finally:
        model.train(was_training)
        for hook in hooks:
            hook.remove()
    return shapes


# --------------------------------------------------------------------------- ResNet parts


def groupnorm_groups(channels: int) -> int:
    """GroupNorm group count: ``gcd(32, channels)``.

    That is Wu & He's 32 groups whenever ``channels`` is a multiple of 32 (every layer of the
    width-64 networks), and the largest divisor of 32 that divides ``channels`` otherwise
    (e.g. 8 groups of 1 channel at width 8), so every width works.
    """
    return math.gcd(GROUPNORM_MAX_GROUPS, channels)


def make_norm(norm: str, channels: int) -> nn.Module:
    """``BatchNorm2d(channels)``, ``GroupNorm(groupnorm_groups(channels), channels)``, or for
    ``"none"`` the identity (the convs keep no bias: the network is the normalized one with its
    norms removed, nothing else changed)."""
    if norm == "batch":
        return nn.BatchNorm2d(channels)
    if norm == "group":
        return nn.GroupNorm(groupnorm_groups(channels), channels)
    if norm == "none":
        return nn.Identity()
    raise ValueError(f"unknown norm {norm!r}; choose one of: {', '.join(NORMS)}")


def conv3x3(in_channels: int, out_channels: int, stride: int = 1) -> nn.Conv2d:
    # No bias: the norm that follows every conv has its own shift.
    return nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)


SHORTCUTS = ("A", "B", "none")


class ZeroPadShortcut(nn.Module):
    """Option A of He et al.: subsample by ``stride`` and append zero channels; no parameters.

    ``(N, in, H, W) -> (N, out, H/stride, W/stride)``.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int):
        super().__init__()
        self.extra_channels, self.stride = out_channels - in_channels, stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x[:, :, :: self.stride, :: self.stride]
        return F.pad(x, (0, 0, 0, 0, 0, self.extra_channels))


def shortcut(in_channels: int, out_channels: int, stride: int, norm: str, option: str = "B") -> nn.Module | None:
    """What a block adds to its output: the identity when the shape is kept, else option ``"A"``
    (zero-padded, parameter-free) or ``"B"`` (strided 1x1 projection + norm); ``"none"`` for a
    plain block, which adds nothing (``None``)."""
    if option == "none":
        return None
    if stride == 1 and in_channels == out_channels:
        return nn.Identity()
    if option == "A":
        return ZeroPadShortcut(in_channels, out_channels, stride)
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False),
        make_norm(norm, out_channels),
    )


class BasicBlock(nn.Module):
    """Two 3x3 convs + shortcut: ``(N, in, H, W) -> (N, planes, H/stride, W/stride)``."""

    expansion = 1

    def __init__(self, in_channels: int, planes: int, stride: int, norm: str, shortcut_option: str = "B"):
        super().__init__()
        self.conv1 = conv3x3(in_channels, planes, stride)
        self.norm1 = make_norm(norm, planes)
        self.conv2 = conv3x3(planes, planes)
        self.norm2 = make_norm(norm, planes)
        self.shortcut = shortcut(in_channels, planes, stride, norm, shortcut_option)
        if self.shortcut is None:  # a plain block has no identity to start as
            self.last_norm = None

    def last_norm(self) -> nn.Module:
        """The norm whose zero weight makes the block the identity (``zero_init_residual``)."""
        return self.norm2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.norm1(self.conv1(x)))
        out = self.norm2(self.conv2(out))
        if self.shortcut is None:
            return F.relu(out)
        return F.relu(out + self.shortcut(x))


class Bottleneck(nn.Module):
    """1x1 reduce, 3x3 (strided), 1x1 expand x4 + shortcut.

    ``(N, in, H, W) -> (N, 4 * planes, H/stride, W/stride)``; the stride sits on the 3x3 conv
    as in torchvision (ResNet v1.5), which changes no parameter count.
    """

    expansion = 4

    def __init__(self, in_channels: int, planes: int, stride: int, norm: str):
        super().__init__()
        out_channels = planes * self.expansion
        self.conv1 = nn.Conv2d(in_channels, planes, 1, bias=False)
        self.norm1 = make_norm(norm, planes)
        self.conv2 = conv3x3(planes, planes, stride)
        self.norm2 = make_norm(norm, planes)
        self.conv3 = nn.Conv2d(planes, out_channels, 1, bias=False)
        self.norm3 = make_norm(norm, out_channels)
        self.shortcut = shortcut(in_channels, out_channels, stride, norm)

    def last_norm(self) -> nn.Module:
        """The norm whose zero weight makes the block the identity (``zero_init_residual``)."""
        return self.norm3

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.norm1(self.conv1(x)))
        out = F.relu(self.norm2(self.conv2(out)))
        out = self.norm3(self.conv3(out))
        return F.relu(out + self.shortcut(x))


def cifar_stem(width: int, norm: str) -> nn.Sequential:
    """3x3 stride-1 conv + norm + ReLU: ``(N, 3, 32, 32) -> (N, width, 32, 32)``."""
    return nn.Sequential(conv3x3(3, width), make_norm(norm, width), nn.ReLU(inplace=True))


def imagenet_stem(width: int, norm: str) -> nn.Sequential:
    """7x7 stride-2 conv + norm + ReLU + 3x3 stride-2 max-pool: ``(N, 3, 32, 32) -> (N, width, 8, 8)``.

    Made for 224x224 inputs; on CIFAR it throws away 15 of every 16 positions before the
    first residual block.
    """
    return nn.Sequential(
        nn.Conv2d(3, width, 7, stride=2, padding=3, bias=False),
        make_norm(norm, width),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(3, stride=2, padding=1),
    )


class GlobalAvgPool(nn.Module):
    """``(N, C, H, W) -> (N, C)``: the mean over the spatial positions.

    A plain mean rather than ``nn.AdaptiveAvgPool2d``: its CUDA backward has no deterministic
    kernel, and the reference recipe trains in deterministic mode.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=(2, 3))


class ResNet(nn.Module):
    """stem -> layer1..layer4 -> pool -> fc, each a named attribute so a lesson can run them one by one.

    Shapes for the CIFAR stem with ``width=64`` and BasicBlocks: stem ``(N, 64, 32, 32)``,
    layer1 ``(N, 64, 32, 32)``, layer2 ``(N, 128, 16, 16)``, layer3 ``(N, 256, 8, 8)``,
    layer4 ``(N, 512, 4, 4)``, pool ``(N, 512)``, fc ``(N, num_classes)``.
    Bottlenecks multiply the stage outputs by 4.
    """

    reference_init = "kaiming"

    def __init__(
        self,
        block: type[BasicBlock] | type[Bottleneck],
        blocks_per_stage: tuple[int, int, int, int],
        num_classes: int = 10,
        norm: str = "batch",
        width: int = 64,
        stem: str = "cifar",
    ):
        super().__init__()
        if stem not in STEMS:
            raise ValueError(f"unknown stem {stem!r}; choose one of: {', '.join(STEMS)}")
        self.stem = cifar_stem(width, norm) if stem == "cifar" else imagenet_stem(width, norm)
        channels = width
        stages = []
        for i, num_blocks in enumerate(blocks_per_stage):
            planes, stride = width * 2**i, 1 if i == 0 else 2
            blocks = []
            for j in range(num_blocks):
                blocks.append(block(channels, planes, stride if j == 0 else 1, norm))
                channels = planes * block.expansion
            stages.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.pool = GlobalAvgPool()
        self.fc = nn.Linear(channels, num_classes)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """``(N, 3, H, W) -> (N, num_classes)`` logits."""
        x = self.stem(images)
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(self.pool(x))


@register_model
def resnet18(num_classes: int = 10, norm: str = "batch", width: int = 64, stem: str = "cifar") -> ResNet:
    return ResNet(BasicBlock, (2, 2, 2, 2), num_classes, norm, width, stem)


@register_model
def resnet34(num_classes: int = 10, norm: str = "batch", width: int = 64, stem: str = "cifar") -> ResNet:
    return ResNet(BasicBlock, (3, 4, 6, 3), num_classes, norm, width, stem)


@register_model
def resnet50(num_classes: int = 10, norm: str = "batch", width: int = 64, stem: str = "cifar") -> ResNet:
    return ResNet(Bottleneck, (3, 4, 6, 3), num_classes, norm, width, stem)


def imagenet_stem_resnet18(num_classes: int = 10, norm: str = "batch", width: int = 64) -> ResNet:
    """ResNet-18 with the ImageNet stem, Kaiming-initialized: the lesson's counter-example."""
    return create_model("resnet18", num_classes=num_classes, norm=norm, width=width, stem="imagenet")


# --------------------------------------------------------------------------- He et al.'s CIFAR family


class CifarResNet(nn.Module):
    """He et al. (2016, section 4.2): a 3x3 conv, then three stages of ``n`` BasicBlocks with
    ``width * (1, 2, 4)`` channels at strides 1/2/2, pool and fc: ``6n + 2`` weighted layers.

    Shapes at ``width=16``: stem ``(N, 16, 32, 32)``, layer1 ``(N, 16, 32, 32)``, layer2
    ``(N, 32, 16, 16)``, layer3 ``(N, 64, 8, 8)``, pool ``(N, 64)``, fc ``(N, num_classes)``.
    ``shortcut="none"`` builds the plain network of the same depth.
    """

    reference_init = "kaiming"

    def __init__(self, n: int, num_classes: int = 10, norm: str = "batch", width: int = 16, shortcut: str = "A"):
        super().__init__()
        if shortcut not in SHORTCUTS:
            raise ValueError(f"unknown shortcut {shortcut!r}; choose one of: {', '.join(SHORTCUTS)}")
        self.stem = cifar_stem(width, norm)
        channels, stages = width, []
        for i in range(3):
            planes, stride = width * 2**i, 1 if i == 0 else 2
            blocks = [BasicBlock(channels if j == 0 else planes, planes, stride if j == 0 else 1, norm, shortcut)
                      for j in range(n)]
            channels = planes
            stages.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3 = stages
        self.pool = GlobalAvgPool()
        self.fc = nn.Linear(channels, num_classes)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """``(N, 3, H, W) -> (N, num_classes)`` logits."""
        x = self.layer3(self.layer2(self.layer1(self.stem(images))))
        return self.fc(self.pool(x))


def _register_cifar_family(depth: int) -> None:
    """Register ``resnet<depth>`` (shortcut option A by default) and ``plain<depth>``."""
    n = (depth - 2) // 6

    def residual(num_classes: int = 10, norm: str = "batch", width: int = 16, shortcut: str = "A") -> CifarResNet:
        if shortcut == "none":
            raise ValueError(f"resnet{depth} has shortcuts (A or B); the network without them is plain{depth}")
        return CifarResNet(n, num_classes, norm, width, shortcut)

    def plain(num_classes: int = 10, norm: str = "batch", width: int = 16) -> CifarResNet:
        return CifarResNet(n, num_classes, norm, width, shortcut="none")

    residual.__name__, plain.__name__ = f"resnet{depth}", f"plain{depth}"
    residual.__doc__ = f"He et al.'s {depth}-layer CIFAR ResNet (n = {n}), shortcut option A or B."
    plain.__doc__ = f"resnet{depth} without shortcuts: {depth} layers stacked plainly."
    register_model(residual)
    register_model(plain)


CIFAR_DEPTHS = (20, 32, 44, 56, 110)
for _depth in CIFAR_DEPTHS:
    _register_cifar_family(_depth)


# --------------------------------------------------------------------------- ViT


class SelfAttention(nn.Module):
    """Multi-head self-attention: ``(N, T, D) -> (N, T, D)``."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, t, d = x.shape
        # (N, T, 3D) -> 3 x (N, heads, T, D/heads)
        q, k, v = self.qkv(x).reshape(n, t, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(q, k, v)
        return self.proj(out.transpose(1, 2).reshape(n, t, d))


class TransformerBlock(nn.Module):
    """Pre-norm block: ``x + attn(LN(x))``, then ``x + MLP(LN(x))``; ``(N, T, D) -> (N, T, D)``."""

    def __init__(self, dim: int, heads: int, mlp_ratio: int):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = SelfAttention(dim, heads)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, mlp_ratio * dim), nn.GELU(), nn.Linear(mlp_ratio * dim, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class VisionTransformer(nn.Module):
    """ViT for small images: patch embedding, class token, learned positions, pre-norm blocks.

    ``(N, 3, 32, 32)`` -> patches ``(N, dim, 8, 8)`` -> 64 tokens ``(N, 64, dim)`` -> a learned
    class token is prepended and learned position embeddings added ``(N, 65, dim)`` -> ``depth``
    blocks -> final LayerNorm -> the class token's features -> linear head ``(N, num_classes)``.
    The class token and positions start as truncated normals of std 0.02, as in ViT.
    """

    reference_init = "trunc_normal"

    def __init__(
        self,
        num_classes: int = 10,
        dim: int = 384,
        depth: int = 7,
        heads: int = 6,
        mlp_ratio: int = 2,
        patch_size: int = 4,
        image_size: int = 32,
    ):
        super().__init__()
        if image_size % patch_size or dim % heads:
            raise ValueError(
                f"need image_size % patch_size == 0 and dim % heads == 0, got "
                f"image_size={image_size}, patch_size={patch_size}, dim={dim}, heads={heads}"
            )
        num_tokens = (image_size // patch_size) ** 2 + 1  # +1: the class token
        self.patch_embed = nn.Conv2d(3, dim, patch_size, stride=patch_size)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, num_tokens, dim))
        nn.init.trunc_normal_(self.cls_token, std=0.02, a=-0.04, b=0.04)
        nn.init.trunc_normal_(self.pos_embed, std=0.02, a=-0.04, b=0.04)
        self.blocks = nn.Sequential(*[TransformerBlock(dim, heads, mlp_ratio) for _ in range(depth)])
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, num_classes)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """``(N, 3, H, W) -> (N, num_classes)`` logits."""
        x = self.patch_embed(images).flatten(2).transpose(1, 2)  # (N, T-1, dim)
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1) + self.pos_embed
        x = self.norm(self.blocks(x))
        return self.head(x[:, 0])


def _vit(num_classes: int, norm: str, width: int, base_dim: int, depth: int, heads: int, **kwargs):
    if norm != "batch":
        raise ValueError(f"norm={norm!r} does not apply to a ViT (it uses LayerNorm); leave norm at its default")
    # Heads stay fixed, so the embedding dim width/64 * base_dim stays divisible by them.
    dim = base_dim * width // 64
    if dim % heads:
        raise ValueError(f"width={width} gives embedding dim {dim}, not divisible by {heads} heads")
    return VisionTransformer(num_classes, dim=dim, depth=depth, heads=heads, **kwargs)


@register_model
def vit_tiny(num_classes: int = 10, norm: str = "batch", width: int = 64, **kwargs) -> VisionTransformer:
    """dim 192, depth 6, 3 heads, MLP ratio 2 (1,806,538 parameters at width 64, 10 classes)."""
    return _vit(num_classes, norm, width, base_dim=192, depth=6, heads=3, **kwargs)


@register_model
def vit_small(num_classes: int = 10, norm: str = "batch", width: int = 64, **kwargs) -> VisionTransformer:
    """dim 384, depth 7, 6 heads, MLP ratio 2 (8,335,882 parameters at width 64, 10 classes).

    A few million parameters, the scale of the ViTs commonly trained from scratch on CIFAR
    (e.g. kentaroy47/vision-transformers-cifar10), and 64+1 tokens keep it quick on a GPU.
    """
    return _vit(num_classes, norm, width, base_dim=384, depth=7, heads=6, **kwargs)


# --------------------------------------------------------------------------- the fast net (airbench)

FAST_BATCHNORM_MOMENTUM = 0.4  # PyTorch's convention (airbench's 0.6 = 1 - 0.4): short memory, few steps
FAST_LOGIT_SCALE = 1 / 9  # airbench's output scaling: small logits at init, no softmax saturation
WHITENING_KERNEL = 2  # 2x2 patches: 12 directions of a 2x2x3 patch, each with both signs


class ConvGroup(nn.Module):
    """conv 3x3 -> max-pool 2 -> BatchNorm -> GELU -> conv 3x3 -> BatchNorm -> GELU.

    Pooling right after the first conv halves the resolution early: later convs cost a quarter.
    BatchNorm has no learnable scale (the next conv can scale), only a bias.
    """

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False)
        self.pool = nn.MaxPool2d(2)
        self.norm1 = _fast_batchnorm(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.norm2 = _fast_batchnorm(out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.gelu(self.norm1(self.pool(self.conv1(x))))
        return F.gelu(self.norm2(self.conv2(x)))


def _fast_batchnorm(channels: int) -> nn.BatchNorm2d:
    norm = nn.BatchNorm2d(channels, eps=1e-12, momentum=FAST_BATCHNORM_MOMENTUM)
    norm.weight.requires_grad_(False)  # stays at 1: no learnable scale
    return norm


class FastNet(nn.Module):
    """airbench's net: whitening conv (2x2, frozen) -> GELU -> three ConvGroups -> max-pool -> linear.

    32x32 -> 31x31 (whitening, no padding) -> 15 -> 7 -> 3 -> 1 (max over the last 3x3 map).
    Call ``fit_whitening`` with training images before training; ``start_epoch`` freezes the
    whitening bias after ``whiten_bias_epochs`` epochs (it only needs to find its level once).
    """

    reference_init = "dirac"

    def __init__(self, num_classes: int, widths: tuple[int, int, int], whiten_bias_epochs: int = 3):
        super().__init__()
        whiten_channels = 2 * 3 * WHITENING_KERNEL**2
        self.whiten = nn.Conv2d(3, whiten_channels, WHITENING_KERNEL, padding=0, bias=True)
        self.whiten.weight.requires_grad_(False)
        self.groups = nn.Sequential(ConvGroup(whiten_channels, widths[0]), ConvGroup(widths[0], widths[1]),
                                    ConvGroup(widths[1], widths[2]))
        self.head = nn.Linear(widths[2], num_classes, bias=False)
        self.whiten_bias_epochs = whiten_bias_epochs

    @torch.no_grad()
    def fit_whitening(self, images: torch.Tensor) -> torch.Tensor:
        """Set the whitening filters from normalized training images ``(N, 3, 32, 32)``; returns the
        patch eigenvalues (largest first)."""
        weight, eigenvalues = whitening_filters(images, WHITENING_KERNEL)
        self.whiten.weight.copy_(weight.to(self.whiten.weight))
        return eigenvalues

    def start_epoch(self, epoch: int) -> None:
        self.whiten.bias.requires_grad_(epoch < self.whiten_bias_epochs)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = self.groups(F.gelu(self.whiten(images)))
        x = F.adaptive_max_pool2d(x, 1).flatten(1)
        return self.head(x) * FAST_LOGIT_SCALE


def _fastnet(num_classes: int, norm: str, width: int, multipliers: tuple[int, int, int]) -> FastNet:
    if norm != "batch":
        raise ValueError(f"norm={norm!r}: the fast net is built around BatchNorm; leave norm at its default")
    return FastNet(num_classes, tuple(width * m for m in multipliers))


@register_model
def fastnet(num_classes: int = 10, norm: str = "batch", width: int = 64) -> FastNet:
    """Groups of 64/128/128 channels at width 64 (the airbench93 shape): the laptop's fast recipe."""
    return _fastnet(num_classes, norm, width, (1, 2, 2))


@register_model
def fastnet_wide(num_classes: int = 10, norm: str = "batch", width: int = 64) -> FastNet:
    """Groups of 64/256/256 channels at width 64 (the airbench94 shape)."""
    return _fastnet(num_classes, norm, width, (1, 4, 4))
