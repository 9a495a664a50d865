"""The shared learning-curve plot: an epoch-1 validation-loss spike must not flatten the curves."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402

from course_utils.plots import plot_learning_curves, robust_upper_limit  # noqa: E402


def _rows(train, val):
    return [{"epoch": i + 1, "train_loss": t, "val_loss": v, "train_acc": 0.5, "val_acc": 0.5}
            for i, (t, v) in enumerate(zip(train, val))]


def test_an_epoch_one_validation_spike_is_clipped_and_marked():
    # The smoke profile's shape: 3 epochs, validation loss 40 after epoch 1 (untrained BatchNorm statistics).
    rows = _rows([2.3, 1.9, 1.7], [40.0, 2.1, 1.8])
    ax = plot_learning_curves({"run": rows}, "loss")
    bottom, top = ax.get_ylim()
    assert top < 5, f"y-axis still stretched to {top:.1f} by the epoch-1 spike"
    assert top > 2.3, f"y-axis {top:.2f} cuts off a value that is not an outlier"
    markers = [line for line in ax.lines if line.get_marker() == "^"]
    assert len(markers) == 1, f"the clipped point must be marked once, got {len(markers)} markers"
    assert any("40" in t.get_text() for t in ax.texts), "the clipped point's value must be written beside it"
    plt.close(ax.figure)


def test_curves_without_outliers_keep_every_point_visible():
    rows = _rows([2.3, 1.9, 1.7, 1.5], [2.2, 2.0, 1.8, 1.7])
    ax = plot_learning_curves({"a": rows, "b": _rows([2.0, 1.6, 1.4, 1.2], [2.1, 1.7, 1.5, 1.4])}, "loss")
    assert ax.get_ylim()[1] >= 2.3, "a curve without outliers lost its top point"
    assert not [line for line in ax.lines if line.get_marker() == "^"], "nothing was clipped, nothing may be marked"
    plt.close(ax.figure)


def test_accuracy_axes_are_never_clipped():
    rows = [{"epoch": i + 1, "train_acc": a, "val_acc": a, "train_loss": 1.0, "val_loss": 1.0}
            for i, a in enumerate([0.10, 0.80, 0.85, 0.86])]
    ax = plot_learning_curves({"run": rows}, "acc")
    assert ax.get_ylim()[0] <= 10, "the epoch-1 accuracy must stay visible"
    plt.close(ax.figure)


def test_robust_upper_limit_is_tukeys_fence_capped_at_the_maximum():
    assert robust_upper_limit([1.0, 1.0, 1.0, 1.0]) == 1.0
    assert robust_upper_limit([1, 2, 3, 4, 100]) == 4 + 1.5 * (4 - 2)  # quartiles 2 and 4
