"""train.py re-executes itself with glibc's allocator keeping freed memory (course_utils/allocator.py):
the setting takes effect, it can be turned off, and training is the same bit for bit."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from pathlib import Path

import pytest

from course_utils.allocator import OPT_OUT, TUNABLES, should_keep_freed_memory

REPO_ROOT = Path(__file__).resolve().parents[1]
SMOKE = REPO_ROOT / "configs" / "smoke.yaml"
GLIBC = platform.libc_ver()[0] == "glibc"

# Training steps of the fast net at batch 200, whose largest activations (~50 MB) are above glibc's mmap
# threshold: the fewest page faults of a step after the first (which maps the memory in any case).
REFAULT_SCRIPT = """
import os, resource, torch
from course_utils.allocator import keep_freed_memory
keep_freed_memory()
from course_utils.models import create_model
faults = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_minflt
torch.manual_seed(0)
model = create_model("fastnet", width=64, init="dirac")
x, y = torch.randn(200, 3, 32, 32), torch.randint(0, 10, (200,))
per_step = []
for step in range(5):
    before = faults()
    torch.nn.functional.cross_entropy(model(x), y).backward()
    per_step.append(faults() - before)
print(os.environ.get("GLIBC_TUNABLES"), min(per_step[1:]))
"""
LARGEST_ACTIVATION_PAGES = 200 * 64 * 31 * 31 * 4 // 4096  # the first conv's output: ~12,000 pages


def clean_env(**extra) -> dict:
    return {k: v for k, v in os.environ.items() if k not in ("GLIBC_TUNABLES", OPT_OUT)} | extra


def test_the_decision_respects_an_opt_out_and_tunables_already_set():
    assert should_keep_freed_memory({}) == GLIBC
    assert not should_keep_freed_memory({OPT_OUT: "0"})
    assert not should_keep_freed_memory({"GLIBC_TUNABLES": "glibc.malloc.arena_max=2"})
    assert should_keep_freed_memory({OPT_OUT: "1"}) == GLIBC


@pytest.mark.skipif(not GLIBC, reason="glibc's tunables exist only on glibc systems")
@pytest.mark.parametrize("opt_out", [False, True])
def test_the_reexecuted_process_reuses_freed_activations_without_page_faults(opt_out):
    env = clean_env(**({OPT_OUT: "0"} if opt_out else {}))
    result = subprocess.run([sys.executable, "-c", REFAULT_SCRIPT], cwd=REPO_ROOT, env=env, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    tunables, faults = result.stdout.split()
    if opt_out:
        assert tunables == "None" and int(faults) > LARGEST_ACTIVATION_PAGES, \
            f"glibc's default maps fresh pages for every large activation: {faults} faults in its best step"
    else:
        assert tunables == TUNABLES and int(faults) < LARGEST_ACTIVATION_PAGES // 10, \
            f"freed activations should be reused from the heap, not faulted in again: {faults} faults in its best step"


@pytest.mark.slow
@pytest.mark.skipif(not GLIBC, reason="glibc's tunables exist only on glibc systems")
def test_train_py_trains_the_same_bits_with_and_without_the_allocator_setting(tmp_path, data_dir):
    finals = {}
    for opt_out in (False, True):
        run_dir = tmp_path / f"opt-out-{opt_out}"
        env = clean_env(COURSE_DATA_DIR=str(data_dir), **({OPT_OUT: "0"} if opt_out else {}))
        result = subprocess.run([sys.executable, "train.py", "--config", str(SMOKE), "--run-dir", str(run_dir),
                                 "--no-progress", "--set", "epochs=2", "--set", "train_per_class=20"],
                                cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, result.stderr[-2000:]
        finals[opt_out] = json.loads((run_dir / "final.json").read_text())
    assert finals[False]["last"] == finals[True]["last"], "the allocator setting must not change a single number"
    assert finals[False]["rank_weight_digests"] == finals[True]["rank_weight_digests"]
