"""Weight initialization schemes and the per-layer diagnostics of the initialization lesson."""

from __future__ import annotations

import math
import statistics

import pytest
import torch
from torch import nn

from course_utils.data import PUBLISHED_CIFAR10_MEAN, PUBLISHED_CIFAR10_STD
from course_utils.init import INIT_SCHEMES, as_columns, init_weights, layer_statistics, plain_net
from course_utils.models import create_model

DEPTH = 20
WIDTH = 64  # plain-net width: wide enough for stable statistics, still ~0.3 s per pass on CPU
SEEDS = range(5)


@pytest.fixture(scope="module")
def batch(cifar10):
    """8 real CIFAR-10 test images, normalized ``(8, 3, 32, 32)``, with their labels ``(8,)``."""
    images = torch.from_numpy(cifar10.x_test[:8]).permute(0, 3, 1, 2).float() / 255
    mean = torch.tensor(PUBLISHED_CIFAR10_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(PUBLISHED_CIFAR10_STD).view(1, 3, 1, 1)
    return (images - mean) / std, torch.from_numpy(cifar10.y_test[:8]).long()


def _conv_std_ratio(batch, scheme: str, norm: str | None, seed: int) -> float:
    """Activation std of the last conv over that of the first, for one seeded plain net."""
    torch.manual_seed(seed)
    net = init_weights(plain_net(DEPTH, WIDTH, norm), scheme)
    convs = [row for row in layer_statistics(net, *batch) if row["kind"] == "conv"]
    assert len(convs) == DEPTH
    return convs[-1]["act_std"] / convs[0]["act_std"]


def _median_ratio(batch, scheme: str, norm: str | None = None) -> float:
    # One finite-width draw wanders (about 2x either way over 20 layers); the median over
    # seeds shows the scheme's trend rather than one draw's luck.
    return statistics.median(_conv_std_ratio(batch, scheme, norm, seed) for seed in SEEDS)


# --------------------------------------------------------------------------- init_weights


def test_kaiming_conv_weights_have_the_fan_in_std():
    torch.manual_seed(0)
    model = create_model("resnet18", width=64)
    checked = 0
    for name, module in model.named_modules():
        if isinstance(module, nn.Conv2d) and module.weight.numel() >= 10_000:
            fan_in = module.weight[0].numel()
            expected = math.sqrt(2 / fan_in)
            std = module.weight.std().item()
            assert abs(std / expected - 1) < 0.05, f"{name}: std {std:.4f}, Kaiming fan_in gives {expected:.4f}"
            checked += 1
    assert checked >= 15, f"only {checked} conv layers checked"


@pytest.mark.parametrize("name,norm", [("resnet18", "batch"), ("resnet50", "group"), ("vit_tiny", "batch")])
def test_norm_layers_start_as_identity(name, norm):
    model = create_model(name, norm=norm, width=8)
    norms = [(n, m) for n, m in model.named_modules() if isinstance(m, (nn.BatchNorm2d, nn.GroupNorm, nn.LayerNorm))]
    assert norms, f"{name} has no norm layers"
    for layer_name, module in norms:
        assert torch.all(module.weight == 1) and torch.all(module.bias == 0), f"{layer_name} is not the identity"


@pytest.mark.parametrize("name,last", [("resnet18", "norm2"), ("resnet50", "norm3")])
def test_zero_init_residual_zeroes_exactly_the_last_norm_of_each_block(name, last):
    model = create_model(name, width=8, zero_init_residual=True)
    zeroed = {n for n, m in model.named_modules() if isinstance(m, nn.BatchNorm2d) and torch.all(m.weight == 0)}
    expected = {n for n, _ in model.named_modules() if n.startswith("layer") and n.endswith(f".{last}")}
    assert len(expected) == (8 if name == "resnet18" else 16)
    assert zeroed == expected, f"zeroed norms differ from the blocks' last norms: {sorted(zeroed ^ expected)}"


def test_zero_init_residual_is_off_by_default():
    model = create_model("resnet18", width=8)
    assert all(torch.all(m.weight == 1) for m in model.modules() if isinstance(m, nn.BatchNorm2d))


def test_vit_gets_truncated_normal_by_default():
    model = create_model("vit_tiny")
    weight = model.blocks[0].attn.qkv.weight
    # A N(0, 0.02^2) cut at +-2 std has std 0.02 * 0.8796.
    assert weight.abs().max() <= 0.04 + 1e-6, "ViT weights should be truncated at 2 std"
    assert abs(weight.std().item() / (0.02 * 0.8796) - 1) < 0.05, f"ViT qkv std {weight.std():.4f}"


def test_default_scheme_restores_pytorch_defaults():
    conv = init_weights(nn.Sequential(nn.Conv2d(64, 64, 3)), "kaiming")[0]
    init_weights(nn.Sequential(conv), "default")
    # PyTorch's conv default: kaiming_uniform_(a=sqrt(5)), i.e. U(-b, b) with b = 1/sqrt(fan_in).
    expected = 1 / math.sqrt(3 * 64 * 9)
    assert abs(conv.weight.std().item() / expected - 1) < 0.05


def test_every_scheme_runs_and_unknown_scheme_is_rejected_by_name():
    for scheme in INIT_SCHEMES:
        init_weights(plain_net(depth=2, width=8), scheme)
    with pytest.raises(ValueError, match="orthogonal.*kaiming"):
        init_weights(plain_net(depth=2, width=8), "orthogonal")


# --------------------------------------------------------------------------- diagnostics


def test_kaiming_keeps_activation_scale_through_a_20_layer_plain_net(batch):
    ratio = _median_ratio(batch, "kaiming")
    assert 0.5 < ratio < 2, f"Kaiming: last/first conv activation std {ratio:.3g}, expected within 2x"


def test_small_init_makes_activations_vanish(batch):
    ratio = _median_ratio(batch, "small")
    assert ratio < 0.1, f"std 0.01: last/first conv activation std {ratio:.3g}, expected below 0.1"


def test_large_init_makes_activations_explode(batch):
    ratio = _median_ratio(batch, "large")
    assert ratio > 10, f"std 0.2: last/first conv activation std {ratio:.3g}, expected above 10"


def test_batchnorm_rescues_the_small_init_in_the_forward_pass(batch):
    ratio = _median_ratio(batch, "small", norm="batch")
    assert ratio > 0.5, f"small init + BatchNorm: last/first conv std {ratio:.3g}, should not vanish"


def test_layer_statistics_reports_every_layer_in_forward_order(batch):
    net = init_weights(plain_net(depth=3, width=8), "kaiming")
    rows = layer_statistics(net, *batch)
    columns = as_columns(rows)
    assert columns["layer"] == ["conv1", "conv2", "conv3", "fc"]
    assert columns["index"] == [0, 1, 2, 3]
    assert columns["kind"] == ["conv", "conv", "conv", "linear"]
    assert set(columns) == {"layer", "index", "kind", "act_mean", "act_std", "grad_norm"}
    assert all(math.isfinite(g) and g > 0 for g in columns["grad_norm"]), columns["grad_norm"]


def test_layer_statistics_leaves_the_model_as_it_was(batch):
    net = init_weights(plain_net(depth=3, width=8, norm="batch"), "kaiming").eval()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    layer_statistics(net, *batch)
    for key, value in net.state_dict().items():
        assert torch.equal(value, before[key]), f"{key} changed (parameters and BN running stats must not)"
    assert all(p.grad is None for p in net.parameters()), "gradients left in .grad"
    assert all(not m._forward_hooks for m in net.modules()), "forward hooks left attached"
    assert not net.training, "eval mode not restored"
