"""Calibration metrics, reliability diagram and temperature scaling (synthetic data: it is math)."""

import math

import matplotlib

matplotlib.use("Agg")  # before pyplot is imported anywhere: tests never open windows

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from course_utils.calibration import (  # noqa: E402
    apply_temperature,
    brier_score,
    calibration_report,
    expected_calibration_error,
    fit_temperature,
    maximum_calibration_error,
    negative_log_likelihood,
    plot_confidence_histogram,
    plot_reliability_diagram,
    reliability_bins,
    softmax,
)


def probs_with_confidence(confidences, correct, num_classes=10):
    """Rows whose max prob is `confidence` on class 0; label 0 if correct else 1 (rest spread evenly)."""
    confidences = np.asarray(confidences, dtype=np.float64)
    probs = np.repeat(((1 - confidences) / (num_classes - 1))[:, None], num_classes, axis=1)
    probs[:, 0] = confidences
    labels = np.where(np.asarray(correct), 0, 1)
    return probs, labels


def perfectly_calibrated_sample():
    """Per bin, exactly `confidence` of the samples are right: 13/20 at 0.65, 17/20 at 0.85, 19/20 at 0.95."""
    confidences, correct = [], []
    for confidence, n_correct in [(0.65, 13), (0.85, 17), (0.95, 19)]:
        confidences += [confidence] * 20
        correct += [True] * n_correct + [False] * (20 - n_correct)
    return probs_with_confidence(confidences, correct)


def hand_example():
    """Six binary predictions used for the hand-computed values below.

    sample  p(class 0)  label  confidence  correct   5 bins (lo, hi]
    0       0.90        0      0.90        yes       (0.8, 1.0]
    1       0.90        1      0.90        no        (0.8, 1.0]
    2       0.70        0      0.70        yes       (0.6, 0.8]
    3       0.30        1      0.70        yes       (0.6, 0.8]
    4       0.55        1      0.55        no        (0.4, 0.6]
    5       0.05        1      0.95        yes       (0.8, 1.0]
    """
    p0 = np.array([0.90, 0.90, 0.70, 0.30, 0.55, 0.05])
    probs = np.stack([p0, 1 - p0], axis=1)
    labels = np.array([0, 1, 0, 1, 1, 1])
    return probs, labels


def test_ece_is_zero_when_each_bin_accuracy_equals_its_confidence():
    probs, labels = perfectly_calibrated_sample()
    ece = expected_calibration_error(probs, labels, n_bins=10)
    assert ece == pytest.approx(0.0, abs=1e-12), f"perfectly calibrated bins must give ECE 0, got {ece}"
    assert maximum_calibration_error(probs, labels, n_bins=10) == pytest.approx(0.0, abs=1e-12)


def test_ece_and_mce_match_hand_computed_example():
    # Bin (0.8, 1]: samples 0, 1, 5 -> acc 2/3, conf (0.9 + 0.9 + 0.95)/3 = 0.91667, gap 0.25, weight 3/6
    # Bin (0.6, 0.8]: samples 2, 3  -> acc 1,   conf 0.7,                     gap 0.30, weight 2/6
    # Bin (0.4, 0.6]: sample 4      -> acc 0,   conf 0.55,                    gap 0.55, weight 1/6
    # ECE = 0.5*0.25 + (1/3)*0.30 + (1/6)*0.55 = 0.125 + 0.1 + 0.091667 = 0.316667 (= 19/60)
    # MCE = max(0.25, 0.30, 0.55) = 0.55
    probs, labels = hand_example()
    assert expected_calibration_error(probs, labels, n_bins=5) == pytest.approx(19 / 60, abs=1e-12)
    assert maximum_calibration_error(probs, labels, n_bins=5) == pytest.approx(0.55, abs=1e-12)


def test_nll_and_brier_match_hand_computed_example():
    # p(true) = 0.9, 0.1, 0.7, 0.7, 0.45, 0.95
    # NLL = -(ln .9 + ln .1 + 2 ln .7 + ln .45 + ln .95) / 6 = 3.971096 / 6 = 0.661849
    # Brier (binary: 2 * (1 - p_true)^2) = (0.02 + 1.62 + 0.18 + 0.18 + 0.605 + 0.005) / 6 = 2.61 / 6 = 0.435
    probs, labels = hand_example()
    expected_nll = -(math.log(0.9) + math.log(0.1) + 2 * math.log(0.7) + math.log(0.45) + math.log(0.95)) / 6
    assert expected_nll == pytest.approx(0.661849, abs=1e-6)
    assert negative_log_likelihood(probs, labels) == pytest.approx(expected_nll, abs=1e-12)
    assert brier_score(probs, labels) == pytest.approx(0.435, abs=1e-12)


def test_uniform_prediction_has_nll_log_c_and_brier_one_minus_one_over_c():
    probs = np.full((8, 4), 0.25)
    labels = np.arange(8) % 4
    assert negative_log_likelihood(probs, labels) == pytest.approx(math.log(4))
    # (1 - 1/4)^2 + 3 * (1/4)^2 = 0.5625 + 0.1875 = 0.75
    assert brier_score(probs, labels) == pytest.approx(0.75)


def test_nll_stays_finite_when_true_class_has_zero_probability():
    probs = np.array([[1.0, 0.0], [0.5, 0.5]])
    nll = negative_log_likelihood(probs, np.array([1, 0]))
    assert np.isfinite(nll) and nll > 10, f"a zero probability on the true class must be clipped, got {nll}"


def test_reliability_bins_counts_sum_to_n_and_empty_bins_are_nan():
    rng = np.random.default_rng(0)
    probs = softmax(rng.normal(size=(500, 10)) * 3)
    labels = rng.integers(0, 10, size=500)
    bins = reliability_bins(probs, labels, n_bins=15)
    assert bins["edges"].shape == (16,) and bins["counts"].shape == (15,)
    assert bins["counts"].sum() == 500, "every sample must fall in exactly one bin"
    empty = bins["counts"] == 0
    assert empty.any(), "softmax over 10 classes never has confidence < 0.1: the first bin must be empty"
    assert np.isnan(bins["accuracy"][empty]).all() and np.isnan(bins["confidence"][empty]).all()
    assert not np.isnan(bins["accuracy"][~empty]).any()


def test_confidence_on_a_bin_edge_belongs_to_the_bin_below():
    # (lo, hi] convention: with 5 bins, confidence 0.6 is in (0.4, 0.6] (index 2), 1.0 in the last bin.
    probs, labels = probs_with_confidence([0.6, 1.0], [True, True], num_classes=2)
    counts = reliability_bins(probs, labels, n_bins=5)["counts"]
    assert counts.tolist() == [0, 0, 1, 0, 1], f"edge values binned wrongly: {counts.tolist()}"


def test_metrics_accept_torch_tensors():
    probs, labels = hand_example()
    from_numpy = calibration_report(probs, labels, n_bins=5)
    from_torch = calibration_report(torch.tensor(probs, dtype=torch.float32), torch.tensor(labels), n_bins=5)
    assert set(from_numpy) == {"accuracy", "nll", "ece", "mce", "brier"}
    assert all(isinstance(v, float) for v in from_torch.values())
    for key in from_numpy:
        assert from_torch[key] == pytest.approx(from_numpy[key], abs=1e-6), key
    assert from_numpy["accuracy"] == pytest.approx(4 / 6)


def test_mismatched_shapes_are_rejected():
    with pytest.raises(ValueError, match="labels"):
        expected_calibration_error(np.full((4, 2), 0.5), np.zeros(3, dtype=int))


def synthetic_logits(n=20_000, num_classes=10, seed=0):
    """True logits z and labels sampled from softmax(z) (Gumbel-max trick): calibrated at T = 1."""
    rng = np.random.default_rng(seed)
    z = rng.normal(scale=2.0, size=(n, num_classes))
    labels = np.argmax(z + rng.gumbel(size=z.shape), axis=1)
    return z, labels


@pytest.mark.parametrize("true_temperature", [0.05, 0.4, 2.5, 20.0])
def test_fit_temperature_recovers_a_known_temperature(true_temperature):
    # Feeding logits z * T0 means softmax(logits / T) is the true model at T = T0.
    z, labels = synthetic_logits()
    fitted = fit_temperature(z * true_temperature, labels)
    assert fitted == pytest.approx(true_temperature, rel=0.05), f"fitted T={fitted}, expected {true_temperature}"


def test_fit_temperature_recovers_inverse_of_an_applied_sharpening_from_torch_input():
    # Logits z / T0 (sharpened by 1/T0 = 2) need T = 1/T0 = 0.5 to undo it.
    z, labels = synthetic_logits(seed=1)
    fitted = fit_temperature(torch.tensor(z / 2.0, dtype=torch.float32), torch.tensor(labels))
    assert fitted == pytest.approx(0.5, rel=0.05), f"fitted T={fitted}, expected 0.5"


def test_fit_temperature_is_deterministic():
    z, labels = synthetic_logits(n=2_000, seed=4)
    assert fit_temperature(z, labels) == fit_temperature(z, labels)


def test_temperature_scaling_keeps_accuracy_and_improves_calibration_on_held_out_data():
    z, labels = synthetic_logits(n=20_000, seed=2)
    overconfident = z * 3.0
    val, test = slice(0, 10_000), slice(10_000, None)
    temperature = fit_temperature(overconfident[val], labels[val])
    before = softmax(overconfident[test])
    after = apply_temperature(overconfident[test], temperature)
    assert np.array_equal(before.argmax(axis=1), after.argmax(axis=1)), "temperature must not change predictions"
    assert np.allclose(after.sum(axis=1), 1.0)
    assert expected_calibration_error(after, labels[test]) < expected_calibration_error(before, labels[test]) / 3
    assert negative_log_likelihood(after, labels[test]) < negative_log_likelihood(before, labels[test])


def test_apply_temperature_rejects_non_positive_temperature():
    with pytest.raises(ValueError, match="temperature"):
        apply_temperature(np.zeros((2, 3)), 0.0)


def _random_predictions(seed: int, n: int, scale: float):
    """Softmax probabilities of random logits (times ``scale``: larger is more confident) and random labels."""
    rng = np.random.default_rng(seed)
    return softmax(rng.normal(size=(n, 10)) * scale), rng.integers(0, 10, size=n)


def test_reliability_diagram_writes_counts_summing_to_n_and_ece_in_legend():
    probs, labels = _random_predictions(seed=3, n=300, scale=2)
    ax = plot_reliability_diagram(probs, labels, n_bins=15)
    try:
        assert isinstance(ax.figure, matplotlib.figure.Figure)
        written = [int(t.get_text().replace(",", "")) for t in ax.texts if t.get_gid() == "bin count"]
        bins = reliability_bins(probs, labels, n_bins=15)
        assert written == [int(c) for c in bins["counts"] if c > 0], "one count per non-empty bin, in bin order"
        assert sum(written) == 300, f"bin counts must sum to n=300, got {sum(written)}"
        assert len(ax.figure.axes) == 1, "counts are written on the diagram, not on a second y-axis"
        legend_texts = [t.get_text() for t in ax.get_legend().get_texts()]
        assert any(t.startswith("ECE = ") for t in legend_texts), f"ECE missing from legend: {legend_texts}"
    finally:
        plt.close(ax.figure)


def test_reliability_diagram_draws_no_bar_for_a_nearly_empty_bin():
    # 100 samples at confidence 0.95 (95 right) and 3 at 0.15 (all wrong): the 0.15 bin has 3 < 20 samples.
    probs, labels = probs_with_confidence([0.95] * 100 + [0.15] * 3, [True] * 95 + [False] * 5 + [False] * 3)
    ax = plot_reliability_diagram(probs, labels, n_bins=10, min_count=20)
    try:
        accuracy_bars = next(c for c in ax.containers if c.get_label() == "accuracy")
        assert [round(b.get_x() + b.get_width() / 2, 6) for b in accuracy_bars] == [0.95], \
            "only the bin with >= min_count samples may be drawn as a bar"
        gap_bars = next(c for c in ax.containers if c.get_label().startswith("gap: overconfident"))
        assert len(gap_bars) == 1, "a nearly empty bin must not draw a full-height gap either"
        sparse = [c for c in ax.collections if c.get_label().startswith("accuracy, bin with <")]
        assert len(sparse) == 1 and np.allclose(sparse[0].get_offsets(), [[0.15, 0.0]]), \
            "the sparse bin shows as a marker at its accuracy"
    finally:
        plt.close(ax.figure)


def test_reliability_diagram_names_overconfident_and_underconfident_gaps_in_its_legend():
    # bin 0.95: 100 samples, 80 right (overconfident by 0.15); bin 0.55: 100 samples, 90 right (underconfident by 0.35)
    probs, labels = probs_with_confidence([0.95] * 100 + [0.55] * 100,
                                          [True] * 80 + [False] * 20 + [True] * 90 + [False] * 10)
    ax = plot_reliability_diagram(probs, labels, n_bins=10, min_count=20)
    try:
        bars = {c.get_label(): c for c in ax.containers}
        over = bars["gap: overconfident (conf. > acc.)"]
        under = bars["gap: underconfident (acc. > conf.)"]
        assert [round(b.get_x() + b.get_width() / 2, 6) for b in over] == [0.95], "the 0.95 bin is overconfident"
        assert [round(b.get_x() + b.get_width() / 2, 6) for b in under] == [0.55], "the 0.55 bin is underconfident"
        assert np.isclose(under[0].get_y() + under[0].get_height(), 0.55), "the green gap ends at the mean confidence"
        assert over[0].get_facecolor() != under[0].get_facecolor(), "the two directions must look different"
        legend_texts = [t.get_text() for t in ax.get_legend().get_texts()]
        assert any(t.startswith("gap: underconfident") for t in legend_texts), \
            f"the underconfident shading must be explained in the legend: {legend_texts}"
        assert any(t.startswith("gap: overconfident") for t in legend_texts), legend_texts
    finally:
        plt.close(ax.figure)


def test_reliability_diagram_keeps_its_legend_off_the_bars():
    # Lessons 07 and 09 point at the bars of the middle confidences (0.6 to 0.93), where a legend
    # inside the axes sat: the legend must lie wholly outside the plotting area.
    probs, labels = _random_predictions(seed=5, n=2000, scale=3)
    ax = plot_reliability_diagram(probs, labels, n_bins=15)
    try:
        ax.figure.canvas.draw()
        renderer = ax.figure.canvas.get_renderer()
        legend_box, plot_area = ax.get_legend().get_window_extent(renderer), ax.get_window_extent(renderer)
        assert not legend_box.overlaps(plot_area), (
            f"the legend ({legend_box}) covers part of the diagram ({plot_area})")
    finally:
        plt.close(ax.figure)


def test_reliability_diagram_and_histogram_draw_on_given_axes():
    probs, labels = hand_example()
    fig, (left, right) = plt.subplots(1, 2)
    try:
        assert plot_reliability_diagram(probs, labels, n_bins=5, ax=left, title="custom") is left
        assert left.get_title() == "custom"
        assert plot_confidence_histogram(probs, labels, n_bins=5, ax=right) is right
        labels_shown = [t.get_text() for t in right.get_legend().get_texts()]
        assert any("mean confidence" in t for t in labels_shown) and any("accuracy" in t for t in labels_shown)
    finally:
        plt.close(fig)
