"""The shared plots: an epoch-1 validation-loss spike must not flatten the curves; image-grid titles keep their room."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402

import pytest  # noqa: E402

from course_utils import plots  # noqa: E402
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


def test_robust_upper_limit_cuts_only_far_outliers_of_the_issues_cases():
    # Lesson 05's resume demo: 2 epochs, validation loss 39.6 after epoch 1 (4 points in all).
    assert robust_upper_limit([2.64, 2.38, 39.6, 3.43]) == 3.43
    # A long run whose validation loss rises after a spike (lesson 06's overfitting figure).
    train = [2.2 * 0.89 ** i for i in range(40)]
    val = [55.0] + [1.82 + 0.027 * i for i in range(39)]
    assert robust_upper_limit(train + val) == max(val[1:]), "the rise of the validation loss must stay visible"
    # Several runs, one with a 262.6 spike (lesson 11's ResNet-50).
    assert robust_upper_limit([2.5, 2.0, 1.8, 1.7, 262.6, 3.0, 2.2, 1.9]) == 3.0


def test_robust_upper_limit_keeps_ordinary_curves_whole():
    assert robust_upper_limit([1.0, 1.0, 1.0, 1.0]) == 1.0
    # A steep but ordinary first epoch: 2.3 then about 1.
    assert robust_upper_limit([2.3, 1.0, 0.9, 0.85, 2.2, 1.1, 1.0, 0.95]) == 2.3
    # The committed laptop run's 36 values: epoch 1's 1.77 is its largest, not an outlier.
    laptop = [1.77, 1.26, 1.02, 0.89, 0.81, 0.76, 0.71, 0.67, 0.63, 0.59, 0.56, 0.51, 0.47, 0.42, 0.38, 0.35,
              0.33, 0.32, 1.64, 1.26, 0.94, 0.93, 0.92, 1.23, 0.79, 0.77, 0.73, 0.72, 0.61, 0.59, 0.54, 0.48,
              0.47, 0.46, 0.45, 0.44]
    assert robust_upper_limit(laptop) == 1.77
    assert robust_upper_limit([40.0, 2.0, 1.9]) == 40.0, "with fewer than 4 values nothing can be called an outlier"


def test_epoch_ticks_are_whole_numbers():
    rows = _rows([2.3, 1.9, 1.7], [2.2, 2.0, 1.8])
    ax = plot_learning_curves({"run": rows}, "loss")
    ax.figure.canvas.draw()
    ticks = [t for t in ax.get_xticks() if ax.get_xlim()[0] <= t <= ax.get_xlim()[1]]
    assert ticks and all(float(t).is_integer() for t in ticks), f"fractional epoch ticks {ticks}"
    plt.close(ax.figure)


@pytest.mark.parametrize("title_lines", [1, 3])
def test_image_grid_titles_never_run_into_the_image_above(cifar10, title_lines):
    titles = ["\n".join(f"line {k}" for k in range(title_lines))] * 12
    fig = plots.show_image_grid(cifar10.x_test[:12], titles=titles, ncols=6, scale=1.6)
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    axes = fig.axes
    for above, below in zip(axes[:6], axes[6:12]):
        image_bottom = above.images[0].get_window_extent(renderer).y0
        title_top = below.title.get_window_extent(renderer).y1
        assert title_top <= image_bottom + 0.5, (
            f"a {title_lines}-line title reaches {title_top - image_bottom:.1f} px into the image above it")
    plt.close(fig)
