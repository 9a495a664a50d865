"""Hostile but fair input to ``train.py``: one run per directory, no NaN in a config, one line
(exit status 2) for every bad input, and an existing run directory left byte-identical."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from course_utils import data as data_lib
from course_utils.checkpoint import CheckpointError, load_checkpoint, save_atomically
from course_utils import cli
from course_utils.cli import train_main
from course_utils.config import ConfigError, load_config
from course_utils.engine import RunDirError, train
from course_utils.run_lock import LOCK_NAME

REPO_ROOT = Path(__file__).resolve().parents[1]
SMOKE = REPO_ROOT / "configs" / "smoke.yaml"
# 100 training images, width 4: an epoch takes well under a second on 2 CPU cores.
TINY = ["train_per_class=10", "val_per_class=5", "test_per_class=5", "width=4", "epochs=2",
        "warmup_epochs=0", "batch_size=50"]


def _args(run_dir: Path, *overrides: str, resume: bool = False) -> list[str]:
    sets = [arg for item in (*TINY, *overrides) for arg in ("--set", item)]
    return ["--config", str(SMOKE), "--run-dir", str(run_dir), "--no-progress", *sets] + (["--resume"] if resume else [])


def _files(run_dir: Path) -> dict[str, bytes]:
    """Every file of a run directory with its bytes (empty when the directory does not exist)."""
    if not run_dir.exists():
        return {}
    return {str(p.relative_to(run_dir)): p.read_bytes() for p in sorted(run_dir.rglob("*")) if p.is_file()}


def _refused(capsys, argv, main=train_main) -> str:
    """Run the command in this process; it must exit with status 2 and one line on stderr."""
    capsys.readouterr()
    status = main(argv)
    err = capsys.readouterr().err
    assert status == 2, f"exit status {status}, stderr: {err}"
    lines = err.strip().splitlines()
    assert len(lines) == 1, f"expected one line on stderr, got {len(lines)}:\n{err}"
    return lines[0]


@pytest.fixture
def precious_run_dir(tmp_path) -> Path:
    """A run directory that already holds something a bad command must not touch."""
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "metrics.csv").write_text("precious\n")
    return run_dir


@pytest.fixture(scope="module")
def stopped_run(tmp_path_factory, data_dir) -> Path:
    """A real run stopped after epoch 1 of 2: config.yaml, metrics.csv, last.pt, best.pt."""
    run_dir = tmp_path_factory.mktemp("stopped") / "run"
    train(load_config(SMOKE, TINY), run_dir, progress=False, log=lambda *a: None, stop_after_epochs=1)
    assert (run_dir / "last.pt").is_file() and not (run_dir / "final.json").exists()
    return run_dir


@pytest.fixture
def resumable(stopped_run, tmp_path) -> Path:
    copy = tmp_path / "run"
    shutil.copytree(stopped_run, copy)
    return copy


# --------------------------------------------------------------------------- 1. one run per directory


def test_two_runs_started_at_once_on_one_directory_one_stops_with_one_line(tmp_path, data_dir):
    """The same command in two terminals (or a notebook cell run twice): both used to train and exit 0."""
    run_dir = tmp_path / "run"
    cmd = [sys.executable, "train.py", *_args(run_dir, resume=True)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    procs = [subprocess.Popen(cmd, cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    outputs = [p.communicate(timeout=300) for p in procs]
    statuses = [p.returncode for p in procs]
    overlapped = not any("not training again" in out for out, _ in outputs)
    assert overlapped, "the second process started after the first had finished: no race to test"
    assert sorted(statuses) == [0, 2], f"exit statuses {statuses}: {[o[1][-2000:] for o in outputs]}"
    winner, loser = (0, 1) if statuses[0] == 0 else (1, 0)
    lines = outputs[loser][1].strip().splitlines()
    assert len(lines) == 1, outputs[loser][1]
    assert LOCK_NAME in lines[0] and f"process {procs[winner].pid}" in lines[0] and socket.gethostname() in lines[0], lines[0]
    assert "epoch" not in outputs[loser][0], "the second process trained"
    assert not (run_dir / LOCK_NAME).exists(), "the lock outlived its run"
    assert len((run_dir / "metrics.csv").read_text().splitlines()) == 1 + 2


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_a_stale_lock_of_a_dead_process_on_this_host_is_taken_over_with_a_line(resumable):
    (resumable / LOCK_NAME).write_text(f'{{"pid": {_dead_pid()}, "host": "{socket.gethostname()}", '
                                       '"started": "2026-01-01T00:00:00Z"}\n')
    lines = []
    run = train(load_config(SMOKE, TINY), resumable, progress=False, log=lines.append)
    assert run.finished
    assert any("taking over" in line and LOCK_NAME in line for line in lines), lines
    assert not (resumable / LOCK_NAME).exists()


def test_a_lock_from_another_host_is_not_taken_over(resumable, capsys):
    (resumable / LOCK_NAME).write_text('{"pid": 1, "host": "another-machine", "started": "2026-01-01T00:00:00Z"}\n')
    before = _files(resumable)
    line = _refused(capsys, _args(resumable, resume=True))
    assert "another-machine" in line and LOCK_NAME in line, line
    assert _files(resumable) == before


def test_a_lock_from_another_host_left_unrefreshed_is_taken_over(resumable):
    """A Colab disconnect leaves the lock on Drive, and the new machine has another host name."""
    lock = resumable / LOCK_NAME
    lock.write_text('{"pid": 1, "host": "a-vanished-colab-vm", "started": "2026-01-01T00:00:00Z"}\n')
    long_ago = time.time() - 10 * 60
    os.utime(lock, (long_ago, long_ago))
    lines = []
    assert train(load_config(SMOKE, TINY), resumable, progress=False, log=lines.append).finished
    assert any("a-vanished-colab-vm" in line and "unrefreshed" in line for line in lines), lines


def test_a_held_lock_is_refreshed_and_removed_on_release(tmp_path, monkeypatch):
    from course_utils import run_lock

    monkeypatch.setattr(run_lock, "HEARTBEAT_SECONDS", 0.05)
    with run_lock.holding(tmp_path / "run") as lock:
        os.utime(lock.path, (0, 0))
        time.sleep(0.5)
        assert time.time() - lock.path.stat().st_mtime < 5, "the holder stopped refreshing its lock"
        with pytest.raises(run_lock.RunDirBusy, match=f"process {os.getpid()}"):
            run_lock.RunLock(tmp_path / "run")
    assert not (tmp_path / "run").exists(), "an unused run directory was left behind"


def test_the_lock_is_removed_when_training_fails(tmp_path, data_dir):
    from course_utils.engine import TrainingDiverged

    with pytest.raises(TrainingDiverged):
        train(load_config(SMOKE, TINY + ["lr=1.0e+6", "eta_min=0.0"]), tmp_path / "run", progress=False,
              log=lambda *a: None)
    assert not (tmp_path / "run" / LOCK_NAME).exists(), "a failed run left its lock behind"


# --------------------------------------------------------------------------- 2. NaN and infinity


@pytest.mark.parametrize("override", ["lr=nan", "lr=inf", "lr=-inf", "weight_decay=nan", "label_smoothing=nan",
                                      "momentum=.nan", "eta_min=inf", "imbalance_ratio=nan", "norm_bias_lr_scale=inf"])
def test_nan_and_infinity_are_refused_before_anything_is_written(precious_run_dir, capsys, override):
    key = override.split("=")[0]
    before = _files(precious_run_dir)
    line = _refused(capsys, _args(precious_run_dir, override))
    assert f"key '{key}'" in line and "finite" in line, line
    assert _files(precious_run_dir) == before


def test_nan_in_a_config_file_is_refused(tmp_path):
    (tmp_path / "config.yaml").write_text((REPO_ROOT / "configs" / "config.yaml").read_text())
    (tmp_path / "mine.yaml").write_text("base: config.yaml\nlabel_smoothing: .nan\n")
    with pytest.raises(ConfigError, match=r"mine.yaml.*key 'label_smoothing' must be a finite number, got nan"):
        load_config(tmp_path / "mine.yaml")


# --------------------------------------------------------------------------- 3. device and precision


def test_cuda_on_a_machine_without_a_gpu_is_one_line(precious_run_dir, capsys, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    before = _files(precious_run_dir)
    line = _refused(capsys, _args(precious_run_dir, "device=cuda"))
    assert "'cuda'" in line and "no CUDA GPU" in line and "device=cpu" in line, line
    assert _files(precious_run_dir) == before


def test_a_gpu_index_this_machine_lacks_is_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    line = _refused(capsys, _args(tmp_path / "run", "device=cuda:3"))
    assert "'cuda:3'" in line and "1 CUDA GPU" in line and "cuda:0" in line, line
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("device", ["cuda:abc", "cuda:-1", "gpu", "cuda:0:1"])
def test_malformed_device_strings_fail_validation(tmp_path, capsys, device):
    line = _refused(capsys, _args(tmp_path / "run", f"device={device}"))
    assert "key 'device'" in line and "cuda:N" in line, line
    assert not (tmp_path / "run").exists()


def test_fp16_on_a_cpu_is_one_line(precious_run_dir, capsys):
    before = _files(precious_run_dir)
    line = _refused(capsys, _args(precious_run_dir, "device=cpu", "precision=fp16"))
    assert "fp16" in line and "CUDA GPU" in line and "bf16" in line, line
    assert _files(precious_run_dir) == before


def test_test_py_refuses_a_malformed_device_with_one_line(resumable, capsys):
    before = _files(resumable)
    line = _refused(capsys, ["--config", str(SMOKE), "--run-dir", str(resumable), "--device", "cuda:abc"], cli.test_main)
    assert "cuda:abc" in line, line
    assert _files(resumable) == before


# --------------------------------------------------------------------------- 4. base: cycles


def test_a_config_naming_itself_as_base_is_one_line(tmp_path, capsys):
    (tmp_path / "loop.yaml").write_text("base: loop.yaml\nlr: 0.05\n")
    line = _refused(capsys, ["--config", str(tmp_path / "loop.yaml"), "--run-dir", str(tmp_path / "run")])
    assert "loop.yaml -> loop.yaml" in line and "cycle" in line, line
    assert not (tmp_path / "run").exists()


def test_two_configs_naming_each_other_is_one_line(tmp_path):
    (tmp_path / "a.yaml").write_text("base: b.yaml\n")
    (tmp_path / "b.yaml").write_text("base: ./a.yaml\n")
    with pytest.raises(ConfigError) as err:
        load_config(tmp_path / "a.yaml")
    assert "a.yaml -> b.yaml -> a.yaml" in str(err.value) and "\n" not in str(err.value), str(err.value)


# --------------------------------------------------------------------------- 5. damaged run files


DAMAGE = {
    "garbage": b"this is not what train.py wrote\n\x01\x02",
    "binary": bytes(range(256)) * 4,
    "empty": b"",
}


@pytest.mark.parametrize("name, damage, expected", [
    ("metrics.csv", "garbage", "header"),
    ("metrics.csv", "binary", "not UTF-8 text"),
    ("metrics.csv", "empty", "header"),
    ("metrics.csv", "wrong header", "header"),
    ("metrics.csv", "bad value", "row 1"),
    ("final.json", "garbage", "not valid JSON"),
    ("final.json", "binary", "not UTF-8 text"),
    ("final.json", "wrong shape", "status"),
    ("config.yaml", "garbage", "not valid YAML"),
    ("config.yaml", "binary", "not UTF-8 text"),
    ("config.yaml", "wrong shape", "unknown key"),
])
def test_a_damaged_run_file_stops_resume_with_one_line_and_changes_nothing(resumable, capsys, name, damage, expected):
    path = resumable / name
    if damage in DAMAGE:
        path.write_bytes(DAMAGE[damage])
    elif damage == "wrong header":
        path.write_text("step,loss\n1,2.3\n")
    elif damage == "bad value":
        lines = path.read_text().splitlines()
        path.write_text(lines[0] + "\n" + lines[1].replace(lines[1].split(",")[2], "abc", 1) + "\n")
    elif name == "final.json":
        path.write_text('["finished"]\n')
    else:
        path.write_text("lr: 0.1\nlearning_rate: 0.2\n")
    before = _files(resumable)
    line = _refused(capsys, _args(resumable, resume=True))
    assert str(path) in line and expected in line, line
    assert _files(resumable) == before


# --------------------------------------------------------------------------- 6. smaller holes


def test_a_batch_larger_than_the_training_set_is_refused(tmp_path, capsys, data_dir):
    line = _refused(capsys, _args(tmp_path / "run", "batch_size=500"))
    assert "batch_size" in line and "500" in line and "100 training images" in line, line
    assert not (tmp_path / "run").exists(), "a refused run left a run directory behind"


def test_a_missing_data_dir_is_not_created_when_the_download_fails(tmp_path, monkeypatch):
    import urllib.error
    import urllib.request

    def no_network(*args, **kwargs):  # the network itself fails: torchvision has made its folders by then
        raise urllib.error.URLError("Temporary failure in name resolution")

    monkeypatch.setattr(urllib.request, "urlopen", no_network)
    missing = tmp_path / "typo" / "data"
    monkeypatch.setenv("COURSE_DATA_DIR", str(missing))
    with pytest.raises(data_lib.DataError, match="COURSE_DATA_DIR"):
        data_lib.load_cifar10()
    assert not (tmp_path / "typo").exists(), "a failed download created the data folder"


@pytest.mark.parametrize("kind", ["truncated", "empty", "garbage", "code-running pickle"])
def test_a_bad_checkpoint_is_one_short_line(tmp_path, kind):
    path = tmp_path / "last.pt"
    if kind == "truncated":
        save_atomically({"epoch": 1, "weights": torch.ones(1000)}, path)
        path.write_bytes(path.read_bytes()[:300])
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "garbage":
        path.write_bytes(b"\x00garbage")
    else:
        torch.save({"format": "course_utils.checkpoint/1", "obj": socket.socket}, path)
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(path)
    message = str(err.value)
    assert str(path) in message and "\n" not in message and len(message) < len(str(path)) + 120, message


def test_train_without_resume_says_what_it_does_with_the_last_pt_it_finds(resumable):
    before = _files(resumable)
    with pytest.raises(RunDirError) as err:
        train(load_config(SMOKE, TINY), resumable, resume=False, progress=False, log=lambda *a: None)
    message = str(err.value)
    assert "last.pt" in message and "epoch 1" in message and "resume" in message and "nothing" in message, message
    assert _files(resumable) == before
    (resumable / "config.yaml").unlink()  # a checkpoint alone is a run too
    before = _files(resumable)
    with pytest.raises(RunDirError, match="last.pt"):
        train(load_config(SMOKE, TINY), resumable, resume=False, progress=False, log=lambda *a: None)
    assert _files(resumable) == before


def test_a_finished_run_in_a_read_only_directory_is_still_returned(stopped_run, tmp_path, monkeypatch):
    """Skip-if-trained only reads: a finished run on a read-only disk needs no lock. (The tests run as
    root, which chmod cannot stop, so the refusal to create the lock is simulated.)"""
    run_dir = tmp_path / "run"
    shutil.copytree(stopped_run, run_dir)
    config = load_config(SMOKE, TINY)
    train(config, run_dir, progress=False, log=lambda *a: None)  # finish it
    real_open = os.open

    def read_only(path, flags, *args):
        if str(path).endswith(LOCK_NAME):
            raise PermissionError(13, "Permission denied")
        return real_open(path, flags, *args)

    monkeypatch.setattr(os, "open", read_only)
    before = _files(run_dir)
    assert train(config, run_dir, progress=False, log=lambda *a: None).finished
    assert _files(run_dir) == before
    (run_dir / "final.json").unlink()
    with pytest.raises(RunDirError, match="cannot write here"):
        train(config, run_dir, progress=False, log=lambda *a: None)
