"""Confusion matrix, failure galleries, background probe, ambiguity split and published label errors.

Image tests use a small slice of the real CIFAR-10 test set; metric tests use crafted arrays.
"""

import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # before pyplot is imported anywhere: tests never open windows

import matplotlib.image  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from course_utils import failures  # noqa: E402
from course_utils.background_probe import FILLS, PROBE_VARIANTS, REGIONS, background_probe, donors_of_other_classes, paired_standard_error, perturb_images, plot_probe_drops, region_masks  # noqa: E402
from course_utils.failures import FAILURE_KINDS, LABEL_ERRORS_FILE, accuracy_with_label_errors_fixed, ambiguity_split, calibration_by_subset, failure_title, load_label_errors, save_failure_galleries, select_failures, top2_margin  # noqa: E402
from course_utils.confusion import confusion_matrix, most_confused_pairs, per_class_accuracy, plot_confusion_matrix  # noqa: E402
from course_utils.calibration import calibration_report  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[1]
DATA_DIR = Path(os.environ.get("COURSE_DATA_DIR", REPO_ROOT.parent / "shared" / "data"))


@pytest.fixture(scope="module")
def cifar_slice():
    """First 64 CIFAR-10 test images (uint8 NHWC), labels and class names."""
    path = DATA_DIR / "cifar10.npz"
    assert path.is_file(), f"CIFAR-10 copy not found at {path}; set COURSE_DATA_DIR to the folder holding cifar10.npz"
    with np.load(path) as data:
        return data["x_test"][:64].copy(), data["y_test"][:64].copy(), [str(c) for c in data["classes"]]


# --------------------------------------------------------------------------- confusion


def test_confusion_matrix_known_case_with_an_absent_class():
    labels = [0, 0, 1, 1, 1, 2]
    preds = [0, 1, 1, 1, 0, 2]
    counts = confusion_matrix(labels, preds, num_classes=4, normalize=False)
    assert counts.tolist() == [[1, 1, 0, 0], [1, 2, 0, 0], [0, 0, 1, 0], [0, 0, 0, 0]]
    rates = confusion_matrix(torch.tensor(labels), torch.tensor(preds), num_classes=4)
    expected = [[0.5, 0.5, 0, 0], [1 / 3, 2 / 3, 0, 0], [0, 0, 1, 0], [0, 0, 0, 0]]
    np.testing.assert_allclose(rates, expected, err_msg="rows are true classes, normalized by class count")
    np.testing.assert_allclose(rates.sum(axis=1), [1, 1, 1, 0], err_msg="class 3 has no samples: its row is zeros")


def test_confusion_matrix_rows_sum_to_one_on_random_predictions():
    rng = np.random.default_rng(0)
    labels, preds = rng.integers(0, 10, 1000), rng.integers(0, 10, 1000)
    np.testing.assert_allclose(confusion_matrix(labels, preds, 10).sum(axis=1), np.ones(10))


def test_per_class_accuracy_is_nan_for_absent_class():
    accuracy = per_class_accuracy([0, 0, 1, 1, 1, 2], [0, 1, 1, 1, 0, 2], num_classes=4)
    np.testing.assert_allclose(accuracy[:3], [0.5, 2 / 3, 1.0])
    assert np.isnan(accuracy[3])


def test_most_confused_pairs_are_sorted_and_skip_zeros_and_diagonal():
    cm = np.array([[0.7, 0.1, 0.2], [0.05, 0.9, 0.05], [0.0, 0.3, 0.7]])
    pairs = most_confused_pairs(cm, ["cat", "dog", "frog"], k=10)
    assert [(t, p) for t, p, _ in pairs] == [("frog", "dog"), ("cat", "frog"), ("cat", "dog"),
                                             ("dog", "cat"), ("dog", "frog")]
    assert [r for _, _, r in pairs] == pytest.approx([0.3, 0.2, 0.1, 0.05, 0.05])
    assert most_confused_pairs(cm, ["cat", "dog", "frog"], k=2) == pairs[:2]


def test_plot_confusion_matrix_annotates_every_cell():
    cm = confusion_matrix([0, 1, 2, 2], [0, 2, 2, 1], num_classes=3)
    ax = plot_confusion_matrix(cm, ["cat", "dog", "frog"])
    try:
        assert len(ax.texts) == 9, "every cell of a small matrix carries its value"
        assert ax.get_ylabel() == "true class" and ax.get_xlabel() == "predicted class"
    finally:
        plt.close(ax.figure)


# --------------------------------------------------------------------------- failures


def crafted_predictions():
    """Six 3-class predictions with known confidence, correctness and top-2 margin.

    idx  probs              label  correct  confidence  margin
    0    .90 .05 .05        1      no       .90         .85
    1    .60 .30 .10        0      yes      .60         .30
    2    .10 .80 .10        2      no       .80         .70
    3    .40 .35 .25        0      yes      .40         .05
    4    .20 .70 .10        1      yes      .70         .50
    5    .34 .33 .33        2      no       .34         .01
    """
    probs = np.array([[.90, .05, .05], [.60, .30, .10], [.10, .80, .10],
                      [.40, .35, .25], [.20, .70, .10], [.34, .33, .33]])
    return probs, np.array([1, 0, 2, 0, 1, 2])


def test_select_failures_picks_the_right_samples_in_order():
    probs, labels = crafted_predictions()
    assert select_failures(probs, labels, "confident_mistakes", k=10).tolist() == [0, 2, 5]
    assert select_failures(probs, labels, "confident_mistakes", k=2).tolist() == [0, 2]
    assert select_failures(probs, labels, "unsure_correct", k=10).tolist() == [3, 1, 4]
    assert select_failures(probs, labels, "ambiguous", k=3).tolist() == [5, 3, 1]
    np.testing.assert_allclose(top2_margin(probs), [.85, .30, .70, .05, .50, .01], atol=1e-12)


def test_select_failures_filters_by_true_class():
    probs, labels = crafted_predictions()
    assert select_failures(probs, labels, "confident_mistakes", k=10, class_id=2).tolist() == [2, 5]
    assert select_failures(probs, labels, "unsure_correct", k=10, class_id=2).tolist() == []
    with pytest.raises(ValueError, match="kind"):
        select_failures(probs, labels, "wrong_kind", k=3)


def test_failure_title_shows_true_pred_and_confidence():
    assert failure_title("cat", "dog", 0.968) == "true: cat\npred: dog / 0.97"


def test_galleries_write_one_png_per_kind_overall_and_per_class(cifar_slice, tmp_path):
    images, labels, class_names = cifar_slice
    probs = np.random.default_rng(0).dirichlet(np.full(10, 0.3), size=len(labels))
    out_dir = tmp_path / "figures" / "failures"
    figures_before = plt.get_fignums()
    paths = save_failure_galleries(images, probs, labels, class_names, out_dir, k=16)

    expected = {f"{kind}_{tag}.png" for kind in FAILURE_KINDS for tag in ["overall", *class_names]}
    assert {p.name for p in paths} == expected and len(paths) == 33
    assert {p.name for p in out_dir.iterdir()} == expected, "no stray files in the gallery folder"
    assert plt.get_fignums() == figures_before, "galleries must close their figures"
    grid = matplotlib.image.imread(out_dir / "confident_mistakes_overall.png")
    assert grid.ndim == 3 and grid.shape[0] > 400 and grid.shape[1] > 400, f"unexpected PNG shape {grid.shape}"


def test_gallery_captions_do_not_overlap_each_other_or_images(cifar_slice, tmp_path, monkeypatch):
    # Worst case for width: every caption names "automobile"; keep the last figure to measure it.
    images, _, _ = cifar_slice
    labels = np.arange(32) % 2
    probs = np.where(labels[:, None] == 0, [0.03, 0.97], [0.97, 0.03])  # all wrong, confidence 0.97
    kept = []
    monkeypatch.setattr(failures.plt, "close", lambda fig: kept.append(fig))
    save_failure_galleries(images[:32], probs, labels, ["airplane", "automobile"], tmp_path, k=16)
    monkeypatch.undo()
    (fig,) = kept  # its last gallery: ambiguous_automobile, a full 4x4 grid
    try:
        renderer = fig.canvas.get_renderer()
        visible = [ax for ax in fig.axes if ax.get_visible()]
        assert len(visible) == 16
        captions = [ax.title for ax in visible]
        assert all(c.get_text() == "true: automobile\npred: airplane / 0.97" for c in captions)
        assert all(c.get_fontsize() <= 8 for c in captions), "captions use a small font"
        boxes = [c.get_window_extent(renderer) for c in captions] + [ax.get_window_extent(renderer) for ax in visible]
        boxes.append(fig._suptitle.get_window_extent(renderer))
        for i, a in enumerate(boxes):
            for j, b in enumerate(boxes[i + 1:], start=i + 1):
                assert not a.overlaps(b), f"figure elements {i} and {j} overlap: {a} vs {b}"
    finally:
        plt.close(fig)


# --------------------------------------------------------------------------- perturbations


def changed_pixels(before, after):
    """(N, H, W) bool: pixels where any channel differs."""
    return (before != after).any(axis=-1)


def test_centre_and_corners_have_equal_area_and_do_not_overlap():
    masks = region_masks(size=32, corner=8)
    centre, corners = masks["centre"], masks["corners"]
    assert centre.sum() == corners.sum() == 256, "the probe compares regions of the same area"
    assert not (centre & corners).any()
    assert centre[8:24, 8:24].all() and corners[:8, :8].all() and corners[24:, 24:].all()
    with pytest.raises(ValueError, match="corner"):
        region_masks(size=32, corner=9)  # a 18x18 centre would reach the 9x9 corners


@pytest.mark.parametrize("region", REGIONS)
@pytest.mark.parametrize("fill", FILLS + ("noise",))
def test_perturbations_change_only_their_region(cifar_slice, region, fill):
    images, labels, _ = cifar_slice
    original = images.copy()
    out = perturb_images(images, region, fill, labels=labels, seed=0)
    mask = region_masks(32, 8)[region]
    assert out.dtype == np.uint8 and out.shape == images.shape
    assert np.array_equal(images, original), "input must not be modified"
    changed = changed_pixels(images, out)
    assert not changed[:, ~mask].any(), f"{region}/{fill} must leave the rest of the image untouched"
    assert changed[:, mask].mean() > 0.5, f"{region}/{fill} must change its region"


def test_mean_fill_uses_each_images_own_region_colour(cifar_slice):
    images, labels, _ = cifar_slice
    mask = region_masks(32, 8)["corners"]
    out = perturb_images(images, "corners", "mean", labels=labels)
    expected = np.round(images[:, mask].mean(axis=1)).astype(np.uint8)  # (N, 3)
    assert (out[:, mask] == expected[:, None, :]).all()


def test_swap_takes_each_region_from_an_image_of_another_class(cifar_slice):
    images, labels, _ = cifar_slice
    mask = region_masks(32, 8)["centre"]
    out = perturb_images(images, "centre", "swap", labels=labels, seed=1)
    flat_in, flat_out = images[:, mask].reshape(64, -1), out[:, mask].reshape(64, -1)
    donors = [int(np.flatnonzero((flat_in == row).all(axis=1))[0]) for row in flat_out]
    assert all(labels[d] != labels[i] for i, d in enumerate(donors)), "the donor must be of a different class"
    assert np.array_equal(donors_of_other_classes(labels, 1), donors_of_other_classes(labels, 1))
    with pytest.raises(ValueError, match="labels"):
        perturb_images(images, "centre", "swap")


def test_blur_keeps_the_mean_colour_and_removes_detail(cifar_slice):
    images, labels, _ = cifar_slice
    mask = region_masks(32, 8)["centre"]
    out = perturb_images(images, "centre", "blur", labels=labels).astype(float)
    inside = images[:, mask].astype(float)
    assert np.abs(out[:, mask].mean(axis=1) - inside.mean(axis=1)).max() < 12, "blur keeps the region's colours"
    assert out[:, mask].std(axis=1).mean() < inside.std(axis=1).mean(), "blur removes detail"


@pytest.mark.parametrize("fill", ["swap", "noise"])
def test_random_fills_are_deterministic_per_seed(cifar_slice, fill):
    images, labels, _ = cifar_slice
    first = perturb_images(images, "corners", fill, labels=labels, seed=7)
    assert np.array_equal(first, perturb_images(images, "corners", fill, labels=labels, seed=7))
    assert not np.array_equal(first, perturb_images(images, "corners", fill, labels=labels, seed=8)), f"{fill} ignores its seed"


def lookup_predictor(images, labels, region):
    """predict_fn that memorizes labels by the pixels in `region` only; unknown pixels -> class 0."""
    table = {img[region].tobytes(): int(y) for img, y in zip(images, labels)}
    return lambda batch: np.array([table.get(img[region].tobytes(), 0) for img in batch])


def test_a_centre_only_model_loses_nothing_when_the_corners_change(cifar_slice):
    images, labels, _ = cifar_slice
    centre = region_masks(32, 8)["centre"]
    result = background_probe(lookup_predictor(images, labels, centre), images, labels, num_classes=10, seed=0)
    assert list(result) == ["original", *PROBE_VARIANTS]
    assert result["original"]["accuracy"] == 1.0
    for fill in FILLS:
        corners = result[f"corners_{fill}"]
        assert corners["accuracy"] == 1.0 and corners["drop"] == 0.0 and corners["drop_se"] == 0.0
        drop = corners["per_class_drop"]
        assert drop.shape == (10,) and np.allclose(drop[~np.isnan(drop)], 0.0)
        assert result[f"centre_{fill}"]["accuracy"] < 0.5, f"replacing the centre ({fill}) must hurt a centre-only model"


def test_a_corners_only_model_fails_when_the_corners_are_swapped(cifar_slice):
    images, labels, _ = cifar_slice
    predict = lookup_predictor(images, labels, region_masks(32, 8)["corners"])
    result = background_probe(lambda batch: torch.as_tensor(predict(batch)), images, labels, num_classes=10)
    assert result["centre_swap"]["accuracy"] == 1.0, "a corners-only model must not care about the centre"
    assert result["corners_swap"]["accuracy"] < 0.5


def test_paired_standard_error_of_a_drop():
    a = np.array([1, 1, 1, 1, 0, 0, 1, 1], dtype=bool)
    b = np.array([1, 0, 1, 1, 0, 1, 0, 1], dtype=bool)
    d = a.astype(float) - b  # [0, 1, 0, 0, 0, -1, 1, 0]
    assert paired_standard_error(a, b) == pytest.approx(np.std(d, ddof=1) / np.sqrt(8))
    assert paired_standard_error(a, a) == 0.0


def test_probe_figure_keeps_its_legend_off_the_bars(cifar_slice):
    images, labels, classes = cifar_slice
    predict = lookup_predictor(images, labels, region_masks(32, 8)["centre"])
    fig = plot_probe_drops(background_probe(predict, images, labels, num_classes=10), classes)
    try:
        fig.canvas.draw()
        assert not any(ax.get_legend() for ax in fig.axes), "no legend inside a panel"
        legend_box = fig.legends[0].get_window_extent()
        for ax in fig.axes:
            assert not legend_box.overlaps(ax.get_window_extent()), "the figure legend must sit outside the panels"
    finally:
        plt.close(fig)


# --------------------------------------------------------------------------- published label errors


def test_label_errors_file_indexes_our_test_set(cifar10):
    errors = load_label_errors(cifar10.classes)
    assert LABEL_ERRORS_FILE.parent.name == "reference" and LABEL_ERRORS_FILE.is_file()
    assert len(errors.candidate_index) == 275 and len(errors.error_index) == 54, "Northcutt et al.: 54 errors"
    assert np.array_equal(cifar10.y_test[errors.candidate_index], errors.candidate_given), \
        "every given label must equal y_test at its index: the file and our test set share one order"
    assert np.all(np.diff(errors.error_index) > 0) and np.isin(errors.error_index, errors.candidate_index).all()
    assert int((errors.raters_label >= 0).sum()) == 18, "18 errors have a label that 3 of 5 raters chose"
    assert "Northcutt" in errors.source


def test_accuracy_with_label_errors_excluded_and_relabeled():
    errors = failures.LabelErrors(candidate_index=np.array([1, 3, 5]), candidate_given=np.array([0, 0, 0]),
                                  error_index=np.array([3, 5]), raters_label=np.array([2, -1]),
                                  criterion="", source="")
    indices = np.array([0, 1, 2, 3, 4, 5])
    labels = np.array([0, 0, 1, 0, 1, 0])
    preds = np.array([0, 1, 1, 2, 1, 1])  # image 3: wrong against its label, right against the raters'
    r = accuracy_with_label_errors_fixed(preds, labels, indices, errors)
    assert r["measured"] == pytest.approx(3 / 6) and r["n_errors"] == 2 and r["n_relabeled"] == 1
    assert r["excluded"] == pytest.approx(3 / 4), "images 3 and 5 dropped: 0, 2, 4 right of 0, 1, 2, 4"
    assert r["relabeled"] == pytest.approx(4 / 5), "image 3 scored against label 2, image 5 (no majority) dropped"
    shuffled = np.array([5, 0, 3])  # a subset in another order: found by index, not position
    assert accuracy_with_label_errors_fixed(preds[[5, 0, 3]], labels[[5, 0, 3]], shuffled, errors)["relabeled"] == 1.0


# --------------------------------------------------------------------------- ambiguity vs calibration


def test_ambiguity_split_selects_the_smallest_margins():
    rng = np.random.default_rng(0)
    probs = rng.dirichlet(np.ones(10), size=200)
    mask = ambiguity_split(probs, quantile=0.1)
    assert mask.dtype == bool and mask.sum() == 20
    margin = top2_margin(probs)
    assert margin[mask].max() <= margin[~mask].min()


def test_calibration_by_subset_reports_both_parts():
    rng = np.random.default_rng(1)
    probs = rng.dirichlet(np.ones(10), size=200)
    labels = rng.integers(0, 10, size=200)
    mask = ambiguity_split(probs, quantile=0.25)
    reports = calibration_by_subset(probs, labels, mask)
    assert reports["subset"]["n"] == 50 and reports["rest"]["n"] == 150
    expected = calibration_report(probs[mask], labels[mask])
    assert {k: v for k, v in reports["subset"].items() if k != "n"} == pytest.approx(expected)
    with pytest.raises(ValueError, match="mask"):
        calibration_by_subset(probs, labels, np.ones(200, dtype=bool))
