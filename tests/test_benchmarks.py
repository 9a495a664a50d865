"""The speed benchmarks run, write the rows they promise, and their ratios are the measured ones.

No speed assertions: the targets are stated (and judged) by the benchmarks' own output. The
benchmarks run once, in ``--quick`` mode on the real offline CIFAR-10 copy, as ``make bench``
runs them (``python -m benchmarks.run`` from the repository root), with one torch thread to
stay light on a shared machine.
"""

from __future__ import annotations

import json
import os
import platform
import signal
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from course_utils.repro import resolve_channels_last

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:  # ``benchmarks`` is run from the repository root, not installed
    sys.path.insert(0, str(REPO_ROOT))

REL = 1e-9  # ratios are computed from the same floats that the JSON holds


STEPS = ("nvidia_smi", "cuda_tests", "input_pipeline", "training", "precision", "time_to_accuracy", "peer",
         "gpu_epoch")
BENCHMARKS = ("input_pipeline", "training", "precision", "time_to_accuracy", "peer", "gpu_epoch")
DRY_RUN = {"GPU_CHECK_DEVICE": "cpu", "GPU_CHECK_QUICK": "1", "OMP_NUM_THREADS": "1", "PYTHON": sys.executable,
           # the check's limits are sized for a GPU; a dry run on a loaded 2-core CPU gets more time
           "GPU_CHECK_LIMITS": ",".join(f"{name}=300" for name in STEPS)}


def gpu_check(out: Path, data_dir=None, **settings) -> subprocess.CompletedProcess:
    """``benchmarks/gpu_check.sh out`` on the CPU, with COURSE_DATA_DIR exported only if ``data_dir`` is given."""
    env = {k: v for k, v in os.environ.items() if k != "COURSE_DATA_DIR"} | DRY_RUN | settings
    if data_dir is not None:
        env["COURSE_DATA_DIR"] = str(data_dir)
    return subprocess.run(["bash", "benchmarks/gpu_check.sh", str(out)], cwd=REPO_ROOT, capture_output=True,
                          text=True, timeout=1200, env=env)


def summary_statuses(out: Path) -> dict[str, str]:
    """``{step: status}`` from the table of ``summary.txt``."""
    lines = (out / "summary.txt").read_text().splitlines()
    return {line.split()[0]: " ".join(line.split()[1:-2]) for line in lines if line.split()[:1] and line.split()[0] in STEPS}


def rule_data_dir() -> Path:
    """Where the check (like conftest.py) looks when COURSE_DATA_DIR is not exported."""
    shared = REPO_ROOT.parent / "shared" / "data"
    return shared if (shared / "cifar10.npz").is_file() else REPO_ROOT / "data"


@pytest.fixture(scope="module")
def bench(tmp_path_factory, data_dir):
    """The GPU check's CPU dry run as a fresh GPU machine would start it: COURSE_DATA_DIR not exported,
    every step quick, and its first step failing on purpose. Returns the steps' output and the
    benchmarks' JSON payloads."""
    if not (rule_data_dir() / "cifar10.npz").is_file():
        pytest.fail(f"the dry run leaves COURSE_DATA_DIR unset, so it needs the offline copy in {rule_data_dir()}")
    out = tmp_path_factory.mktemp("gpu-check")
    result = gpu_check(out, GPU_CHECK_FAIL_STEP="nvidia_smi")
    assert result.returncode == 1, f"one failed step should make the check fail:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    summary = (out / "summary.txt").read_text()
    found = re.search(r"^data: (\S+) \(from ", summary, re.M)
    # The same file as the tests use (the clone's ../shared may be a symlink, so compare resolved paths).
    assert found and Path(found.group(1)).resolve() == (rule_data_dir() / "cifar10.npz").resolve(), \
        f"without COURSE_DATA_DIR the check should find the data where the tests do:\n{summary}"
    statuses = summary_statuses(out)
    assert statuses == {"nvidia_smi": "FAILED (exit 3)", **{name: "ok" for name in STEPS[1:]}}, \
        f"the forced failure should be recorded and every later step run:\n{summary}"
    assert summary.splitlines()[-1].startswith("all steps ended: 1 of 8 steps not ok"), summary
    assert "== summary" in result.stdout, f"the check should print its summary last:\n{result.stdout[-2000:]}"
    printed_last = result.stdout[result.stdout.rindex("== summary"):].splitlines()[1:]
    assert printed_last == summary.splitlines(), f"the summary should end the check's output:\n{result.stdout[-2000:]}"
    assert "skipped" in (out / "cuda_tests.txt").read_text(), "without CUDA the CUDA tests should say they skipped"
    payloads = {}
    for name in BENCHMARKS:
        path = out / f"{name}.json"
        assert path.is_file(), f"{name} wrote no {path.name} into OUT_DIR"
        payloads[name] = json.loads(path.read_text())
    return "\n".join((out / f"{name}.txt").read_text() for name in BENCHMARKS), payloads


def test_gpu_check_without_data_runs_what_needs_none_and_records_a_timeout(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    result = gpu_check(tmp_path / "out", data_dir=empty, GPU_CHECK_LIMITS="gpu_epoch=1")
    assert result.returncode == 1
    errors = [line for line in result.stderr.splitlines() if line.startswith("gpu check:")]
    assert len(errors) == 1 and f"no cifar10.npz in {empty}" in errors[0] and "COURSE_DATA_DIR" in errors[0], \
        f"a missing data folder should be one line naming it and COURSE_DATA_DIR:\n{result.stderr}"
    statuses = summary_statuses(tmp_path / "out")
    assert statuses == {"nvidia_smi": "ok", **{name: "SKIPPED: no data (set COURSE_DATA_DIR)" for name in STEPS[1:7]},
                        "gpu_epoch": "TIMED OUT after 1 s"}, statuses


def test_an_interrupted_gpu_check_still_writes_its_summary(tmp_path):
    env = {k: v for k, v in os.environ.items()} | DRY_RUN
    check = subprocess.Popen(["bash", "benchmarks/gpu_check.sh", str(tmp_path)], cwd=REPO_ROOT, env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    for line in check.stdout:  # stop it while its second step runs
        if line.startswith("== cuda_tests"):
            check.send_signal(signal.SIGTERM)
            break
    check.stdout.read()
    assert check.wait(timeout=60) != 0
    statuses = summary_statuses(tmp_path)
    assert statuses["nvidia_smi"] == "ok" and statuses["cuda_tests"].startswith("INTERRUPTED"), statuses
    assert all(statuses[name] == "not run (check interrupted)" for name in STEPS[2:]), statuses
    assert (tmp_path / "summary.txt").read_text().splitlines()[-1].startswith("INTERRUPTED: 7 of 8 steps not ok")


@pytest.mark.parametrize("settings, problem", [({"GPU_CHECK_LIMITS": "warp=5"}, "GPU_CHECK_LIMITS entry 'warp=5'"),
                                               ({"GPU_CHECK_LIMITS": "training=soon"}, "'training=soon'"),
                                               ({"GPU_CHECK_FAIL_STEP": "warp"}, "GPU_CHECK_FAIL_STEP 'warp'")])
def test_gpu_check_settings_are_checked_before_anything_runs(tmp_path, settings, problem):
    result = gpu_check(tmp_path / "out", **settings)
    assert result.returncode == 2 and problem in result.stderr and len(result.stderr.splitlines()) == 1, result.stderr
    assert not (tmp_path / "out").exists(), "bad settings should stop the check before it starts"


def by_name(payload: dict) -> dict[str, dict]:
    return {row["name"]: row for row in payload["rows"]}


def test_header_names_the_machine_the_data_and_the_device(bench):
    stdout, payloads = bench
    assert "machine: CPU " in stdout and "torch " in stdout, "the header should name the CPU and torch version"
    assert "data: cifar10.npz" in stdout and "JPEG-degraded" in stdout, \
        "the header should say the data is the offline CIFAR-10 copy and that it is JPEG-degraded"
    assert "not a GPU" in stdout, "a run on a CPU should say that the device is not a GPU"
    for name, payload in payloads.items():
        assert payload["machine"]["torch"] and payload["machine"]["device_name"], f"{name}: machine missing"
        assert payload["quick"] is True and payload["baseline"] in by_name(payload), \
            f"{name}: the baseline should be one of its own rows"


def test_input_pipeline_rows_and_ratios(bench):
    stdout, payloads = bench
    p = payloads["input_pipeline"]
    rows = by_name(p)
    assert set(rows) == {"course BatchIterator (cpu)", "torchvision DataLoader, num_workers=0",
                         "torchvision DataLoader, num_workers=2"}, f"unexpected rows {sorted(rows)}"
    assert p["images"] == 40_000 and p["batch_size"] == 128, "the 40k train split at batch 128"
    for name, row in rows.items():
        assert row["images_per_s"] > 0, f"{name}: non-positive throughput {row['images_per_s']}"
        assert len(row["windows_images_per_s"]) == p["steps"]["repeats"], f"{name}: one number per window"
    torchvision = [r for r in rows.values() if r["pipeline"] == "torchvision"]
    best = max(torchvision, key=lambda r: r["images_per_s"])
    assert p["baseline"] == best["name"] and p["best_torchvision_workers"] == best["num_workers"], \
        "the baseline should be the faster torchvision setting"
    for name, row in rows.items():
        assert row["speedup_vs_baseline"] == pytest.approx(row["images_per_s"] / best["images_per_s"], rel=REL), name
    course = rows["course BatchIterator (cpu)"]
    assert p["course_vs_baseline"] == pytest.approx(course["images_per_s"] / best["images_per_s"], rel=REL)
    target = p["target"]
    assert target["minimum_ratio"] == 5.0 and target["measured_ratio"] == p["course_vs_baseline"]
    assert target["met"] == (target["measured_ratio"] >= 5.0)
    assert ">= 5x" in stdout, "the output should state the 5x target"


def test_training_rows_ablations_and_ratios(bench):
    stdout, payloads = bench
    p = payloads["training"]
    rows = by_name(p)
    assert p["reference_workers"] == payloads["input_pipeline"]["best_torchvision_workers"], \
        "the reference loop should use benchmark 1's better DataLoader setting"
    reference = rows[p["baseline"]]
    assert reference["loop"] == "tutorial" and reference["precision"] == "fp32" and not reference["channels_last"]
    effects = " | ".join(r["effect"] or "" for r in rows.values())
    for needed in ("data path", "channels_last vs contiguous", "bf16", "fp16", "torch.compile"):
        assert needed in effects, f"no ablation row for {needed!r}: {effects}"
    defaults = [r for r in rows.values() if r["course_default"]]
    assert len(defaults) == 1 and defaults[0]["name"] == p["course_default"], "exactly one course-default row"
    expected_format = resolve_channels_last(torch.device("cpu"), "auto", p["width"])
    assert defaults[0]["precision"] == "fp32" and defaults[0]["channels_last"] == expected_format, \
        "the course-default row should use what the engine picks on a CPU at this width (repro.resolve_*)"
    for name, row in rows.items():
        if row["skipped"]:  # bf16/fp16 need CUDA; compile on CPU needs --compile
            assert row["images_per_s"] is None and row["speedup_vs_reference"] is None, name
            continue
        assert row["images_per_s"] > 0, f"{name}: non-positive throughput"
        assert row["speedup_vs_reference"] == pytest.approx(row["images_per_s"] / reference["images_per_s"], rel=REL)
        if row["compared_to"]:
            other = rows[row["compared_to"]]
            assert row["speedup_vs_compared"] == pytest.approx(row["images_per_s"] / other["images_per_s"], rel=REL)
    skipped = {name for name, row in rows.items() if row["skipped"]}
    assert any("bf16" in n for n in skipped) and any("fp16" in n for n in skipped), "reduced precision is CUDA-only"
    assert any("compile" in n for n in skipped), "compile on CPU runs only with --compile"
    assert p["course_vs_baseline"] == defaults[0]["speedup_vs_reference"]
    assert p["target"]["minimum_ratio"] == 1.5 and p["target"]["met"] == (p["course_vs_baseline"] >= 1.5)
    assert ">= 1.5x" in stdout and "width 8" in stdout, "the output should state the target and the width"


def test_gpu_epoch_dry_run_extrapolates_consistently(bench):
    _, payloads = bench
    p = payloads["gpu_epoch"]
    assert p["device_is_gpu"] is False and "not a GPU" in p["device_note"]
    assert "random uint8" in p["data"] and p["epochs_projected"] == 200
    rows = by_name(p)
    reference = rows[p["baseline"]]
    measured = {name: row for name, row in rows.items() if not row["skipped"]}
    assert len(measured) >= 3, f"too few rows measured on CPU: {sorted(measured)}"
    for name, row in measured.items():
        assert row["train_images_per_s"] > 0 and row["val_images_per_s"] > 0, name
        epoch = 40_000 / row["train_images_per_s"] + 10_000 / row["val_images_per_s"]
        assert row["epoch_seconds"] == pytest.approx(epoch, rel=REL), f"{name}: epoch seconds not extrapolated"
        hours = (200 * row["epoch_seconds"] + row["warmup_seconds"]) / 3600
        assert row["projected_200_epochs_hours"] == pytest.approx(hours, rel=REL), name
        # For seconds a speed-up is baseline seconds / row seconds.
        assert row["speedup_vs_reference"] == pytest.approx(reference["epoch_seconds"] / row["epoch_seconds"], rel=REL)
        if row["compared_to"] in measured:
            other = measured[row["compared_to"]]
            assert row["speedup_vs_compared"] == pytest.approx(other["epoch_seconds"] / row["epoch_seconds"], rel=REL)
    for name, row in rows.items():
        if row["skipped"]:
            assert row["epoch_seconds"] is None and row["projected_200_epochs_hours"] is None, name
    effects = " | ".join(r["effect"] or "" for r in rows.values())
    for needed in ("channels_last", "bf16", "fp16", "torch.compile", "deterministic"):
        assert needed in effects, f"gpu_epoch has no on/off row for {needed!r}"


def test_cli_rejects_unknown_benchmarks_and_runs_dependencies_first():
    from benchmarks.run import parse_args

    args = parse_args(["--device", "cpu", "--only", "training"])
    assert args.only == ["input_pipeline", "training"], \
        "training's baseline needs input_pipeline's better worker setting, so it should run first"
    assert parse_args(["--device", "cpu", "--only", "training", "--ref-workers", "0"]).only == ["training"]
    assert parse_args(["--device", "cpu"]).only == ["input_pipeline", "training", "precision", "compile",
                                                    "malloc", "time_to_accuracy", "laptop_track"], \
        "gpu_epoch only on cuda by default"
    assert parse_args(["--device", "cpu", "--only", "gpu"]).only == ["gpu_epoch"]
    with pytest.raises(SystemExit):
        parse_args(["--only", "everything"])


def test_every_benchmark_says_how_much_other_processes_loaded_the_cpu(bench):
    stdout, payloads = bench
    for name, payload in payloads.items():
        share = payload["other_processes_cpu_share"]
        assert share is None or 0.0 <= share <= 1.0, f"{name}: foreign CPU share {share} is not a fraction"
        assert payload["unreliable_because"] is None or isinstance(payload["unreliable_because"], str)
    assert stdout.count("other processes' share of the CPU meanwhile") == len(payloads)


def test_paired_round_ratios_are_printed_with_every_ratio(bench):
    _, payloads = bench
    pipeline = payloads["input_pipeline"]
    course, baseline = by_name(pipeline)[pipeline["rows"][0]["name"]], by_name(pipeline)[pipeline["baseline"]]
    expected = [a / b for a, b in zip(course["windows_images_per_s"], baseline["windows_images_per_s"])]
    assert course["round_ratios_vs_baseline"] == pytest.approx(expected, rel=REL)
    training = payloads["training"]
    assert training["ratio_rounds"] == by_name(training)[training["course_default"]]["round_ratios_vs_reference"]


def test_load_verdict_names_each_reason():
    from benchmarks.common import load_verdict

    assert load_verdict(0.02, [1.50, 1.55, 1.52]) is None, "an idle machine with steady rounds is reliable"
    assert "other processes used 40%" in load_verdict(0.40, [1.5, 1.5])
    assert "spread 2.00x" in load_verdict(0.0, [1.0, 2.0])
    assert load_verdict(None, None) is None


def test_precision_row_compares_bf16_with_fp32(bench):
    stdout, payloads = bench
    payload = payloads["precision"]
    rows = by_name(payload)
    assert payload["bf16_vs_fp32"] == pytest.approx(
        rows["bf16 autocast"]["images_per_s"] / rows["fp32"]["images_per_s"], rel=REL)
    assert payload["engine_auto_precision"] == "fp32", "the engine trains in fp32 on CPUs"
    assert ("slower here" in payload["verdict"]) == (payload["bf16_vs_fp32"] < 1)
    assert "bf16 / fp32:" in stdout


def test_compile_row_compares_compiled_steps_with_eager_on_the_same_batches(tmp_path, data_dir):
    from benchmarks.run import main

    assert main(["--device", "cpu", "--only", "compile", "--quick", "--out", str(tmp_path),
                 "--data-dir", str(data_dir)]) == 0
    payload = json.loads((tmp_path / "compile.json").read_text())
    rows = by_name(payload)
    assert set(rows) == {"eager", "torch.compile (eager backend)"} and payload["baseline"] == "eager"
    assert payload["compiled_vs_eager"] == pytest.approx(
        rows["torch.compile (eager backend)"]["images_per_s"] / rows["eager"]["images_per_s"], rel=REL)
    assert payload["run_steps"] == 18 * 800, "fast.yaml's 18 epochs of the 40k split at the quick batch of 50"
    assert ("saves" in payload["verdict"]) == (payload["run_seconds_saved"] > 0)
    assert payload["machine"]["device_name"] and payload["data_source"] == "cifar10.npz"


def test_time_to_accuracy_trains_both_recipes_and_ratios_only_what_both_reached(bench):
    stdout, payloads = bench
    payload = payloads["time_to_accuracy"]
    rows = by_name(payload)
    assert set(rows) == {"laptop ResNet-18", "fast recipe"}
    for name, history in payload["history"].items():
        seconds = [h["seconds"] for h in history]
        assert seconds == sorted(seconds) and len(history) == rows[name]["epochs_run"] == 2, name
    for key, ratio in payload["ratios"].items():
        base, fast = rows["laptop ResNet-18"][key], rows["fast recipe"][key]
        if base is None or fast is None:
            assert ratio is None and "no ratio" in stdout
        else:
            assert ratio == pytest.approx(base / fast, rel=REL)
    match, baseline = payload["match"], payload["history"]["laptop ResNet-18"]
    assert match["val_acc"] == max(h["val_acc"] for h in baseline)
    assert "best validation accuracy" in stdout


def test_time_to_match_compares_when_each_recipe_first_reaches_the_baselines_best():
    from benchmarks.time_to_accuracy import time_to_match

    baseline = [{"seconds": 60, "val_acc": 0.70}, {"seconds": 120, "val_acc": 0.84}, {"seconds": 180, "val_acc": 0.83}]
    faster = [{"seconds": 50, "val_acc": 0.80}, {"seconds": 100, "val_acc": 0.85}]
    match = time_to_match(baseline, faster)
    assert match["val_acc"] == 0.84 and match["baseline_minutes"] == 2.0, "the baseline's best, when it first got there"
    assert match["other_minutes"] == pytest.approx(100 / 60) and match["ratio"] == pytest.approx(1.2)
    never = time_to_match(baseline, [{"seconds": 10, "val_acc": 0.83}])
    assert never["other_minutes"] is None and never["ratio"] is None


def test_timed_command_records_the_wall_time_and_exit_code_of_a_command(tmp_path):
    run_dir = tmp_path / "run"
    command = [sys.executable, "-c", "import time, sys; time.sleep(0.3); sys.exit(3)"]
    result = subprocess.run([sys.executable, "-m", "benchmarks.timed_command", str(run_dir), "--", *command],
                            cwd=REPO_ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 3, "the command's exit code must pass through"
    record = json.loads((run_dir / "wall_clock.json").read_text())
    assert record["exit_code"] == 3 and record["wall_seconds"] >= 0.3, record
    assert record["command"].endswith("sys.exit(3)'"), record["command"]
    assert record["other_processes_cpu_share"] is None or 0 <= record["other_processes_cpu_share"] <= 1


def test_timed_command_without_a_command_says_how_to_use_it_and_writes_nothing(tmp_path):
    result = subprocess.run([sys.executable, "-m", "benchmarks.timed_command", str(tmp_path / "run")],
                            cwd=REPO_ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "usage:" in result.stderr
    assert not (tmp_path / "run").exists()


def test_the_peer_step_writes_airbenchs_files_and_runs_ours_beside_it(bench):
    """On a CPU the peer cannot train (train94 needs CUDA) and without the package it cannot be
    imported: either way one line says why, and fast_gpu_50k.yaml still trains (CI-sized)."""
    stdout, payloads = bench
    payload = payloads["peer"]
    skipped = [line for line in stdout.splitlines() if line.startswith("peer: SKIPPED: ")]
    assert len(skipped) == 1 and ("airbench not importable" in skipped[0] or "train94 needs CUDA" in skipped[0]), \
        skipped
    ours = [run for run in payload["runs"] if run["name"] == "course, fast_gpu_50k.yaml"]
    assert [run["seed"] for run in ours] == [0, 1] and all(0 <= run["test_acc"] <= 1 for run in ours)
    rows = by_name(payload)
    assert rows["course, fast_gpu_50k.yaml"]["seconds"] == pytest.approx(ours[1]["seconds"], rel=REL), \
        "with two seeds the mean seconds leave out the first (cold) run"
    assert rows[payload["baseline"]]["seeds"] == 0 and rows[payload["baseline"]]["skipped"] == payload["peer_skipped"]
    assert payload["comparison"] is None, "no comparison without the peer's numbers"


def test_peer_files_hold_the_offline_copy_in_airbenchs_format(tmp_path, cifar10, data_dir):
    from benchmarks.peer import write_peer_files

    written = write_peer_files(tmp_path, data_dir, limit=(300, 200))
    assert (written["train_images"], written["test_images"]) == (300, 200)
    for split, (images, labels) in (("train", (cifar10.x_train, cifar10.y_train)),
                                    ("test", (cifar10.x_test, cifar10.y_test))):
        saved = torch.load(tmp_path / "cifar10" / f"{split}.pt", weights_only=True)
        assert set(saved) == {"images", "labels", "classes"} and saved["classes"] == list(cifar10.classes)
        assert saved["images"].dtype == torch.uint8 and saved["images"].shape[1:] == (32, 32, 3), \
            "airbench's loader permutes NHWC uint8 images itself"
        n = len(saved["labels"])
        assert torch.equal(saved["images"], torch.from_numpy(images[:n]))
        assert saved["labels"].dtype == torch.int64 and torch.equal(saved["labels"], torch.from_numpy(labels[:n]).long())


def test_laptop_track_row_trains_the_config_once_and_judges_the_target_on_test(tmp_path, data_dir):
    """``--only laptop_track --quick``: one tiny run of configs/fast_laptop.yaml on all training images (no
    validation split); the row's minutes are its epochs' and the target is judged on its final test accuracy."""
    from course_utils.allocator import OPT_OUT, TUNABLES

    env = {k: v for k, v in os.environ.items() if k not in ("GLIBC_TUNABLES", OPT_OUT)}
    result = subprocess.run([sys.executable, "-m", "benchmarks.run", "--device", "cpu", "--only", "laptop", "--quick",
                             "--threads", "1", "--out", str(tmp_path), "--data-dir", str(data_dir)],
                            cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    payload = json.loads((tmp_path / "laptop_track.json").read_text())
    (row,) = payload["rows"]
    run_dir = tmp_path / "laptop_track" / "run"
    metrics = (run_dir / "metrics.csv").read_text().splitlines()
    seconds = [float(line.split(",")[6]) for line in metrics[1:]]
    assert row["epochs"] == len(seconds) == 2 and row["train_minutes"] == pytest.approx(sum(seconds) / 60, rel=REL)
    final = json.loads((run_dir / "final.json").read_text())
    assert row["test_acc_tta"] == final["last"]["test"]["accuracy"] and "val" not in final["last"], \
        "all training images: the run has no validation split"
    reached = row["test_acc_tta"] >= payload["target_test_acc"]
    assert (row["minutes_to_target"] is not None) == reached
    assert payload["target"]["met"] == (reached and row["train_minutes"] <= payload["target_minutes"])
    assert "min to 89.5%" in result.stdout and payload["machine"]["device_name"] in result.stdout
    if platform.libc_ver()[0] == "glibc":
        assert payload["machine"]["glibc_tunables"] == TUNABLES and TUNABLES in result.stdout, \
            "the benchmarks should train with the allocator setting train.py uses, and say so"


def test_malloc_row_times_both_allocators_in_fresh_processes(tmp_path):
    result = subprocess.run([sys.executable, "-m", "benchmarks.run", "--device", "cpu", "--only", "malloc", "--quick",
                             "--out", str(tmp_path)], cwd=REPO_ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    payload = json.loads((tmp_path / "malloc.json").read_text())
    rows = by_name(payload)
    from course_utils.allocator import TUNABLES
    assert rows["glibc default"]["glibc_tunables"] is None and rows["kept memory (train.py)"]["glibc_tunables"] == TUNABLES
    assert payload["speedup"] == pytest.approx(rows["glibc default"]["seconds_per_step"]
                                               / rows["kept memory (train.py)"]["seconds_per_step"], rel=REL)
    assert len(payload["ratio_rounds"]) == 1 and "faster per step than glibc default" in result.stdout
