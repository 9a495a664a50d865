"""Diagnostics the lessons print about models, init, normalization and runs: what they print must be true."""

from __future__ import annotations

import json
import math

import matplotlib.pyplot as plt  # tests/conftest.py selects the Agg backend
import numpy as np
import pytest
import torch

from course_utils import init_diagnostics, loader, model_anatomy, normalization, runs
from course_utils.data import channel_stats, split_train_val
from course_utils.engine import Run
from course_utils.models import create_model


@pytest.fixture(scope="module")
def small_resnet():
    torch.manual_seed(0)
    return create_model("resnet18", width=8).eval()


def test_normalized_batches_are_real_training_images_normalized_with_the_split_statistics(cifar10):
    batches, (mean, std) = loader.normalized_batches(cifar10, batch_size=16, count=3, seed=1)
    assert [tuple(x.shape) for x, _ in batches] == [(16, 3, 32, 32)] * 3
    train_idx, _ = split_train_val(50_000, 10_000, seed=42)
    expected_mean, expected_std = channel_stats(cifar10.x_train[train_idx])
    assert np.allclose(mean, expected_mean) and np.allclose(std, expected_std), "not the 40k split's statistics"
    # Every image must be one of the training split's, with its own label: undo the normalization and look it up.
    x, y = batches[0]
    pixels = (x * torch.tensor(std).view(1, 3, 1, 1) + torch.tensor(mean).view(1, 3, 1, 1)) * 255
    pixels = pixels.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()
    train_set = set(train_idx.tolist())
    for image, label in zip(pixels[:4], y[:4]):
        candidates = np.flatnonzero((cifar10.x_train[:, 0] == image[0]).all(axis=(1, 2)))  # first row first: fast
        matches = candidates[(cifar10.x_train[candidates] == image).all(axis=(1, 2, 3))]
        assert len(matches) >= 1 and int(matches[0]) in train_set, "a batch image is not from the training split"
        assert cifar10.y_train[matches[0]] == int(label), "an image came with another image's label"
    all_images = torch.cat([x for x, _ in batches])
    assert len(torch.unique(all_images.flatten(1), dim=0)) == 48, "images repeat across batches"


def test_stage_maps_have_the_resolution_of_each_stage(small_resnet):
    maps = model_anatomy.stage_activation_maps(small_resnet, torch.randn(3, 32, 32))
    assert [(name, m.shape) for name, m in maps] == [
        ("stem", (32, 32)), ("layer1", (32, 32)), ("layer2", (16, 16)), ("layer3", (8, 8)), ("layer4", (4, 4))]


def test_stage_map_figure_shares_one_colour_scale_per_stage_and_shows_it(small_resnet):
    torch.manual_seed(0)
    image = torch.randn(3, 32, 32)
    imagenet = create_model("resnet18", width=8, stem="imagenet").eval()
    rows = {"cifar": model_anatomy.stage_activation_maps(small_resnet, image),
            "imagenet": model_anatomy.stage_activation_maps(imagenet, image)}
    fig = model_anatomy.plot_stage_maps(rows, np.zeros((32, 32, 3), np.uint8))
    try:
        panels = np.array(fig.axes[:2 * 6]).reshape(2, 6)
        for c in range(1, 6):
            values = np.concatenate([maps[c - 1][1].ravel() for maps in rows.values()])
            for r in range(2):
                clim = panels[r, c].images[0].get_clim()
                assert clim == pytest.approx((values.min(), values.max())), f"stage {c}: not one scale for both rows"
        assert len(fig.axes) == 2 * 6 + 5, "one colorbar per stage expected"
        one_by_one = panels[1, 5]
        assert rows["imagenet"][4][1].shape == (1, 1)
        texts = [t.get_text() for t in one_by_one.texts]
        assert texts == [f"{rows['imagenet'][4][1][0, 0]:.2f}"], f"the 1x1 map should print its value, got {texts}"
    finally:
        plt.close(fig)


def test_normalized_moments_measure_what_each_norm_normalizes():
    x = torch.randn(4, 8, 5, 5) * 3 + 2
    bn = torch.nn.BatchNorm2d(8).train()(x)
    gn = torch.nn.GroupNorm(4, 8)(x)
    mean, std = normalization.normalized_moments(bn, "channel")
    assert mean.abs().max() < 1e-5 and (std - 1).abs().max() < 1e-3, "BatchNorm: per channel over (N, H, W)"
    mean, std = normalization.normalized_moments(gn, "sample_group", groups=4)
    assert mean.abs().max() < 1e-5 and (std - 1).abs().max() < 1e-3, "GroupNorm: per sample and group"
    assert len(mean) == 4 * 4


def test_batch_dependence_tells_batchnorm_from_groupnorm():
    torch.manual_seed(0)
    images = torch.randn(8, 3, 32, 32)
    bn = create_model("resnet18", width=8, norm="batch")
    gn = create_model("resnet18", width=8, norm="group")
    before = {k: v.clone() for k, v in bn.state_dict().items()}
    assert normalization.batch_dependence(bn, images) > 1e-2, "BatchNorm output should depend on the batch"
    assert normalization.batch_dependence(gn, images) < 1e-4, "GroupNorm output should not depend on the batch"
    assert all(torch.equal(v, before[k]) for k, v in bn.state_dict().items()), "the model's running stats changed"


def test_fan_table_of_resnet18():
    model = create_model("resnet18", width=64)
    rows = {row["layer"]: row for row in init_diagnostics.fan_table(model)}
    assert (rows["stem.0"]["fan_in"], rows["stem.0"]["fan_out"]) == (27, 576)
    assert (rows["layer2.0.conv1"]["fan_in"], rows["layer2.0.conv1"]["fan_out"]) == (576, 1152)
    assert (rows["fc"]["fan_in"], rows["fc"]["fan_out"]) == (512, 10)
    weighted = sum(isinstance(m, (torch.nn.Conv2d, torch.nn.Linear)) for m in model.modules())
    assert sum(row["count"] for row in rows.values()) == weighted, "every conv/linear layer must be counted once"
    assert rows["layer1.0.conv1"]["std_fan_in"] == pytest.approx(math.sqrt(2 / 576))


def test_predicted_gains_follow_the_variance_argument():
    fan = 9 * 64
    assert init_diagnostics.predicted_gain("kaiming", fan, fan) == pytest.approx(1.0)
    assert init_diagnostics.predicted_gain("xavier", fan, fan) == pytest.approx(math.sqrt(0.5))
    assert init_diagnostics.predicted_gain("default", fan, fan) == pytest.approx(math.sqrt(1 / 6))
    assert init_diagnostics.predicted_gain("small", fan, fan) < 0.2, "std 0.01 should shrink the scale per layer"
    assert init_diagnostics.predicted_gain("large", fan, fan) > 3, "std 0.2 should grow the scale per layer"
    with pytest.raises(ValueError, match="trunc_normal"):
        init_diagnostics.predicted_gain("trunc_normal", fan, fan)


def test_conv_scale_probe_shows_batchnorm_scale_invariance():
    torch.manual_seed(0)
    images, labels = torch.randn(16, 3, 32, 32), torch.randint(0, 10, (16,))
    rows = init_diagnostics.conv_scale_probe(images, labels, (0.1, 1.0, 10.0), depth=4, width=8)
    losses = [r["loss"] for r in rows]
    assert max(losses) - min(losses) < 1e-2, f"BatchNorm should make the loss scale-invariant: {losses}"
    small, one, large = (r["relative_grad"] for r in rows)
    assert small / one == pytest.approx(100, rel=0.05), "weights x0.1 should make the relative step 100x larger"
    assert large / one == pytest.approx(0.01, rel=0.05), "weights x10 should make the relative step 100x smaller"


def test_depth_profiles_on_a_small_plain_net():
    torch.manual_seed(0)
    images, labels = torch.randn(8, 3, 32, 32), torch.randint(0, 10, (8,))
    profiles = init_diagnostics.depth_profiles(["kaiming", "small"], images, labels, depth=4, width=8)
    assert len(profiles["kaiming"]["act_std"]) == 5  # 4 convs + the classifier
    assert all(g / w == pytest.approx(r) for g, w, r in zip(profiles["kaiming"]["grad_norm"],
                                                           profiles["kaiming"]["weight_norm"],
                                                           profiles["kaiming"]["relative_grad"]))
    assert profiles["small"]["act_std"][-2] < profiles["kaiming"]["act_std"][-2] / 10, "small init should vanish"


def test_run_state_and_result_table(tmp_path):
    assert runs.run_state(tmp_path) == "new"
    (tmp_path / "last.pt").write_bytes(b"")
    assert runs.run_state(tmp_path) == "resumable"
    table = {split: {"accuracy": acc, "loss": 1.0} for split, acc in (("train", 0.9), ("val", 0.8), ("test", 0.79))}
    final = {"status": "finished", "epochs": 2, "data_source": "cifar10.npz", "last": table, "best": {"epoch": 1, **table}}
    (tmp_path / "final.json").write_text(json.dumps(final))
    assert runs.run_state(tmp_path) == "finished"
    text = runs.result_table(Run(tmp_path, None, [], final), {"train": 99.98, "val": 94.77, "test": 93.64}, "x")
    lines = text.splitlines()
    assert lines[0] == "ours: x"
    assert "best val (epoch 1)" in lines[1] and "not ours" in lines[1]
    assert lines[3].split() == ["train", "90.00%", "90.00%", "~99.98%"]
    assert lines[5].split() == ["test", "79.00%", "79.00%", "~93.64%"]



def test_coinciding_schemes_stay_visible_in_the_training_curves():
    """Without normalization `default` and `small` both sit at ln 10: their dashes interleave, so neither hides the other."""
    import matplotlib

    matplotlib.use("Agg")
    from course_utils import init_diagnostics

    flat = {"losses": np.full(50, np.log(10))}
    ax = init_diagnostics.plot_training_curves({"default": [flat], "small": [flat]}, window=5)
    lines = {line.get_label(): line for line in ax.get_lines()}
    default, small = lines["default (1 seeds)"], lines["small (1 seeds)"]
    np.testing.assert_array_equal(default.get_ydata(), small.get_ydata())  # the same curve, drawn twice
    (offset_a, (on_a, off_a)), (offset_b, (on_b, off_b)) = (init_diagnostics.scheme_style(s)["linestyle"]
                                                            for s in ("default", "small"))
    assert (on_a, off_a) == (on_b, off_b) and on_a == off_a, "equal dashes and gaps"
    assert abs(offset_b - offset_a) == on_a, "one scheme's dashes fall in the other's gaps"
    assert default.get_color() != small.get_color()
    marked_steps = [set(line.get_xdata()[line.get_markevery()[0]::line.get_markevery()[1]]) for line in (default, small)]
    assert default.get_marker() != small.get_marker() and not marked_steps[0] & marked_steps[1], (
        "coinciding schemes need markers of their own, at steps of their own")
    notes = [t.get_text() for t in ax.texts]
    assert any("default and small" in t and "ln(10)" in t for t in notes), (
        f"the figure must say which schemes sit on ln(10) throughout, got {notes}")
