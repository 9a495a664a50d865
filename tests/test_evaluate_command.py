"""``test.py`` re-evaluates a run as the run itself did at its end: with its recorded test-time
augmentation and precision, printing the table of its ``final.json``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from course_utils.cli import evaluation_setup
from course_utils.config import load_config
from course_utils.engine import format_final

REPO_ROOT = Path(__file__).resolve().parents[1]
FAST = REPO_ROOT / "configs" / "fast.yaml"
# The fast recipe (6-view TTA) at smoke size: 200 training images, 2 epochs, seconds on a CPU; in bf16, so
# that an evaluation in the default fp32 would print other numbers.
TINY_FAST = ["train_per_class=20", "val_per_class=10", "test_per_class=10", "epochs=2", "warmup_epochs=1",
             "batch_size=50", "width=8", "precision=bf16"]


def test_test_py_prints_a_fast_runs_final_table_with_its_tta_and_precision(tmp_path, data_dir):
    run_dir = tmp_path / "fast"
    overrides = [arg for item in TINY_FAST for arg in ("--set", item)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # the same threads for training and re-evaluation
    trained = subprocess.run([sys.executable, "train.py", "--config", str(FAST), "--run-dir", str(run_dir),
                              "--no-progress", *overrides], cwd=REPO_ROOT, capture_output=True, text=True, env=env)
    assert trained.returncode == 0, trained.stderr[-3000:]
    final = json.loads((run_dir / "final.json").read_text())
    assert final["tta"] == "flip_translate" and "without_tta" in final, "the fast recipe evaluates with 6-view TTA"
    assert json.loads((run_dir / "environment.json").read_text())["precision"] == "bf16"

    evaluated = subprocess.run([sys.executable, "test.py", "--config", str(FAST), "--run-dir", str(run_dir)],
                               cwd=REPO_ROOT, capture_output=True, text=True, env=env)
    assert evaluated.returncode == 0, evaluated.stderr[-3000:]
    assert f"{run_dir} (cifar10.npz, cpu, bf16)" in evaluated.stdout, evaluated.stdout
    assert format_final(final) in evaluated.stdout, \
        f"test.py should print final.json's table:\n{format_final(final)}\ngot:\n{evaluated.stdout}"
    assert "the same table as final.json" in evaluated.stdout


def test_a_run_evaluated_on_another_device_type_says_its_numbers_may_differ():
    config = load_config(REPO_ROOT / "configs" / "config.yaml")  # precision: auto
    device, precision, note = evaluation_setup({"device": "cuda:0", "precision": "bf16"}, config, "cpu")
    assert (device.type, precision) == ("cpu", "fp32"), "auto on a CPU is fp32"
    assert "trained on cuda in bf16" in note and "may differ from final.json" in note
    device, precision, note = evaluation_setup({"device": "cpu", "precision": "bf16"}, config, None)
    assert (device.type, precision, note) == ("cpu", "bf16", None), "by default: the run's device and precision"
