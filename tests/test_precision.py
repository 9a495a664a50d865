"""Precision on a CPU: fp32 by default, bf16 when asked (AMX CPUs train it faster), fp16 refused."""

from __future__ import annotations

import json
import math

import pytest
import torch

from course_utils.config import load_config
from course_utils.engine import load_run, train
from course_utils.profiles import CONFIG_DIR
from course_utils.repro import resolve_precision

CPU = torch.device("cpu")


def test_cpu_precision_choices():
    assert resolve_precision(CPU, "auto") == "fp32"
    assert resolve_precision(CPU, "bf16") == "bf16"
    with pytest.raises(ValueError, match="'fp16' needs a CUDA GPU"):
        resolve_precision(CPU, "fp16")


@pytest.mark.slow
def test_bf16_training_on_cpu_runs_and_records_its_precision(tmp_path, data_dir):
    overrides = ["precision=bf16", "epochs=1", "warmup_epochs=0", "train_per_class=20", "val_per_class=10",
                 "test_per_class=10", "width=8", f"data_dir={data_dir}"]
    config = load_config(CONFIG_DIR / "smoke.yaml", overrides)
    train(config, tmp_path / "run", progress=False)
    run = load_run(tmp_path / "run")
    environment = json.loads((tmp_path / "run" / "environment.json").read_text())
    assert environment["precision"] == "bf16"
    assert run.metrics and all(math.isfinite(row["train_loss"]) for row in run.metrics)
