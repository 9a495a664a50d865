"""The model registry: shapes, exact parameter counts, norms, memory formats, the ImageNet stem."""

from __future__ import annotations

import pytest
import torch
import torchvision

from course_utils.models import count_parameters, create_model, feature_map_shapes, list_models

NARROW = 8  # width for shape tests: tiny and fast on CPU
RESNETS = ("resnet18", "resnet34", "resnet50")


def _images(n: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, 3, 32, 32, generator=torch.Generator().manual_seed(seed))


def _norms(name: str) -> tuple[str, ...]:
    return ("batch", "group") if name.startswith("resnet") else ("batch",)


@pytest.mark.parametrize(
    "name,norm", [(name, norm) for name in list_models() for norm in _norms(name)]
)
def test_every_registered_model_maps_images_to_logits(name, norm):
    model = create_model(name, num_classes=7, norm=norm, width=NARROW)
    logits = model(_images(2))
    assert logits.shape == (2, 7), f"{name}/{norm}: expected logits (2, 7), got {tuple(logits.shape)}"
    assert torch.isfinite(logits).all(), f"{name}/{norm}: non-finite logits at initialization"


def test_registry_lists_the_course_models_and_vit_alias_builds_vit_small():
    assert set(list_models()) >= {"resnet18", "resnet34", "resnet50", "vit_tiny", "vit_small"}
    alias, small = create_model("vit", width=NARROW), create_model("vit_small", width=NARROW)
    assert count_parameters(alias) == count_parameters(small), "'vit' must be an alias of 'vit_small'"


def test_cifar_resnet18_has_the_kuangliu_parameter_count():
    count = count_parameters(create_model("resnet18", num_classes=10, norm="batch", width=64))
    assert count == 11_173_962, f"CIFAR ResNet-18 should have 11,173,962 parameters, got {count:,}"


@pytest.mark.parametrize("name", ["resnet34", "resnet50"])
def test_cifar_resnet_matches_torchvision_with_the_stem_swapped(name):
    reference = count_parameters(getattr(torchvision.models, name)(num_classes=10))
    # torchvision's 7x7 conv 3->64 becomes a 3x3 conv 3->64; the max-pool has no parameters.
    expected = reference - 3 * 64 * 7 * 7 + 3 * 64 * 3 * 3
    count = count_parameters(create_model(name, num_classes=10))
    assert count == expected, f"{name}: {count:,} parameters, torchvision with CIFAR stem has {expected:,}"


@pytest.mark.parametrize("name", RESNETS)
def test_groupnorm_resnet_trains_on_a_batch_of_one(name):
    model = create_model(name, norm="group", width=NARROW).train()
    model(_images(1)).sum().backward()
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads), "GroupNorm must not need a batch"


@pytest.mark.parametrize("width", [1, 3, 8, 16])
def test_groupnorm_divides_every_width(width):
    model = create_model("resnet50", norm="group", width=width)
    assert model(_images(1)).shape == (1, 10), f"GroupNorm ResNet-50 failed at width {width}"


@pytest.mark.parametrize("name,norm", [("resnet18", "batch"), ("resnet50", "group"), ("vit_tiny", "batch")])
def test_channels_last_gives_the_same_logits(name, norm):
    model = create_model(name, norm=norm, width=NARROW).eval()
    images = _images(2)
    with torch.no_grad():
        expected = model(images)
        model = model.to(memory_format=torch.channels_last)
        got = model(images.contiguous(memory_format=torch.channels_last))
    # Same math, different float32 summation order through ~50 layers: ~1e-5 apart.
    assert torch.allclose(got, expected, rtol=1e-3, atol=1e-4), (
        f"{name}/{norm}: channels_last changes the logits by up to {(got - expected).abs().max():.2e}"
    )


def test_vit_backpropagates_into_the_patch_embedding():
    model = create_model("vit_tiny", width=16)
    loss = torch.nn.functional.cross_entropy(model(_images(4)), torch.tensor([0, 1, 2, 3]))
    loss.backward()
    grad = model.patch_embed.weight.grad
    assert grad is not None and torch.isfinite(grad).all(), "patch-embedding gradient missing or non-finite"
    assert grad.abs().sum() > 0, "patch-embedding gradient is all zeros: the tokens do not reach the loss"


def test_vit_width_scales_the_embedding_dimension():
    assert create_model("vit_small", width=32).patch_embed.out_channels == 384 // 2


def test_unknown_model_is_rejected_by_name():
    with pytest.raises(ValueError, match="resnet19.*resnet18"):
        create_model("resnet19")


def test_unknown_norm_is_rejected_by_name():
    with pytest.raises(ValueError, match="layer.*batch.*group"):
        create_model("resnet18", norm="layer", width=NARROW)


def test_vit_rejects_groupnorm():
    with pytest.raises(ValueError, match="group"):
        create_model("vit_tiny", norm="group", width=NARROW)


@pytest.mark.parametrize("width", [0, -8, 8.0, True])
def test_invalid_width_is_rejected(width):
    with pytest.raises(ValueError, match="width"):
        create_model("resnet18", width=width)


def test_unknown_stem_and_init_are_rejected_by_name():
    with pytest.raises(ValueError, match="tiny"):
        create_model("resnet18", width=NARROW, stem="tiny")
    with pytest.raises(ValueError, match="orthogonal"):
        create_model("resnet18", width=NARROW, init="orthogonal")


def test_cifar_stem_keeps_32x32_and_layer4_is_4x4():
    shapes = dict(feature_map_shapes(create_model("resnet18", width=NARROW)))
    assert shapes["stem"][-2:] == (32, 32), f"CIFAR stem should keep 32x32, got {shapes['stem']}"
    assert shapes["layer4"][-2:] == (4, 4), f"layer4 should be 4x4, got {shapes['layer4']}"
    assert shapes["fc"] == (1, 10)


def test_imagenet_stem_shrinks_32x32_to_8x8_and_layer4_to_1x1():
    shapes = dict(feature_map_shapes(create_model("resnet18", width=NARROW, stem="imagenet")))
    assert shapes["stem"][-2:] == (8, 8), f"ImageNet stem should give 8x8 on CIFAR, got {shapes['stem']}"
    assert shapes["layer4"][-2:] == (1, 1), f"layer4 should collapse to 1x1, got {shapes['layer4']}"


def test_feature_map_shapes_lists_stages_in_order_and_restores_train_mode():
    model = create_model("resnet18", width=NARROW).train()
    names = [name for name, _ in feature_map_shapes(model)]
    assert names == ["stem", "layer1", "layer2", "layer3", "layer4", "pool", "fc"]
    assert model.training, "feature_map_shapes must restore train mode"
    assert all(not module._forward_hooks for module in model.modules()), "hooks left attached"


# He et al. (2016), Table 6: 0.27M, 0.46M, 0.66M, 0.85M and 1.7M parameters with option A shortcuts.
HE_TABLE6 = {20: 269_722, 32: 464_154, 44: 658_586, 56: 853_018, 110: 1_727_962}


@pytest.mark.parametrize("depth,expected", sorted(HE_TABLE6.items()))
def test_cifar_family_has_the_parameter_counts_of_he_et_al_table_6(depth, expected):
    count = count_parameters(create_model(f"resnet{depth}"))
    assert count == expected, f"resnet{depth}: {count:,} parameters, expected {expected:,}"
    millions = {20: 0.27, 32: 0.46, 44: 0.66, 56: 0.85, 110: 1.7}[depth]
    assert round(count / 1e6, 2 if depth < 110 else 1) == millions, f"resnet{depth} is not Table 6's {millions}M"


@pytest.mark.parametrize("depth", sorted(HE_TABLE6))
def test_cifar_family_has_6n_plus_2_weighted_layers(depth):
    model = create_model(f"resnet{depth}")
    weighted = [m for m in model.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]
    assert len(weighted) == depth, f"resnet{depth} (option A) should have {depth} conv/linear layers, has {len(weighted)}"
    assert model.layer3[-1].conv2.out_channels == 64, "the last stage of the CIFAR family has 64 channels"


def test_option_a_adds_no_parameters_and_option_b_adds_the_two_projections():
    a, b = create_model("resnet20", shortcut="A"), create_model("resnet20", shortcut="B")
    plain = create_model("plain20")
    assert count_parameters(a) == count_parameters(plain), "option A (zero padding) must add no parameters"
    # Two stage transitions, each a 1x1 conv (16->32, 32->64) with a BatchNorm (weight + bias).
    projections = (16 * 32 + 2 * 32) + (32 * 64 + 2 * 64)
    assert count_parameters(b) - count_parameters(a) == projections


def test_option_a_shortcut_subsamples_and_pads_with_zero_channels():
    block = create_model("resnet20").layer2[0]
    x = _images(2)[:, :1].repeat(1, 16, 1, 1)
    out = block.shortcut(x)
    assert out.shape == (2, 32, 16, 16)
    assert torch.equal(out[:, :16], x[:, :, ::2, ::2]), "option A keeps every other pixel of the input channels"
    assert torch.count_nonzero(out[:, 16:]) == 0, "option A's added channels are zeros"


@pytest.mark.parametrize("depth", [20, 56])
def test_a_plain_net_has_no_shortcut_and_differs_from_its_residual_twin(depth):
    plain, residual = create_model(f"plain{depth}"), create_model(f"resnet{depth}")
    blocks = [m for m in plain.modules() if hasattr(m, "shortcut")]
    assert len(blocks) == 3 * (depth - 2) // 6 and all(b.shortcut is None for b in blocks)
    residual.load_state_dict(plain.state_dict())  # same weights: only the shortcuts differ
    images = _images(2)
    with torch.no_grad():
        assert not torch.allclose(plain.eval()(images), residual.eval()(images)), "the shortcut must change the output"


def test_zero_init_residual_leaves_plain_blocks_alone():
    plain = create_model("plain20", zero_init_residual=True)
    assert all(float(b.norm2.weight.detach().min()) == 1.0 for b in plain.modules() if hasattr(b, "norm2")), (
        "a plain block has no identity to start as, so its last norm stays at weight 1"
    )
    residual = create_model("resnet20", zero_init_residual=True)
    assert all(float(b.norm2.weight.detach().abs().max()) == 0.0 for b in residual.modules() if hasattr(b, "norm2"))


def test_cifar_family_width_default_and_bad_shortcut():
    assert feature_map_shapes(create_model("resnet20"))[-2] == ("pool", (1, 64))
    assert feature_map_shapes(create_model("resnet20", width=32))[-2] == ("pool", (1, 128))
    with pytest.raises(ValueError, match="unknown shortcut 'C'"):
        create_model("resnet20", shortcut="C")
    with pytest.raises(ValueError, match="plain20"):
        create_model("resnet20", shortcut="none")


@pytest.mark.parametrize("name", ["resnet18", "resnet20", "plain20"])
def test_norm_none_removes_every_norm_and_nothing_else(name):
    normalized, bare = create_model(name, width=NARROW), create_model(name, width=NARROW, norm="none")
    norms = (torch.nn.BatchNorm2d, torch.nn.GroupNorm)
    assert not any(isinstance(m, norms) for m in bare.modules()), f"{name} with norm='none' still has a norm layer"
    convs = lambda model: [(m.weight.shape, m.bias is None) for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert convs(bare) == convs(normalized), "removing the norms must leave every conv as it was"
    assert bare(_images(2)).shape == (2, 10)


def test_norm_none_refuses_zero_init_residual():
    with pytest.raises(ValueError, match="no norm to zero"):
        create_model("resnet18", norm="none", zero_init_residual=True)
