"""The effects the lessons state from committed laptop records, checked on those records.

A lesson's conclusion rests on its committed runs; a re-run that loses the effect must fail here,
loudly, instead of leaving prose that no longer holds.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from course_utils.engine import load_run
from course_utils.stats import mean_and_standard_error

REPO = Path(__file__).resolve().parent.parent
BATCHNORM = REPO / "experiments" / "laptop" / "batchnorm"  # lesson 05, section 3
SEEDS = (0, 1)


def _final_val_accuracies(arm: str) -> list[float]:
    runs = [load_run(BATCHNORM / arm / f"seed{seed}") for seed in SEEDS]
    assert all(run.finished for run in runs), f"{arm}: every seed's run must be finished"
    return [100 * run.metrics[-1]["val_acc"] for run in runs]


def test_lesson_05_batchnorm_arms_differ_only_in_norm_and_learning_rate():
    configs = {arm.name: load_run(arm / "seed0").config for arm in BATCHNORM.iterdir()}
    assert set(configs) == {"BatchNorm-lr_0.1", "no_norm-lr_0.1", "no_norm-lr_0.01"}
    reference = configs["BatchNorm-lr_0.1"].to_dict()
    for arm, config in configs.items():
        different = {k for k, v in config.to_dict().items() if reference[k] != v}
        assert different <= {"norm", "lr"}, f"{arm} differs from the BatchNorm arm in {sorted(different)}"


def test_lesson_05_batchnorm_beats_no_norm_by_at_least_3_standard_errors():
    with_bn, without = _final_val_accuracies("BatchNorm-lr_0.1"), _final_val_accuracies("no_norm-lr_0.01")
    difference, se = mean_and_standard_error([a - b for a, b in zip(with_bn, without)])  # paired by seed
    assert difference > 20, f"BatchNorm's lead fell to {difference:.2f} points (the lesson states +28.90)"
    assert difference >= 3 * se, f"+{difference:.2f} ± {se:.2f} points is no longer 3 standard errors"


def test_lesson_05_no_norm_at_the_recipe_learning_rate_stays_at_chance():
    accuracies = _final_val_accuracies("no_norm-lr_0.1")
    assert accuracies == pytest.approx([10.0, 10.0], abs=0.5), (
        f"without BatchNorm at lr 0.1 the lesson says both seeds end at chance (10%), got {accuracies}"
    )
