"""Learning curves: when several runs spike above the loss axis, every clipped value stays legible."""

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
    labels = [t for t in ax.texts if t.get_text() in {"58.3", "6.12", "79.2", "5.97"}]
    assert len(labels) == 4, f"each clipped value must be written once, got {[t.get_text() for t in ax.texts]}"
    for a, b in itertools.combinations(labels, 2):
        assert not a.get_window_extent(renderer).overlaps(b.get_window_extent(renderer)), (
            f"the clipped values {a.get_text()!r} and {b.get_text()!r} are drawn on top of each other")
    triangles = [line for line in ax.lines if line.get_marker() == "^"]
    assert len(triangles) == 4, f"each clipped point must be marked once, got {len(triangles)}"
    places = {tuple(line.get_transform().transform(line.get_xydata())[0].round(1)) for line in triangles}
    assert len(places) == 4, "two triangles sit on the same spot, so one run's spike is hidden"
    plt.close(fig)
