"""Sweeps on the real offline CIFAR-10 copy: the lr grid, the LR range test, run predictions, calibration tables."""

from __future__ import annotations

import math

import numpy as np
import pytest

from course_utils.config import load_config
from course_utils.data import stratified_subset
from course_utils.engine import REPO_ROOT, load_run
from course_utils.calibration import calibration_comparison, format_calibration_table  # noqa: E402
from course_utils.predictions import classifier_of_run, predictions_of_run  # noqa: E402
from course_utils.engine import Run  # noqa: E402
from course_utils.learning_curves import learning_curve_summary  # noqa: E402
from course_utils.lr_sweeps import (format_lr_grid, grid_config, lr_grid_points, lr_grid_runs, lr_range_test,  # noqa: E402
                                    lr_run_name, plot_lr_grid)

SMOKE = REPO_ROOT / "configs" / "smoke.yaml"
# Seconds on 2 CPU cores: 200 training images, 100 validation images, a width-8 ResNet-18.
TINY = ["train_per_class=20", "val_per_class=10", "width=8", "epochs=1", "warmup_epochs=0", "batch_size=40"]
SANE_LR, HUGE_LR = 0.05, 1.0e6


def quiet(*args, **kwargs):
    pass


@pytest.fixture(scope="module")
def grid(tmp_path_factory, data_dir):
    root = tmp_path_factory.mktemp("grid")
    lines = []
    rows = lr_grid_runs(load_config(SMOKE, TINY), [SANE_LR, HUGE_LR], warmup=False, root_dir=root, log=lines.append)
    return root, rows, lines


def test_lr_grid_has_one_row_per_lr_and_marks_only_the_huge_lr_diverged(grid):
    root, rows, lines = grid
    assert [r["lr"] for r in rows] == [SANE_LR, HUGE_LR], "one row per learning rate, in the order asked"
    sane, huge = rows
    assert sane["status"] == "finished", f"lr {SANE_LR} should train without diverging: {sane}"
    assert 0.0 <= sane["val_acc"] <= 1.0 and sane["val_acc"] == sane["best_val_acc"], sane
    assert sane["diverged_epoch"] is None and sane["message"] == ""
    assert huge["status"] == "diverged", f"lr {HUGE_LR:g} should make the loss non-finite: {huge}"
    assert huge["diverged_epoch"] == 1 and math.isnan(huge["val_acc"]), huge
    assert "loss became" in huge["message"], "the engine's divergence message should be kept in the row"
    assert any("diverged: loss became" in line for line in lines), f"the divergence should be logged: {lines}"
    assert load_run(root / lr_run_name(HUGE_LR, False)).diverged
    assert "non-finite loss in epoch 1" in format_lr_grid(rows)


def test_lr_grid_returns_stored_runs_without_training_again(grid):
    root, rows, _ = grid
    checkpoint = root / lr_run_name(SANE_LR, False) / "last.pt"
    before = checkpoint.stat().st_mtime_ns
    again = lr_grid_runs(load_config(SMOKE, TINY), [SANE_LR, HUGE_LR], warmup=False, root_dir=root, log=quiet)
    same_messages = [r["message"] for r in again] == [r["message"] for r in rows]
    assert format_lr_grid(again) == format_lr_grid(rows) and same_messages, "a second call should read the grid from disk"
    assert checkpoint.stat().st_mtime_ns == before, "a finished run was trained again"


def test_lr_grid_runs_one_run_directory_per_seed(grid):
    root, rows, _ = grid
    assert [r["seed"] for r in rows] == [0, 0] and rows[0]["run_dir"].endswith("lr0.05-nowarmup-seed0")
    (other,) = lr_grid_runs(load_config(SMOKE, TINY), [SANE_LR], warmup=False, root_dir=root, seeds=[1], log=quiet)
    assert other["seed"] == 1 and other["run_dir"].endswith(lr_run_name(SANE_LR, False, 1)), other
    assert load_run(other["run_dir"]).config.seed == 1, "the run must be trained with its own seed"
    assert other["run_dir"] != rows[0]["run_dir"], "two seeds must not share a run directory"


def _row(lr, warmup, seed, acc=None):
    finished = acc is not None
    return {"lr": lr, "warmup": warmup, "seed": seed, "warmup_epochs": 1 if warmup else 0,
            "status": "finished" if finished else "diverged", "val_acc": acc if finished else float("nan")}


def test_lr_grid_points_group_seeds_with_mean_and_sample_sd():
    rows = [_row(0.1, False, 0, 0.30), _row(0.1, True, 0, 0.30), _row(0.1, True, 1, 0.34), _row(0.1, True, 2, 0.32),
            _row(0.01, True, 0, 0.25), _row(1e4, True, 0)]
    points = lr_grid_points(rows)
    assert [(p["warmup"], p["lr"]) for p in points] == [(True, 0.01), (True, 0.1), (True, 1e4), (False, 0.1)]
    p = points[1]
    assert p["n"] == 3 and p["seeds"] == [0, 1, 2] and p["mean"] == pytest.approx(0.32)
    assert p["sd"] == pytest.approx(0.02), "the sample standard deviation (ddof=1) of 30, 34, 32 is 2 points"
    assert math.isnan(points[0]["sd"]), "one seed has no spread"
    assert points[2]["n"] == 0 and points[2]["n_diverged"] == 1 and math.isnan(points[2]["mean"])


def test_lr_grid_plot_stays_on_the_grid_and_separates_the_diverged_runs():
    rows = [_row(lr, w, 0, 0.3) for w in (True, False) for lr in (0.01, 0.1, 1.0)] + [_row(1e4, True, 0),
                                                                                   _row(1e4, False, 0)]
    ax = plot_lr_grid(lr_grid_points(rows), chance=0.1)
    assert ax.get_xlim()[1] < 1e3, f"the x-axis runs to {ax.get_xlim()[1]:g}: an off-scale lr must not stretch it"
    crosses = [line for line in ax.lines if line.get_marker() == "X"]
    assert len(crosses) == 2, "one diverged marker per warmup setting"
    (xa,), (xb,) = (line.get_xdata() for line in crosses)
    assert xa != xb and crosses[0].get_color() != crosses[1].get_color(), "the two diverged markers overlap"
    assert any("off scale" in t.get_text() for t in ax.get_xticklabels()), "the off-scale slot must say so"


def test_learning_curve_summary_finds_the_minimum_and_the_rise():
    metrics = [{"epoch": e, "val_loss": v, "train_acc": 0.5, "val_acc": 0.3} for e, v in
               enumerate([40.0, 1.9, 1.8, 2.2, 2.9], start=1)]
    run = Run(None, None, metrics, {"status": "finished", "last": {"train": {"accuracy": 1.0}}})
    s = learning_curve_summary(run)
    assert s["min_val_loss_epoch"] == 3 and s["min_val_loss"] == 1.8 and s["final_val_loss"] == 2.9
    assert s["val_loss_rise"] == pytest.approx(1.1) and s["final_train_acc_clean"] == 1.0


def test_grid_config_sets_warmup_and_refuses_warmup_without_a_length():
    base = load_config(SMOKE, ["epochs=3", "warmup_epochs=1"])
    assert grid_config(base, 0.3, warmup=True).warmup_epochs == 1
    assert grid_config(base, 0.3, warmup=False).warmup_epochs == 0
    assert grid_config(base, 1e-7, warmup=False).eta_min == 1e-7, "eta_min must be capped at a tiny lr"
    with pytest.raises(ValueError, match="warmup_epochs >= 1"):
        grid_config(base.replace(warmup_epochs=0), 0.3, warmup=True)


def test_range_test_raises_lr_exponentially_and_stops_when_the_loss_explodes(data_dir):
    num_steps = 40
    result = lr_range_test(load_config(SMOKE, TINY), start_lr=1e-4, end_lr=1e6, num_steps=num_steps)
    assert len(result.lrs) == len(result.losses) == len(result.raw_losses) >= 2
    assert np.all(np.diff(result.lrs) > 0), "learning rates must increase every step"
    ratios = result.lrs[1:] / result.lrs[:-1]
    assert np.allclose(ratios, (1e6 / 1e-4) ** (1 / (num_steps - 1))), "the increase should be exponential"
    assert len(result.lrs) < num_steps, f"lr up to 1e6 should explode before the end: {result.stop_reason}"
    assert "minimum" in result.stop_reason or "became" in result.stop_reason, result.stop_reason
    assert np.all(np.isfinite(result.losses)), "non-finite losses must not be recorded"
    low, high = result.suggested_range
    assert result.lrs[0] <= low <= high == result.min_loss_lr < result.lrs[-1], \
        f"suggested range {result.suggested_range} should end at the loss minimum, before the explosion"


def test_predictions_of_run_match_the_run_and_its_images(grid, cifar10):
    root, _, _ = grid
    run_dir = root / lr_run_name(SANE_LR, False)
    val = predictions_of_run(run_dir, "val")
    recorded = load_run(run_dir).final["last"]["val"]["accuracy"]
    assert val.logits.shape == (100, 10) and val.labels.shape == (100,)
    assert float(np.mean(val.preds == val.labels)) == pytest.approx(recorded, abs=1e-6), \
        "predictions of the stored weights should reproduce the run's own validation accuracy"
    test = predictions_of_run(run_dir, "test", per_class=5)
    config = load_run(run_dir).config
    run_test = np.arange(len(cifar10.y_test))  # the run's own test set (smoke.yaml takes a subset)
    if config.test_per_class is not None:
        run_test = stratified_subset(cifar10.y_test, config.test_per_class, seed=config.split_seed)
    idx = run_test[stratified_subset(cifar10.y_test[run_test], 5, seed=0)]
    assert np.array_equal(test.labels, cifar10.y_test[idx]) and np.array_equal(test.images, cifar10.x_test[idx]), \
        "a test subset's labels and images must be the ones its logits belong to"
    assert np.array_equal(test.indices, idx), "indices must give each test image's position in the official test set"
    assert np.array_equal(cifar10.y_train[val.indices], val.labels) and np.array_equal(cifar10.x_train[val.indices], val.images), \
        "validation indices must point at the validation images in the official training set"
    predict_fn = classifier_of_run(run_dir)
    assert np.array_equal(predict_fn(test.images), test.preds), "classifier_of_run should agree with predictions_of_run"
    with pytest.raises(ValueError, match="split must be one of"):
        predictions_of_run(run_dir, "train")


def test_calibration_table_fits_on_validation_and_keeps_accuracy(grid):
    root, _, _ = grid
    run_dir = root / lr_run_name(SANE_LR, False)
    preds = {"tiny": {"val": predictions_of_run(run_dir, "val"),
                      "test": predictions_of_run(run_dir, "test", per_class=20)}}
    rows = calibration_comparison(preds)
    assert [(r["run"], r["scaling"]) for r in rows] == [("tiny", "none"), ("tiny", "temperature")]
    before, after = rows
    assert before["temperature"] == 1.0 and after["temperature"] > 0
    assert after["accuracy"] == before["accuracy"], "temperature scaling must not change accuracy"
    assert "T (val)" in format_calibration_table(rows)


def test_temperature_scaling_repairs_overconfident_logits():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 10, 4000)
    logits = rng.normal(size=(4000, 10))
    logits[np.arange(4000), labels] += 1.5  # right about half the time ...
    logits *= 4.0  # ... but far too sure of itself
    pair = (logits[:2000], labels[:2000]), (logits[2000:], labels[2000:])
    before, after = calibration_comparison({"overconfident": {"val": pair[0], "test": pair[1]}})
    assert after["temperature"] > 2, f"overconfident logits need T > 1, got {after['temperature']:.2f}"
    assert after["accuracy"] == before["accuracy"]
    assert after["ece"] < before["ece"] / 3 and after["nll"] < before["nll"], (before, after)
