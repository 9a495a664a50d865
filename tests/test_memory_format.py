"""The memory format the engine picks by itself (``memory_format: auto``), and the crash it avoids."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from course_utils.repro import resolve_channels_last

REPO_ROOT = Path(__file__).resolve().parents[1]
CPU, CUDA = torch.device("cpu"), torch.device("cuda")


@pytest.mark.parametrize("device", [CPU, CUDA])
@pytest.mark.parametrize("width", [4, 8, 16, None])
def test_an_explicit_memory_format_is_obeyed(device, width):
    assert resolve_channels_last(device, "channels_last", width) is True
    assert resolve_channels_last(device, "contiguous", width) is False


def test_auto_is_channels_last_on_gpus_and_on_cpus_only_at_widths_divisible_by_16():
    assert all(resolve_channels_last(CUDA, "auto", w) for w in (2, 4, 8, 16, 64, None))
    assert [w for w in (2, 4, 8, 12, 16, 24, 32, 48, 64) if resolve_channels_last(CPU, "auto", w)] == [16, 32, 48, 64]
    assert resolve_channels_last(CPU, "auto", None) is False, "an unknown width on a CPU must get the safe NCHW"


def test_a_narrow_network_with_an_odd_batch_trains_on_cpu(tmp_path, data_dir):
    """Width 8 with batches of 33: the case whose NHWC projection backward crashes torch 2.14.1.

    A subprocess, so that a segfault fails this test instead of killing pytest.
    """
    run_dir = tmp_path / "narrow-odd-batch"
    overrides = ["width=8", "batch_size=33", "train_per_class=7", "val_per_class=5", "epochs=1", "warmup_epochs=0",
                 "device=cpu"]
    cmd = [sys.executable, "train.py", "--config", str(REPO_ROOT / "configs" / "smoke.yaml"), "--run-dir", str(run_dir),
           "--no-progress"] + [arg for o in overrides for arg in ("--set", o)]
    result = subprocess.run(cmd, cwd=REPO_ROOT, capture_output=True, text=True, timeout=300,
                            env={**os.environ, "COURSE_DATA_DIR": str(data_dir)})
    assert result.returncode == 0, f"training crashed (exit code {result.returncode}): {result.stderr[-2000:]}"
    environment = json.loads((run_dir / "environment.json").read_text())
    assert environment["channels_last"] is False and environment["steps_per_epoch"] == 3  # 33 + 33 + 4 images
    assert json.loads((run_dir / "final.json").read_text())["status"] == "finished"
