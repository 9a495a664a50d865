"""Data-copy description, seeded gradients, config differences, tables, augmentation views and speed."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from course_utils import (
    augment_viewer,
    config,
    dataset_stats,
    images,
    repro,
    tables,
    throughput,
)
from course_utils.augment import normalize
from course_utils.data import channel_stats
from course_utils.profiles import PROFILES, profile_config

MEAN, STD = (0.49, 0.48, 0.45), (0.25, 0.24, 0.26)


def test_offline_copy_marks_its_exact_images(cifar10):
    masks = dataset_stats.exactness_masks(cifar10)
    assert masks is not None, "the offline copy carries train_exact/test_exact masks; they were not found"
    train_exact, test_exact = masks
    assert np.flatnonzero(train_exact).tolist() == list(range(4000)), "only x_train[:4000] should be pixel-exact"
    assert np.flatnonzero(test_exact).tolist() == list(range(1000)), "only x_test[:1000] should be pixel-exact"
    line = dataset_stats.describe_data_source(cifar10)
    assert "cifar10.npz" in line and "4,000 of 50,000 train" in line and "JPEG" in line, line


def test_same_seed_gives_identical_gradients_and_another_seed_does_not():
    a = repro.seeded_gradients(0, width=4, batch_size=4)
    b = repro.seeded_gradients(0, width=4, batch_size=4)
    c = repro.seeded_gradients(1, width=4, batch_size=4)
    assert torch.equal(a, b), "seed 0 twice should give bitwise identical gradients on the CPU"
    assert not torch.equal(a, c), "seeds 0 and 1 should give different gradients"
    assert a.abs().sum() > 0, "the gradients are all zero: nothing was back-propagated"


def test_config_differences_lists_exactly_the_keys_profiles_change():
    differences = config.config_differences({p: profile_config(p) for p in PROFILES})
    assert {"width", "epochs"} <= set(differences), f"width and epochs differ between profiles: {differences}"
    assert "lr" not in differences and "split_seed" not in differences, "unchanged keys must not be listed"
    assert differences["width"]["full"] == 64, "the full profile is the real ResNet-18 (width 64)"


def test_text_table_aligns_columns():
    table = tables.text_table(["a", "long header"], [[1, 2], ["three", 4]]).splitlines()
    assert len(table) == 4, "header, rule and two rows"
    assert table[2].index("2") == table[0].index("long header"), "columns should start at the same position"


def test_mean_per_image_std_is_the_average_of_each_images_std(cifar10):
    images = cifar10.x_train[:300]
    expected = (images.reshape(300, -1, 3).astype(np.float64) / 255).std(axis=1).mean(0)
    assert np.allclose(dataset_stats.mean_per_image_std(images, chunk=128), expected, atol=1e-6)
    _, dataset_std = channel_stats(images)
    assert all(p < d for p, d in zip(expected, dataset_std)), "the per-image std should be below the dataset std"


def test_denormalize_inverts_normalize_exactly(cifar10):
    x = images.to_chw(cifar10.x_train[:64])
    assert torch.equal(images.denormalize_to_uint8(normalize(x, MEAN, STD), MEAN, STD), x)
    assert np.array_equal(images.to_hwc(x), cifar10.x_train[:64]), "to_hwc should undo to_chw"


def test_augmented_draws_keep_the_original_first_and_only_flip_without_padding(cifar10):
    images = cifar10.x_train[:3]
    grid = augment_viewer.augmented_draws(images, draws=4, padding=0, seed=0).reshape(3, 5, 32, 32, 3)
    assert np.array_equal(grid[:, 0], images), "the first column should be the untouched originals"
    for i in range(3):
        for draw in grid[i, 1:]:
            assert np.array_equal(draw, images[i]) or np.array_equal(draw, images[i][:, ::-1]), \
                "with padding 0 every draw is the original or its mirror image"


def test_pixel_summary_sees_the_black_padding(cifar10):
    x = images.to_chw(cifar10.x_train[:200])
    padded = torch.nn.functional.pad(x, (4, 4, 4, 4))[:, :, :32, :32]  # shifted: black bands top and left
    clean, shifted = dataset_stats.pixel_summary(x), dataset_stats.pixel_summary(padded)
    assert shifted["black_fraction"] > clean["black_fraction"] + 0.2, (clean, shifted)
    assert shifted["border_mean"] < clean["border_mean"], (clean, shifted)


def test_augmentation_viewer_has_padding_and_seed_sliders(cifar10):
    viewer = augment_viewer.augmentation_viewer(cifar10.x_train[:2], draws=2)
    sliders = {w.description: (w.min, w.max, w.value) for w in viewer.children if hasattr(w, "min")}
    assert sliders["padding"] == (0, 8, 4), sliders
    assert "seed" in sliders, sliders


def test_augmentation_viewer_redraws_only_when_a_slider_is_released(cifar10):
    viewer = augment_viewer.augmentation_viewer(cifar10.x_train[:2], draws=2)
    sliders = [w for w in viewer.children if hasattr(w, "continuous_update")]
    assert len(sliders) == 2, viewer.children
    for slider in sliders:
        assert slider.continuous_update is False, (
            f"slider {slider.description!r} redraws while it is dragged: every pixel of a drag would queue "
            "a redraw of the image grid; set continuous_update=False"
        )


def test_augmentation_throughput_names_the_better_torchvision_setting_as_baseline_and_restores_threads(cifar10):
    threads = torch.get_num_threads()
    result = throughput.augmentation_throughput(cifar10.x_train[:256], cifar10.y_train[:256], MEAN, STD,
                                                batch_size=64, threads=1, workers=(0, 1), rounds=2, batches=2, warmup=1)
    assert torch.get_num_threads() == threads, "the thread count must be restored after measuring"
    assert result["images"] == 256 and result["threads"] == 1
    course = throughput.course_name("cpu")
    names = [course, throughput.torchvision_name(0), throughput.torchvision_name(1)]
    assert result["course"] == course and list(result["rates"]) == names, result["rates"]
    assert all(len(result["round_rates"][n]) == 2 and result["rates"][n] > 0 for n in names), result
    torchvision_rates = {n: result["rates"][n] for n in names[1:]}
    assert result["baseline"] == max(torchvision_rates, key=torchvision_rates.get), (
        "the baseline must be the better torchvision setting, as in make bench, never the weaker one")
    assert result["speedup"] == pytest.approx(result["rates"][course] / max(torchvision_rates.values()))
    assert result["speedup"] <= min(result["speedup_vs"].values()) + 1e-12, "the ratio against the baseline is the smallest"
    assert result["round_speedups"] == pytest.approx(
        [c / b for c, b in zip(result["round_rates"][course], result["round_rates"][result["baseline"]])])
    assert len(result["load_average"]) == 2


def test_lesson_and_benchmark_time_the_pipelines_with_one_method():
    """Lesson 02 and make bench must measure alike: the same contestants, the same timing function."""
    import inspect

    from benchmarks import input_pipeline

    for module in (throughput, input_pipeline):
        source = inspect.getsource(module)
        assert "pipeline_contestants(" in source and "measure_side_by_side(" in source, (
            f"{module.__name__} must time throughput.pipeline_contestants with side_by_side.measure_side_by_side")
    assert input_pipeline.torchvision_name is throughput.torchvision_name
