"""Seed statistics: aggregate on hand-made runs with known numbers, and a tiny real run over 2 seeds."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from course_utils.config import TrainConfig, load_config
from course_utils.engine import Run
from course_utils.seeds import aggregate, compare_runs, format_aggregate, format_rows, main, run_seeds

REPO_ROOT = Path(__file__).resolve().parents[1]
TINY_OVERRIDES = ["train_per_class=20", "val_per_class=10", "width=8", "epochs=1", "warmup_epochs=0",
                  "batch_size=50"]


def _table(acc: float, loss: float) -> dict:
    """A final table where every split has the same numbers, shifted per split to tell them apart."""
    return {split: {"accuracy": acc - shift, "loss": loss + shift}
            for split, shift in (("train", 0.0), ("val", 0.01), ("test", 0.02))}


def _run(seed: int, last: tuple[float, float], best: tuple[float, float] | None = None, status="finished") -> Run:
    final = {"status": status, "last": _table(*last)}
    if best is not None:
        final["best"] = {"epoch": 3, **_table(*best)}
    return Run(Path(f"runs/seed{seed}"), TrainConfig(seed=seed), [], final)


# --------------------------------------------------------------------------- aggregate, by hand


def test_aggregate_gives_mean_and_sample_std_of_every_final_metric():
    runs = [_run(0, (0.90, 0.40), (0.91, 0.30)), _run(1, (0.92, 0.30), (0.92, 0.30)),
            _run(2, (0.97, 0.20), (0.96, 0.30))]
    agg = aggregate(runs)
    assert len(agg) == 12, f"expected 2 weights x 3 splits x 2 metrics, got {sorted(agg)}"
    # By hand: last/test accuracy = 0.88, 0.90, 0.95 -> mean 0.91; deviations -0.03, -0.01, 0.04;
    # sum of squares 0.0026; sample variance 0.0026 / (3 - 1) = 0.0013; std sqrt(0.0013).
    test_acc = agg["last/test/accuracy"]
    assert test_acc["mean"] == pytest.approx(0.91)
    assert test_acc["std"] == pytest.approx(math.sqrt(0.0013)), "std should be the sample std (ddof=1)"
    # Standard error of the mean: sqrt(0.0013) / sqrt(3) = sqrt(0.0013 / 3) = 0.02082.
    assert test_acc["sem"] == pytest.approx(math.sqrt(0.0013 / 3)), "sem should be std / sqrt(n)"
    assert test_acc["n"] == 3 and test_acc["seeds"] == [0, 1, 2]
    assert test_acc["values"] == pytest.approx([0.88, 0.90, 0.95])
    # last/train loss = 0.40, 0.30, 0.20 -> mean 0.30, sample std 0.10 (population std would be 0.0816).
    assert agg["last/train/loss"]["mean"] == pytest.approx(0.30)
    assert agg["last/train/loss"]["std"] == pytest.approx(0.10)
    # best/val loss is 0.31 for every seed: std exactly 0.
    assert agg["best/val/loss"]["mean"] == pytest.approx(0.31) and agg["best/val/loss"]["std"] == pytest.approx(0.0)
    text = format_aggregate(agg)
    assert "91.00 ± 3.61%      2.08%" in text, f"test accuracy row (mean ± std, std error) missing or misformatted:\n{text}"
    assert "0.3000 ± 0.1000" in text and "sample standard deviation" in text, text


def test_aggregate_of_one_run_has_undefined_std():
    agg = aggregate([_run(5, (0.5, 1.0))])
    assert set(agg) == {f"last/{s}/{q}" for s in ("train", "val", "test") for q in ("accuracy", "loss")}
    assert agg["last/val/accuracy"]["mean"] == pytest.approx(0.49)
    assert math.isnan(agg["last/val/accuracy"]["std"]), "a single run has no sample std"
    assert math.isnan(agg["last/val/accuracy"]["sem"]), "a single run has no standard error"
    assert "undefined for n = 1" in format_aggregate(agg)


def test_aggregate_refuses_unfinished_runs_and_mixed_recipes():
    with pytest.raises(ValueError, match="seed1: run is diverged"):
        aggregate([_run(0, (0.9, 0.3)), _run(1, (0.1, 9.0), status="diverged")])
    with pytest.raises(ValueError, match="one recipe only"):
        aggregate([_run(0, (0.9, 0.3), (0.9, 0.3)), _run(1, (0.9, 0.3))])
    with pytest.raises(ValueError, match="at least one run"):
        aggregate([])


def test_run_seeds_rejects_repeated_seeds(tmp_path):
    with pytest.raises(ValueError, match="distinct"):
        run_seeds(TrainConfig(), [0, 0], tmp_path)
    assert list(tmp_path.iterdir()) == [], "nothing should be trained or written"


# --------------------------------------------------------------------------- a tiny real run


@pytest.fixture(scope="module")
def two_seed_runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("seeds")
    config = load_config(REPO_ROOT / "configs" / "smoke.yaml", TINY_OVERRIDES)
    return root, config, run_seeds(config, [0, 1], root, progress=False, log=lambda *a: None)


@pytest.mark.slow
def test_two_seeds_give_two_different_finished_runs_and_an_aggregate(two_seed_runs):
    root, config, runs = two_seed_runs
    assert [r.run_dir for r in runs] == [root / "seed0", root / "seed1"]
    assert all(r.finished for r in runs), [r.final for r in runs]
    assert [r.config.seed for r in runs] == [0, 1]
    assert runs[0].config.replace(seed=1) == runs[1].config, "only the seed may differ between the runs"
    losses = [r.final["last"]["train"]["loss"] for r in runs]
    assert losses[0] != losses[1], "two seeds gave identical results: the seed is not used"
    agg = aggregate(runs)
    entry = agg["last/train/loss"]
    assert entry["n"] == 2 and entry["values"] == losses
    assert entry["mean"] == pytest.approx(sum(losses) / 2)
    assert entry["std"] == pytest.approx(abs(losses[0] - losses[1]) / math.sqrt(2)), "n=2 sample std is |a-b|/sqrt(2)"
    rows = compare_runs({"seed 0": runs[0], "seed 1": runs[1]})
    assert rows[0]["parameters"] == rows[1]["parameters"] > 0 and rows[0]["img/s"] > 0
    assert "seed 1" in format_rows(rows, ["run", "parameters", "test acc"])


@pytest.mark.slow
def test_run_seeds_again_returns_the_finished_runs_without_training(two_seed_runs):
    root, config, runs = two_seed_runs
    stamps = [(r.run_dir / "last.pt").stat().st_mtime_ns for r in runs]
    lines = []
    again = run_seeds(config, [0, 1], root, progress=False, log=lines.append)
    assert [r.final for r in again] == [r.final for r in runs]
    assert [(r.run_dir / "last.pt").stat().st_mtime_ns for r in again] == stamps, "a finished run was retrained"
    assert all("not training again" in line for line in lines), lines


@pytest.mark.slow
def test_command_line_prints_the_table_and_rejects_a_bad_override(two_seed_runs, capsys):
    root, _, _ = two_seed_runs
    argv = ["--config", str(REPO_ROOT / "configs" / "smoke.yaml"), "--seeds", "0", "1", "--root", str(root),
            "--no-progress"] + [x for o in TINY_OVERRIDES for x in ("--set", o)]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "last    test   accuracy" in out and "seed 1" in out and "n = 2 seeds" in out, out
    assert main(argv + ["--set", "epochs=0"]) == 2
    err = capsys.readouterr().err
    assert "key 'epochs' must be >= 1" in err and len(err.strip().splitlines()) == 1, err
