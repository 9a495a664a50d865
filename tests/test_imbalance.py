"""CIFAR-10-LT on the real offline copy, the loss weights, and the numbers of a comparison over seeds.

Lesson 10 trains on CIFAR-10-LT (Cao et al. 2019): the course's 40k train split cut to an
exponential tail, n_i = n_max * (1/ratio)^(i/(C-1)) with n_max the split's smallest class.
These tests pin that set on the real data, so a change to the split or the subset shows.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from course_utils import data as cd
from course_utils.config import TrainConfig
from course_utils.engine import class_weights, select_train_val
from course_utils.imbalance import (balanced_accuracy, plot_accuracy_vs_frequency, plot_class_counts,
                                     plot_per_class_accuracy)
from course_utils.stats import difference_with_noise, mean_and_standard_error

# Per-class counts of the course's seed-42 40k split (3,965 to 4,037 images per class), cut at
# ratio 100 and 10 from its smallest class: computed once by hand from the formula, pinned here.
CIFAR10_LT = {
    100: [3965, 2376, 1424, 854, 512, 306, 184, 110, 66, 39],
    10: [3965, 3069, 2376, 1840, 1424, 1103, 854, 661, 512, 396],
}


@pytest.mark.parametrize("ratio", [100, 10])
def test_cifar10_lt_from_the_40k_split_has_the_pinned_counts_per_class(cifar10, ratio):
    config = TrainConfig(imbalance_ratio=ratio)
    train_idx, val_idx = select_train_val(config, cifar10.y_train)
    counts = np.bincount(cifar10.y_train[train_idx], minlength=10)
    assert counts.tolist() == CIFAR10_LT[ratio], f"ratio {ratio}: counts per class {counts.tolist()}"
    split_train, split_val = cd.split_train_val(50_000, 10_000, seed=42)
    n_max = np.bincount(cifar10.y_train[split_train], minlength=10).min()
    assert n_max == 3965 and counts[0] == n_max, "the head class should keep the split's smallest class count"
    by_hand = [int(n_max * (1 / ratio) ** (i / 9)) for i in range(10)]
    assert counts.tolist() == by_hand, f"the formula by hand gives {by_hand}"
    assert ratio <= counts[0] / counts[-1] < 1.02 * ratio, f"realized ratio {counts[0] / counts[-1]:.2f}, asked {ratio}"
    assert np.isin(train_idx, split_train).all(), "the long tail must be cut from the 40k train split only"
    assert np.array_equal(val_idx, split_val), "the validation split must stay whole and unchanged"


def test_cifar10_lt_is_deterministic_and_depends_only_on_the_split_seed(cifar10):
    config = TrainConfig(imbalance_ratio=100)
    first, _ = select_train_val(config, cifar10.y_train)
    again, _ = select_train_val(config.replace(seed=7, class_weighting="balanced"), cifar10.y_train)
    assert np.array_equal(first, again), "the training seed or the loss changed which images are kept"
    other, _ = select_train_val(config.replace(split_seed=43), cifar10.y_train)
    assert not np.array_equal(first, other), "another split seed should keep other images"


def test_inverse_frequency_weights_make_every_class_add_equally_to_the_loss(cifar10):
    config = TrainConfig(imbalance_ratio=100, class_weighting="balanced")
    train_idx, _ = select_train_val(config, cifar10.y_train)
    labels = cifar10.y_train[train_idx]
    weights = class_weights(config, labels, 10)
    counts = np.array(CIFAR10_LT[100], dtype=np.float64)
    torch.testing.assert_close(weights, torch.tensor(counts.sum() / (10 * counts), dtype=torch.float32))
    total_per_class = weights.double().numpy() * counts
    assert np.allclose(total_per_class, total_per_class[0]), f"weight x count differs by class: {total_per_class}"
    assert weights[-1] / weights[0] == pytest.approx(3965 / 39, rel=1e-5), "tail/head weight should be the count ratio"
    assert class_weights(config.replace(class_weighting="none"), labels, 10) is None


def test_balanced_accuracy_is_the_mean_over_classes_and_skips_absent_ones():
    assert balanced_accuracy([1.0, 0.5, 0.0]) == pytest.approx(0.5)
    assert balanced_accuracy([1.0, np.nan, 0.0]) == pytest.approx(0.5), "an absent class (NaN) should be left out"


def test_mean_and_standard_error_by_hand():
    mean, se = mean_and_standard_error([0.50, 0.54])
    # std (ddof=1) of 0.50 and 0.54 is 0.02 * sqrt(2); over sqrt(2): 0.02.
    assert mean == pytest.approx(0.52) and se == pytest.approx(0.02)
    mean, se = mean_and_standard_error([0.3])
    assert mean == 0.3 and np.isnan(se), "one run has no measured spread"
    with pytest.raises(ValueError):
        mean_and_standard_error([])


def test_difference_with_noise_adds_the_two_standard_errors_in_quadrature():
    diff, se = difference_with_noise([0.50, 0.54], [0.40, 0.46])  # se 0.02 and 0.03
    assert diff == pytest.approx(-0.09) and se == pytest.approx(np.hypot(0.02, 0.03))


def test_plot_class_counts_draws_one_bar_per_class_and_set():
    ax = plot_class_counts({"ratio 100": CIFAR10_LT[100], "ratio 10": CIFAR10_LT[10]}, [f"c{i}" for i in range(10)])
    heights = sorted(p.get_height() for p in ax.patches)
    assert len(ax.patches) == 20 and heights[0] == 39 and heights[-1] == 3965
    assert ax.get_yscale() == "log"


def test_per_class_accuracy_draws_one_named_bar_per_class_and_run_rarest_first():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    counts = CIFAR10_LT[100]
    names = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    plain, weighted = np.linspace(0.9, 0.0, 10), np.linspace(0.4, 0.2, 10)
    ax = plot_per_class_accuracy(counts, {"plain CE": plain, "re-weighted": weighted}, names)
    try:
        ticks = [t.get_text() for t in ax.get_xticklabels()]
        assert ticks[0] == "truck\n39" and ticks[-1] == "airplane\n3,965", f"rarest class first, named: {ticks}"
        bars = {c.get_label(): [b.get_height() for b in c] for c in ax.containers}
        assert np.allclose(bars["re-weighted"], 100 * weighted[::-1]), "each run's bar sits above its own class"
        assert not [line for line in ax.lines if len(line.get_xdata()) > 1], "no line may join two classes"
    finally:
        plt.close(ax.figure)


def test_accuracy_vs_frequency_joins_no_classes_without_a_running_mean():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ax = plot_accuracy_vs_frequency(CIFAR10_LT[10], {"plain CE": np.linspace(0.9, 0.1, 10)}, window=1)
    try:
        assert not [line for line in ax.lines if len(line.get_xdata()) > 1], (
            "with window=1 a line would join different classes: draw the points only")
        assert [t.get_text() for t in ax.get_legend().get_texts()] == ["plain CE"]
    finally:
        plt.close(ax.figure)
