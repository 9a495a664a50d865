"""Training on all 50,000 training images (``val_size: 0``) for a step budget that ends mid-epoch
(``total_steps``): airbench94's protocol, ``configs/fast_gpu_50k.yaml``."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from course_utils import engine
from course_utils.checkpoint import load_checkpoint
from course_utils.config import ConfigError, load_config
from course_utils.data import split_train_val
from course_utils.schedule import lr_at

REPO_ROOT = Path(__file__).resolve().parents[1]
SMOKE = REPO_ROOT / "configs" / "smoke.yaml"
# 200 training images in 3 full batches of 64 per epoch (drop_last); 5 steps: the 2nd epoch stops after 2.
WHOLE_SET = ["val_size=0", "keep_best=false", "val_per_class=null", "train_per_class=20", "test_per_class=10",
             "width=8", "epochs=2", "warmup_epochs=0", "batch_size=64", "drop_last=true", "tta=flip",
             "total_steps=5"]


def test_a_zero_validation_split_trains_on_every_image():
    train_idx, val_idx = split_train_val(50_000, 0, seed=42)
    assert len(val_idx) == 0 and np.array_equal(np.sort(train_idx), np.arange(50_000))
    with pytest.raises(ValueError, match="n_val=50000"):
        split_train_val(50_000, 50_000)


@pytest.mark.parametrize("overrides, key", [(["val_size=0"], "keep_best"),
                                            (["val_size=0", "keep_best=false", "val_per_class=10"], "val_per_class")])
def test_choosing_by_validation_without_a_validation_split_is_refused(overrides, key):
    with pytest.raises(ConfigError, match=f"smoke.yaml with overrides: key '{key}' needs a validation split"):
        load_config(SMOKE, overrides)


def test_a_run_without_validation_reports_no_val_numbers_and_chooses_nothing(tmp_path, data_dir):
    config = load_config(SMOKE, WHOLE_SET + [f"data_dir={data_dir}"])
    lines = []
    run = engine.train(config, tmp_path / "run", progress=False, log=lines.append)
    assert run.finished
    bundle = engine.build_data(config, torch.device("cpu"))
    assert bundle.val is None and len(bundle.train_eval.labels) == 200 and len(bundle.train) == 3
    # The history: no stand-in validation numbers, in memory or on disk.
    for rows in (run.metrics, engine.read_metrics(tmp_path / "run" / "metrics.csv")):
        assert [(r["epoch"], r["val_loss"], r["val_acc"]) for r in rows] == [(1, None, None), (2, None, None)]
        assert all(r["train_acc"] is not None for r in rows)
    assert sum("no validation split" in line for line in lines) == 2, lines
    # Nothing was chosen: last weights only, train and test only.
    assert "best" not in run.final and not (tmp_path / "run" / "best.pt").exists()
    assert set(run.final["last"]) == {"train", "test"} and set(run.final["without_tta"]) == {"test"}
    # The step budget: 3 + 2 optimizer steps, the schedule ending exactly there.
    state = load_checkpoint(tmp_path / "run" / "last.pt")
    assert state["scheduler"]["last_epoch"] == 5, "the scheduler counts one step per optimizer step"
    assert run.metrics[-1]["lr"] == pytest.approx(lr_at(4, 5, 0, config.lr, config.eta_min, config.schedule))
    assert run.metrics[-1]["lr"] == pytest.approx(config.eta_min)
    environment = json.loads((tmp_path / "run" / "environment.json").read_text())
    assert (environment["drop_last"], environment["steps_per_epoch"], environment["total_steps"]) == (True, 3, 5)
    # test.py re-evaluates it with its recorded TTA: final.json's test rows, and no validation row.
    overrides = [arg for item in WHOLE_SET for arg in ("--set", item)]
    evaluated = subprocess.run([sys.executable, "test.py", "--config", str(SMOKE), "--run-dir", str(tmp_path / "run"),
                                *overrides], cwd=REPO_ROOT, capture_output=True, text=True)
    assert evaluated.returncode == 0, evaluated.stderr
    with_tta = 100 * run.final["last"]["test"]["accuracy"]
    without_tta = 100 * run.final["without_tta"]["test"]["accuracy"]
    assert f"last epoch        test   {with_tta:9.2f}%" in evaluated.stdout, evaluated.stdout
    assert f"last, no TTA      test   {without_tta:9.2f}%" in evaluated.stdout, evaluated.stdout
    assert "the same table as final.json" in evaluated.stdout, evaluated.stdout
    assert " val " not in evaluated.stdout, evaluated.stdout


@pytest.mark.parametrize("total_steps", [3, 7])
def test_a_step_budget_outside_the_last_epoch_is_refused(tmp_path, data_dir, total_steps):
    config = load_config(SMOKE, WHOLE_SET[:-1] + [f"total_steps={total_steps}", f"data_dir={data_dir}"])
    with pytest.raises(ConfigError, match=rf"key 'total_steps' \({total_steps}\) must end within the last of "
                                          r"2 epochs of 3 steps: 4 to 6"):
        engine.train(config, tmp_path / "run", progress=False, log=lambda *a: None)
    assert not (tmp_path / "run").exists(), "a refused config writes nothing"


def test_fast_gpu_50k_runs_airbench94s_steps(data_dir):
    """All 50,000 images, batch 1,024, 48 full batches per epoch, ceil(9.9 x 48) = 476 steps."""
    config = load_config(REPO_ROOT / "configs" / "fast_gpu_50k.yaml", [f"data_dir={data_dir}"])
    assert (config.val_size, config.keep_best, config.batch_size, config.deterministic) == (0, False, 1024, False)
    bundle = engine.build_data(config, torch.device("cpu"))
    assert bundle.val is None and len(bundle.train.labels) == 50_000
    steps_per_epoch = len(bundle.train)
    assert steps_per_epoch == 48
    assert engine.run_steps(config, steps_per_epoch, 50_000) == math.ceil(9.9 * 48) == 476
