"""Learning curves: when runs spike above the loss axis, every clipped value stays legible and joined to its curve."""

from __future__ import annotations

import itertools

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402

from course_utils.plots import plot_learning_curves  # noqa: E402


def _rows(val_losses):
    return [{"epoch": i + 1, "train_loss": 2.0 - 0.05 * i, "val_loss": v, "train_acc": 0.5, "val_acc": 0.5}
            for i, v in enumerate(val_losses)]


def test_values_of_runs_clipped_at_the_same_epochs_never_overlap():
    # Lesson 06's overfitting pair: both runs spike at epochs 1 and 2 of 20 (58.3 and 6.12, 79.2 and 5.97).
    tail = [2.0 - 0.01 * i for i in range(18)]
    runs = {"recipe": _rows([58.3, 6.12] + tail), "no regularization": _rows([79.2, 5.97] + tail)}
    fig, ax = plt.subplots(figsize=(6, 4.2))
    plot_learning_curves(runs, "loss", ax=ax)
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    labels = [t for t in ax.texts if t.get_text().split(":")[0] in {"58.3", "6.12", "79.2", "5.97"}]
    assert len(labels) == 4, f"each clipped value must be written once, got {[t.get_text() for t in ax.texts]}"
    for a, b in itertools.combinations(labels, 2):
        assert not a.get_window_extent(renderer).overlaps(b.get_window_extent(renderer)), (
            f"the clipped values {a.get_text()!r} and {b.get_text()!r} are drawn on top of each other")
    triangles = [line for line in ax.lines if line.get_marker() == "^"]
    assert len(triangles) == 4, f"each clipped point must be marked once, got {len(triangles)}"
    places = {tuple(line.get_transform().transform(line.get_xydata())[0].round(1)) for line in triangles}
    assert len(places) == 4, "two triangles sit on the same spot, so one run's spike is hidden"
    plt.close(fig)


def test_a_clipped_point_is_joined_to_its_curve_and_no_segment_enters_from_outside():
    # Lesson 05's live run: validation loss 17.2 after epoch 1, then 1.94 and 1.80.
    runs = {"live run": [{"epoch": e, "train_loss": t, "val_loss": v, "train_acc": 0.2, "val_acc": 0.2}
                         for e, t, v in [(1, 2.34, 17.24), (2, 2.18, 1.94), (3, 1.84, 1.80)]]}
    fig, ax = plt.subplots()
    plot_learning_curves(runs, "loss", ax=ax)
    top = ax.get_ylim()[1]
    curves = [line for line in ax.lines if line.get_linestyle() in ("-", "--")]
    for line in curves:
        ys = [y for y in line.get_ydata() if y == y]  # NaN marks a clipped point: no segment drawn to it
        assert max(ys) <= top, f"{line.get_label()!r} draws a segment to {max(ys)}, above the axis top {top:.2f}"
    links = [line for line in ax.lines if line.get_linestyle() == ":"]
    assert any(tuple(line.get_xydata()[0]) == (1, top) and tuple(line.get_xydata()[1]) == (2, 1.94) for line in links), (
        "the epoch-1 triangle is not joined to epoch 2's validation loss: the curve starts cut off from its point")
    assert any(t.get_text().startswith("17.2") for t in ax.texts), "the clipped value is not written"
    plt.close(fig)


def test_a_loss_axis_with_a_clipped_spike_spans_the_values_it_shows_not_zero():
    # Lesson 09: one spike (11.1) above curves that all lie between 1.4 and 2.9.
    rows = [{"epoch": e, "train_loss": t, "val_loss": v, "train_acc": 0.3, "val_acc": 0.3}
            for e, t, v in [(1, 2.2, 11.1), (2, 2.0, 1.9), (3, 1.8, 1.7), (4, 1.6, 1.6), (5, 1.5, 1.45), (6, 1.45, 1.4)]]
    other = [{**r, "val_loss": 2.9 - 0.1 * i, "train_loss": 2.2 - 0.05 * i} for i, r in enumerate(rows)]
    fig, ax = plt.subplots()
    plot_learning_curves({"resnet": rows, "vit": other}, "loss", ax=ax)
    bottom, top = ax.get_ylim()
    assert bottom > 1.0, f"the axis starts at {bottom:.2f}, far below the lowest value shown (1.4): curves are squashed"
    assert bottom < 1.4, f"the axis starts at {bottom:.2f}, above the lowest value shown (1.4)"
    plt.close(fig)
