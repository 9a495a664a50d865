"""Deterministic mode: which recipes ask for it, what ``set_deterministic`` switches, and cuBLAS's
workspace setting in place before any course code can touch the GPU. The GPU side itself (two runs,
same bits) is in tests/test_cuda.py."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.utils.deterministic

from course_utils import repro
from course_utils.config import load_config
from course_utils.engine import load_run, train

REPO_ROOT = Path(__file__).resolve().parents[1]
CONFIGS = REPO_ROOT / "configs"
SPEED_CONFIGS = ["fast.yaml", "fast_bf16.yaml", "fast_muon.yaml", "fast_laptop.yaml", "fast_laptop_30.yaml", "fast_gpu.yaml", "fast_gpu_50k.yaml", "full_fast.yaml",
                 "gpu.yaml"]
REPEATABLE_CONFIGS = ["config.yaml", "laptop.yaml", "smoke.yaml", "vit_sgd.yaml", "vit_adamw.yaml"]


@pytest.fixture
def restore_global_flags():
    """set_deterministic changes process-wide switches: put them back for the other tests."""
    saved = (torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark,
             torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled(),
             torch.utils.deterministic.fill_uninitialized_memory)
    yield
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = saved[:2]
    torch.use_deterministic_algorithms(saved[2], warn_only=saved[3])
    torch.utils.deterministic.fill_uninitialized_memory = saved[4]


def test_every_config_file_is_classified():
    assert sorted(SPEED_CONFIGS + REPEATABLE_CONFIGS) == sorted(p.name for p in CONFIGS.glob("*.yaml")), \
        "a config was added or removed: say here whether it is a speed config or a repeatable one"


@pytest.mark.parametrize("name", SPEED_CONFIGS)
def test_speed_configs_turn_determinism_off(name):
    assert load_config(CONFIGS / name).deterministic is False, \
        f"{name} is a speed config: it should train with deterministic: false (cudnn.benchmark on)"


@pytest.mark.parametrize("name", REPEATABLE_CONFIGS)
def test_reference_recipe_and_small_profiles_stay_deterministic(name):
    assert load_config(CONFIGS / name).deterministic is True, f"{name} should keep deterministic: true"


def test_deterministic_mode_on_a_gpu_sets_every_switch(restore_global_flags):
    repro.set_deterministic(True, "cuda")  # the switches are process-wide: settable without a GPU
    assert torch.backends.cudnn.deterministic and not torch.backends.cudnn.benchmark
    assert torch.are_deterministic_algorithms_enabled() and torch.is_deterministic_algorithms_warn_only_enabled()
    assert torch.utils.deterministic.fill_uninitialized_memory is False, \
        "deterministic mode should not fill every torch.empty with NaN (a memory pass per allocation)"


def test_speed_mode_turns_on_autotuning_and_off_deterministic_algorithms(restore_global_flags):
    repro.set_deterministic(True, "cuda")
    repro.set_deterministic(False, "cuda")
    assert torch.backends.cudnn.benchmark and not torch.backends.cudnn.deterministic
    assert not torch.are_deterministic_algorithms_enabled()


def test_deterministic_mode_on_a_cpu_keeps_the_fast_onednn_kernels(restore_global_flags):
    repro.set_deterministic(True, "cpu")
    assert not torch.are_deterministic_algorithms_enabled(), \
        "on a CPU the deterministic-algorithms switch would swap oneDNN's convolutions for a slow reference path"


@pytest.mark.parametrize("exported", [None, ":16:8"])
def test_cublas_workspace_is_set_at_import_before_cuda_is_touched(exported):
    env = {k: v for k, v in os.environ.items() if k != "CUBLAS_WORKSPACE_CONFIG"}
    if exported:
        env["CUBLAS_WORKSPACE_CONFIG"] = exported
    probe = ("import os, torch; import course_utils.engine; "
             "print(os.environ.get('CUBLAS_WORKSPACE_CONFIG'), torch.cuda.is_initialized())")
    result = subprocess.run([sys.executable, "-c", probe], cwd=REPO_ROOT, env=env, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    value, cuda_initialized = result.stdout.split()
    assert value == (exported or repro.CUBLAS_WORKSPACE), \
        f"importing the engine should set CUBLAS_WORKSPACE_CONFIG (keeping an exported one), got {value}"
    assert cuda_initialized == "False", "importing the engine should not initialize CUDA (and with it cuBLAS)"


def test_a_late_import_warns_that_cublas_may_not_be_deterministic(monkeypatch, restore_global_flags):
    monkeypatch.setattr(repro, "CUDA_IN_USE_BEFORE_IMPORT", True)
    with pytest.warns(UserWarning, match="CUBLAS_WORKSPACE_CONFIG"):
        repro.set_deterministic(True, "cuda")


@pytest.mark.parametrize("run, config_file", [("fast-seed0", "fast.yaml"), ("fast-seed1", "fast.yaml"),
                                              ("fast-bf16-seed0", "fast_bf16.yaml"),
                                              ("fast-bf16-seed1", "fast_bf16.yaml")])
def test_committed_fast_runs_are_found_again_under_the_speed_setting(tmp_path, run, config_file):
    """They trained with deterministic: true (no effect on a CPU); it is a runtime key, so lesson 12
    loads them under the config's deterministic: false instead of refusing the run directory."""
    committed = REPO_ROOT / "experiments" / "laptop" / run
    shutil.copytree(committed, tmp_path / run)
    seed = int(run[-1])
    found = train(load_config(CONFIGS / config_file, [f"seed={seed}"]), tmp_path / run, progress=False,
                  log=lambda line: None)
    assert found.finished and found.final == load_run(committed).final, f"{run} should be loaded, not trained"
