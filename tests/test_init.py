"""Weight initialization schemes and the per-layer diagnostics of the initialization lesson."""

from __future__ import annotations

import copy
import math
import statistics

import pytest
import torch
from torch import nn

from course_utils import init_diagnostics
from course_utils.data import PUBLISHED_CIFAR10_MEAN, PUBLISHED_CIFAR10_STD
from course_utils.init import (
    INIT_SCHEMES,
    as_columns,
    init_weights,
    layer_statistics,
    plain_mlp,
    plain_net,
)
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


# --------------------------------------------------------------------------- lesson 04's hand-written init


@torch.no_grad()
def _kaiming_by_hand(model: nn.Module) -> nn.Module:
    """Lesson 04's ``kaiming_init``: one ``normal_`` draw per Conv2d/Linear weight, in ``model.modules()`` order."""
    for module in model.modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            module.weight.normal_(0, math.sqrt(2 / module.weight[0].numel()))
            if module.bias is not None:
                module.bias.zero_()
        elif isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d, nn.GroupNorm, nn.LayerNorm)):
            module.weight.fill_(1)
            module.bias.zero_()
    return model


@pytest.mark.parametrize("make_model", [lambda: create_model("resnet18", width=8), lambda: plain_net(4, 8),
                                        lambda: plain_mlp(4, 16, norm="batch")], ids=["resnet18", "plain_net", "plain_mlp"])
def test_kaiming_scheme_draws_exactly_what_the_lesson_writes_by_hand(make_model):
    """Lesson 04 asserts this bitwise; a change of draw order or std formula in init_weights must show here first."""
    torch.manual_seed(0)
    by_hand = make_model()
    by_package = copy.deepcopy(by_hand)
    torch.manual_seed(1)
    _kaiming_by_hand(by_hand)
    torch.manual_seed(1)
    init_weights(by_package, "kaiming")
    theirs = by_package.state_dict()
    differ = [k for k, v in by_hand.state_dict().items() if not torch.equal(v, theirs[k])]
    assert not differ, f"init_weights(model, 'kaiming') no longer matches the lesson's loop: {differ[:3]}"


def test_plain_mlp_layers_and_shapes():
    net = plain_mlp(depth=3, width=16)
    assert [n for n, m in net.named_modules() if isinstance(m, nn.Linear)] == ["linear1", "linear2", "linear3", "fc"]
    assert net.linear1.in_features == 3 * 32 * 32 and net.linear1.bias is not None
    assert net(torch.randn(2, 3, 32, 32)).shape == (2, 10)
    normed = plain_mlp(depth=3, width=16, norm="batch")
    assert sum(isinstance(m, nn.BatchNorm1d) for m in normed.modules()) == 3
    assert normed.linear1.bias is None, "a bias before BatchNorm is redundant"
    with pytest.raises(ValueError, match="None or 'batch'"):
        plain_mlp(norm="group")


def test_train_each_scheme_pairs_schemes_on_the_same_batches_and_reports_divergence():
    torch.manual_seed(0)
    data_seeds = []

    def batches_for_seed(seed):
        data_seeds.append(seed)
        g = torch.Generator().manual_seed(seed)
        return [(torch.randn(16, 3, 32, 32, generator=g), torch.randint(0, 10, (16,), generator=g)) for _ in range(5)]

    val_x, val_y = torch.randn(40, 3, 32, 32), torch.randint(0, 10, (40,))
    make = lambda: plain_mlp(20, 128)  # large: gain 0.2 * sqrt(128 / 2) = 1.6 per layer
    results = init_diagnostics.train_each_scheme(make, ["kaiming", "large"], [0, 1], batches_for_seed, val_x, val_y)
    assert data_seeds == [0, 1], "one draw of batches per seed, shared by the schemes"
    assert [r["seed"] for r in results["kaiming"]] == [0, 1]
    for run in results["kaiming"]:
        assert len(run["losses"]) == 5 and all(math.isfinite(v) for v in run["losses"]), run["losses"]
        assert 0 <= run["val_accuracy"] <= 1
    for run in results["large"]:
        assert not math.isfinite(run["losses"][-1]) and math.isnan(run["val_accuracy"]), "large should diverge"
    # The same seed gives the same run: nothing else is random.
    again = init_diagnostics.train_each_scheme(make, ["kaiming"], [1], batches_for_seed, val_x, val_y)
    assert again["kaiming"][0]["losses"] == results["kaiming"][1]["losses"]


def test_accuracy_counts_argmax_hits_and_restores_the_mode():
    net = nn.Sequential(nn.Flatten(), nn.Linear(2, 2, bias=False), nn.Dropout(0.5)).train()
    with torch.no_grad():
        net[1].weight.copy_(torch.eye(2))
    x = torch.tensor([[1.0, 0.0], [0.0, 1.0], [2.0, 1.0], [0.0, 3.0]])
    assert init_diagnostics.accuracy(net, x, torch.tensor([0, 1, 1, 1]), batch_size=3) == 0.75
    assert net.training, "train mode not restored"


def test_running_mean():
    assert init_diagnostics.running_mean([1, 2, 3, 4], 2).tolist() == [1.5, 2.5, 3.5]
    assert init_diagnostics.running_mean([1, 2], 5).tolist() == [1.5], "a window longer than the series is clipped"
