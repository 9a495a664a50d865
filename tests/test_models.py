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
