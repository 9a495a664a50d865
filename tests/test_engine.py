"""The training engine: schedule, configs, a real smoke run, resume after a kill, divergence, DDP."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from course_utils.checkpoint import CheckpointError, load_checkpoint, save_atomically
from course_utils.config import ConfigError, TrainConfig, load_config
from course_utils.engine import TrainingDiverged, load_run, read_metrics, train
from course_utils.schedule import lr_at

REPO_ROOT = Path(__file__).resolve().parents[1]
SMOKE = REPO_ROOT / "configs" / "smoke.yaml"
# A tiny run for the mechanics tests (resume, DDP): seconds per epoch on 2 CPU cores.
TINY_OVERRIDES = ["train_per_class=40", "val_per_class=10", "width=8", "epochs=3",
                  "warmup_epochs=1", "batch_size=40"]
TIMING_COLUMNS = {"epoch_seconds", "images_per_s"}


# --------------------------------------------------------------------------- schedule


def test_reference_schedule_hits_its_landmarks():
    config = load_config(REPO_ROOT / "configs" / "config.yaml")
    steps_per_epoch = -(-40000 // config.batch_size)  # 313: the last batch holds 64 images
    total, warmup = steps_per_epoch * config.epochs, steps_per_epoch * config.warmup_epochs

    def lr(step):
        return lr_at(step, total, warmup, config.lr, config.eta_min)

    assert lr(0) == pytest.approx(0.1 / 1565), "the first step should be 1/1565 of the peak"
    assert lr(warmup - 1) == pytest.approx(0.1), "warmup should end exactly at lr 0.1"
    assert lr(warmup) == pytest.approx(0.1)
    halfway = warmup + (total - 1 - warmup) / 2
    assert halfway == int(halfway)
    assert lr(int(halfway)) == pytest.approx((0.1 + 1e-6) / 2), "half-way through the cosine"
    assert lr(total - 1) == pytest.approx(1e-6, abs=1e-12), "the last step of epoch 200 should be 1e-6"
    assert all(lr(s) >= lr(s + 1) for s in range(warmup, total - 1, 97)), "cosine should only decrease"


# --------------------------------------------------------------------------- configs


def test_reference_config_is_the_recipe():
    c = load_config(REPO_ROOT / "configs" / "config.yaml")
    assert (c.dataset, c.split_seed, c.val_size, c.augment, c.crop_padding) == ("cifar10", 42, 10000, True, 4)
    assert (c.model, c.norm, c.width, c.init) == ("resnet18", "batch", 64, "kaiming")
    assert (c.optimizer, c.lr, c.momentum, c.nesterov, c.weight_decay) == ("sgd", 0.1, 0.9, False, 5e-4)
    assert (c.batch_size, c.epochs, c.warmup_epochs, c.eta_min) == (128, 200, 5, 1e-6)
    assert (c.label_smoothing, c.deterministic) == (0.0, True)
    assert c == TrainConfig(), "configs/config.yaml and the dataclass defaults disagree"


@pytest.mark.parametrize("text, expected", [
    ("base: config.yaml\nlearning_rate: 0.1\n", "unknown key 'learning_rate'"),
    ("base: config.yaml\nepochs: 0\n", "key 'epochs' must be >= 1, got 0"),
    ("base: config.yaml\nbatch_size: 0\n", "key 'batch_size' must be >= 1, got 0"),
    ("base: config.yaml\nepochs: ten\n", "key 'epochs' must be a int, got 'ten'"),
    ("base: config.yaml\nlr: true\n", "key 'lr' must be a float, got True"),
    ("base: config.yaml\nmodel: resnet19\n", "key 'model' is 'resnet19', expected one of"),
    ("base: config.yaml\nnorm: layer\n", "key 'norm' is 'layer', expected one of batch, group"),
    ("base: config.yaml\noptimizer: adam\n", "key 'optimizer' is 'adam', expected one of sgd, adamw"),
    ("base: config.yaml\nlr: -0.1\n", "key 'lr' must be > 0"),
    ("base: config.yaml\nwarmup_fraction: 0.23\n", "keys 'warmup_fraction' (0.23) and 'warmup_epochs' (5) both"),
    ("base: config.yaml\nwarmup_epochs: 0\nwarmup_fraction: 1.5\n", "key 'warmup_fraction' must be > 0 and <= 1"),
    ("base: config.yaml\nfinal_lr_fraction: 0.07\n", "keys 'eta_min' (1e-06) and 'final_lr_fraction' (0.07)"),
    ("base: config.yaml\neta_min: null\n", "keys 'eta_min' (None) and 'final_lr_fraction' (None)"),
    ("base: config.yaml\nlookahead_sync: sometimes\n", "key 'lookahead_sync' is 'sometimes', expected one of"),
    ("base: config.yaml\nlookahead_sync: last_step\nlookahead_start_epoch: 3\n",
     "key 'lookahead_start_epoch' (3) must be 0 with lookahead_sync: last_step"),
    ("epochs: [1, 2\n", "not valid YAML"),
    ("- just\n- a list\n", "expected a mapping"),
])
def test_bad_configs_fail_with_one_line_naming_the_file_and_key(tmp_path, text, expected):
    (tmp_path / "config.yaml").write_text((REPO_ROOT / "configs" / "config.yaml").read_text())
    bad = tmp_path / "bad.yaml"
    bad.write_text(text)
    with pytest.raises(ConfigError) as err:
        load_config(bad)
    assert expected in str(err.value) and str(bad) in str(err.value), str(err.value)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("spelling", ["1e-3", "1E-3", "0.001", "1.0e-3", ".001"])
def test_floats_are_read_as_people_write_them(tmp_path, spelling):
    # PyYAML (YAML 1.1) reads `1e-3` as a string: the config accepts what float() accepts.
    assert load_config(SMOKE, [f"lr={spelling}"]).lr == pytest.approx(1e-3)
    (tmp_path / "config.yaml").write_text((REPO_ROOT / "configs" / "config.yaml").read_text())
    (tmp_path / "mine.yaml").write_text(f"base: config.yaml\nlr: {spelling}\nweight_decay: 5e-4\n")
    config = load_config(tmp_path / "mine.yaml")
    assert (config.lr, config.weight_decay) == (pytest.approx(1e-3), pytest.approx(5e-4))
    assert isinstance(config.lr, float)


def test_impossible_values_fail_with_one_line():
    with pytest.raises(ConfigError, match="key 'lr' must be a float, got 'fast'"):
        load_config(SMOKE, ["lr=fast"])
    with pytest.raises(ConfigError, match="key 'val_size' must be < 50000 .*got 60000") as err:
        load_config(SMOKE, ["val_size=60000"])
    assert "\n" not in str(err.value)


def test_bad_override_is_rejected():
    with pytest.raises(ConfigError, match="key 'epochs' must be >= 1"):
        load_config(SMOKE, ["epochs=0"])
    with pytest.raises(ConfigError, match="not of the form key=value"):
        load_config(SMOKE, ["epochs"])


def test_bad_config_on_the_command_line_writes_nothing_and_keeps_an_existing_run(tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "metrics.csv").write_text("precious\n")
    result = subprocess.run([sys.executable, "train.py", "--config", str(SMOKE), "--run-dir", str(run_dir),
                             "--set", "batch_size=0"], cwd=REPO_ROOT, capture_output=True, text=True)
    assert result.returncode == 2
    assert "key 'batch_size' must be >= 1, got 0" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert sorted(p.name for p in run_dir.iterdir()) == ["metrics.csv"]
    assert (run_dir / "metrics.csv").read_text() == "precious\n"


# --------------------------------------------------------------------------- checkpoints


def test_checkpoint_write_is_atomic(tmp_path, monkeypatch):
    path = tmp_path / "last.pt"
    save_atomically({"epoch": 1, "weights": torch.ones(3)}, path)
    real_save = torch.save

    def save_half_then_die(obj, f, *args, **kwargs):
        real_save({"format": "partial"}, f)
        raise KeyboardInterrupt  # killed while writing

    monkeypatch.setattr(torch, "save", save_half_then_die)
    with pytest.raises(KeyboardInterrupt):
        save_atomically({"epoch": 2, "weights": torch.zeros(3)}, path)
    monkeypatch.undo()
    state = load_checkpoint(path)
    assert state["epoch"] == 1 and torch.equal(state["weights"], torch.ones(3))
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"], "a temporary file was left behind"


class NotAWeight:  # a pickled object: weights_only loading must refuse it
    pass


@pytest.mark.parametrize("kind", ["truncated", "foreign pickle", "not ours", "garbage"])
def test_bad_checkpoints_give_a_clear_error(tmp_path, kind):
    path = tmp_path / "x.pt"
    if kind == "truncated":
        save_atomically({"epoch": 1, "weights": torch.ones(1000)}, path)
        path.write_bytes(path.read_bytes()[:300])
    elif kind == "foreign pickle":
        torch.save({"format": "course_utils.checkpoint/1", "obj": NotAWeight()}, path)
    elif kind == "not ours":
        torch.save({"state_dict": {}}, path)
    else:
        path.write_bytes(b"\x00garbage")
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(path)
    assert str(path) in str(err.value) and "\n" not in str(err.value)


# --------------------------------------------------------------------------- progress bars


def test_unattended_executions_get_text_progress_bars(monkeypatch, capsys):
    """A tqdm widget in a notebook run by papermill shows nothing live and leaves its state in the
    saved notebook's metadata; with $COURSE_PROGRESS=text the bar is one text line per epoch."""
    from tqdm.notebook import tqdm as notebook_tqdm

    from course_utils.engine import _progress, progress_style

    monkeypatch.delenv("COURSE_PROGRESS", raising=False)
    assert progress_style(False) is None and progress_style(True) == "auto" and progress_style("text") == "text"
    monkeypatch.setenv("COURSE_PROGRESS", "text")
    assert progress_style(True) == "text", "the runner's COURSE_PROGRESS=text must win over tqdm's choice"
    assert progress_style(False) is None, "progress=False must stay silent"
    bar = _progress(range(3), 3, "epoch 1/1", True)
    assert not isinstance(bar, notebook_tqdm), "a widget bar despite COURSE_PROGRESS=text"
    capsys.readouterr()
    for _ in bar:
        bar.set_postfix(loss="2.000")
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 1, f"a text bar must leave one line per epoch in a saved notebook, got {lines}"
    assert "epoch 1/1" in lines[0] and "3/3" in lines[0] and "100%" in lines[0] and "loss=2.000" in lines[0], lines[0]
    with pytest.raises(ValueError, match="progress must be"):
        progress_style("widget")


def test_the_course_runner_asks_its_kernels_for_text_bars(tmp_path, monkeypatch):
    import papermill

    from course_utils import course

    seen = {}

    def fake_execute(source, target, **kwargs):
        seen["progress"] = os.environ.get("COURSE_PROGRESS")

    monkeypatch.delenv("COURSE_PROGRESS", raising=False)
    monkeypatch.setattr(papermill, "execute_notebook", fake_execute)
    course.run_course("smoke", tmp_path, only=("05",))
    assert seen["progress"] == "text", "papermill kernels inherit the runner's environment: it must ask for text bars"


# --------------------------------------------------------------------------- real runs


def test_smoke_run_learns_well_beyond_chance(tmp_path, data_dir):
    config = load_config(SMOKE, ["epochs=2", "train_per_class=200", "warmup_epochs=0", "lr=0.05"])
    run = train(config, tmp_path / "run", progress=False, log=lambda *a: None)
    assert run.finished
    assert [row["epoch"] for row in run.metrics] == [1, 2]
    # Chance is 10%; with 500 validation images the standard error of an accuracy is <= 2.3
    # points, so 25% is far outside what a model that learned nothing could reach by luck.
    val_acc = run.final["last"]["val"]["accuracy"]
    assert val_acc >= 0.25, f"validation accuracy {val_acc:.3f} after 2 epochs: not learning"
    files = {p.name for p in (tmp_path / "run").iterdir()}
    assert {"config.yaml", "environment.json", "metrics.csv", "last.pt", "best.pt", "final.json"} <= files
    env = json.loads((tmp_path / "run" / "environment.json").read_text())
    assert env["precision"] == "fp32" and env["device"] == "cpu" and env["data_source"] == "cifar10.npz"
    # Skip-if-trained: a second call returns the finished run without training.
    again = train(config, tmp_path / "run", progress=False, log=lambda *a: None)
    assert again.final == run.final


def test_a_different_recipe_never_overwrites_a_run(tmp_path, data_dir):
    from course_utils.engine import RunDirError

    config = load_config(SMOKE, TINY_OVERRIDES + ["epochs=1", "warmup_epochs=0"])
    train(config, tmp_path / "run", progress=False, log=lambda *a: None)
    before = (tmp_path / "run" / "last.pt").read_bytes()
    with pytest.raises(RunDirError, match="lr=0.1, not 0.2"):
        train(config.replace(lr=0.2), tmp_path / "run", progress=False, log=lambda *a: None)
    with pytest.raises(RunDirError, match="already holds a run"):
        train(config, tmp_path / "run", resume=False, progress=False, log=lambda *a: None)
    assert (tmp_path / "run" / "last.pt").read_bytes() == before


@pytest.mark.parametrize("reads", [[], ["device_read_every=7"]], ids=["default-reads", "read-every-7-steps"])
def test_divergence_at_a_huge_lr_stops_with_a_clear_message(tmp_path, data_dir, reads):
    """Reading the loss every 7 steps instead of every step still names the first non-finite step."""
    config = load_config(SMOKE, TINY_OVERRIDES + ["lr=1.0e+6", "warmup_epochs=0", "eta_min=0.0"] + reads)
    with pytest.raises(TrainingDiverged) as err:
        train(config, tmp_path / "run", progress=False, log=lambda *a: None)
    message = str(err.value)
    assert "loss became nan" in message or "loss became inf" in message, message
    match = re.search(r"at epoch 1, step (\d+) \(lr ([0-9.e+]+)\)", message)
    assert match, message
    step, lr = int(match.group(1)), float(match.group(2))
    total_steps = 3 * 10  # 400 images / batch 40, 3 epochs, cosine from 1e6 to 0
    assert lr == pytest.approx(lr_at(step - 1, total_steps, 0, 1e6, 0.0), rel=1e-3), "wrong step's lr"
    final = json.loads((tmp_path / "run" / "final.json").read_text())
    assert final["status"] == "diverged" and final["epoch"] == 1
    # Asking again reports the stopped run instead of training or crashing.
    assert load_run(tmp_path / "run").diverged


def _train_cmd(run_dir: Path, *extra: str) -> list[str]:
    overrides = [arg for item in TINY_OVERRIDES for arg in ("--set", item)]
    return [sys.executable, "train.py", "--config", str(SMOKE), "--run-dir", str(run_dir), "--no-progress",
            *overrides, *extra]


def test_killed_mid_epoch_and_resumed_equals_an_uninterrupted_run(tmp_path, data_dir):
    env = {**os.environ, "OMP_NUM_THREADS": "2"}
    reference = subprocess.run(_train_cmd(tmp_path / "reference"), cwd=REPO_ROOT, env=env,
                               capture_output=True, text=True)
    assert reference.returncode == 0, reference.stderr

    run_dir = tmp_path / "interrupted"
    proc = subprocess.Popen(_train_cmd(run_dir), cwd=REPO_ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + 300
    while not (run_dir / "last.pt").exists():  # epoch 1 is done: kill during epoch 2
        assert proc.poll() is None and time.time() < deadline, "the run ended before it could be killed"
        time.sleep(0.05)
    time.sleep(0.5)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    epochs_done = load_checkpoint(run_dir / "last.pt")["epoch"]
    assert epochs_done < 3, "the kill came after the run had finished"
    assert not (run_dir / "final.json").exists()

    resumed = subprocess.run(_train_cmd(run_dir, "--resume"), cwd=REPO_ROOT, env=env,
                             capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    assert f"resuming {run_dir} after epoch {epochs_done}/3" in resumed.stdout

    ref_state = load_checkpoint(tmp_path / "reference" / "last.pt")["model"]
    new_state = load_checkpoint(run_dir / "last.pt")["model"]
    for name, tensor in ref_state.items():
        assert torch.equal(tensor, new_state[name]), f"{name} differs after kill-and-resume"
    strip = lambda rows: [{k: v for k, v in r.items() if k not in TIMING_COLUMNS} for r in rows]  # noqa: E731
    assert strip(read_metrics(run_dir / "metrics.csv")) == strip(read_metrics(tmp_path / "reference" / "metrics.csv"))
    ref_final = json.loads((tmp_path / "reference" / "final.json").read_text())
    new_final = json.loads((run_dir / "final.json").read_text())
    assert ref_final.pop("final_evaluation_seconds") > 0 and new_final.pop("final_evaluation_seconds") > 0
    assert new_final == ref_final


def test_two_process_ddp_run_keeps_ranks_identical(tmp_path, data_dir):
    run_dir = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_port=29517",
           *_train_cmd(run_dir, "--set", "epochs=2")[1:]]
    result = subprocess.run(cmd, cwd=REPO_ROOT, capture_output=True, text=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    final = json.loads((run_dir / "final.json").read_text())
    digests = final["rank_weight_digests"]
    assert len(digests) == 2 and digests[0] == digests[1], f"ranks diverged: {digests}"
    files = {p.name for p in run_dir.iterdir()}
    assert {"config.yaml", "environment.json", "metrics.csv", "last.pt", "best.pt", "final.json"} <= files
    assert json.loads((run_dir / "environment.json").read_text())["world_size"] == 2
    assert len(read_metrics(run_dir / "metrics.csv")) == 2
    assert not [p for p in run_dir.iterdir() if p.name.endswith(".tmp")], "only rank 0 should write, once"


def test_test_py_reevaluates_a_run_and_matches_its_final_table(tmp_path, data_dir):
    run_dir = tmp_path / "run"
    trained = subprocess.run(_train_cmd(run_dir, "--set", "epochs=1", "--set", "warmup_epochs=0"),
                             cwd=REPO_ROOT, capture_output=True, text=True)
    assert trained.returncode == 0, trained.stderr
    overrides = [arg for item in TINY_OVERRIDES + ["epochs=1", "warmup_epochs=0"] for arg in ("--set", item)]
    evaluated = subprocess.run([sys.executable, "test.py", "--config", str(SMOKE), "--run-dir", str(run_dir),
                                *overrides], cwd=REPO_ROOT, capture_output=True, text=True)
    assert evaluated.returncode == 0, evaluated.stderr
    final = json.loads((run_dir / "final.json").read_text())
    test_acc = 100 * final["last"]["test"]["accuracy"]
    assert f"last epoch        test   {test_acc:9.2f}%" in evaluated.stdout, evaluated.stdout
    missing = subprocess.run([sys.executable, "test.py", "--config", str(SMOKE), "--run-dir", str(tmp_path / "none")],
                             cwd=REPO_ROOT, capture_output=True, text=True)
    assert missing.returncode == 2 and "not a run directory" in missing.stderr


# --------------------------------------------------------------------------- speed options (same results)


def _untimed(rows):
    return [{k: v for k, v in row.items() if k not in TIMING_COLUMNS} for row in rows]


def test_checkpoint_every_writes_fewer_checkpoints_and_trains_the_same_bits(tmp_path, data_dir, monkeypatch):
    from course_utils import engine

    config = load_config(SMOKE, TINY_OVERRIDES)  # 3 epochs, keep_best: best.pt as well
    reference = train(config, tmp_path / "every-epoch", progress=False, log=lambda *a: None)
    writes = []
    real_save = engine.save_atomically

    def recording_save(state, path):
        writes.append((Path(path).name, state["epoch"]))
        real_save(state, path)

    monkeypatch.setattr(engine, "save_atomically", recording_save)
    sparse = train(config.replace(checkpoint_every=2), tmp_path / "every-2", progress=False, log=lambda *a: None)
    assert [epoch for name, epoch in writes if name == "last.pt"] == [2, 3], \
        f"last.pt after epoch 2 and after the last epoch only, got {writes}"
    assert all(name in ("last.pt", "best.pt") for name, _ in writes)
    best_writes = [epoch for name, epoch in writes if name == "best.pt"]
    assert best_writes and len(best_writes) <= 2, f"best.pt only with a checkpoint, got {writes}"
    untimed = lambda final: {k: v for k, v in final.items() if k != "final_evaluation_seconds"}  # noqa: E731
    assert untimed(sparse.final) == untimed(reference.final)
    assert _untimed(sparse.metrics) == _untimed(reference.metrics)
    for name in ("last.pt", "best.pt"):
        ref, new = (load_checkpoint(tmp_path / run / name) for run in ("every-epoch", "every-2"))
        assert ref["epoch"] == new["epoch"], name
        for key, tensor in ref["model"].items():
            assert torch.equal(tensor, new["model"][key]), f"{name}: {key} differs with checkpoint_every: 2"


def test_a_stop_between_checkpoints_still_writes_one_and_resumes_bitwise(tmp_path, data_dir):
    config = load_config(SMOKE, TINY_OVERRIDES + ["checkpoint_every=5"])
    reference = train(config, tmp_path / "reference", progress=False, log=lambda *a: None)
    train(config, tmp_path / "resumed", progress=False, log=lambda *a: None, stop_after_epochs=1)
    assert load_checkpoint(tmp_path / "resumed" / "last.pt")["epoch"] == 1, "a requested stop writes a checkpoint"
    resumed = train(config, tmp_path / "resumed", progress=False, log=lambda *a: None)
    ref_state = load_checkpoint(tmp_path / "reference" / "last.pt")["model"]
    new_state = load_checkpoint(tmp_path / "resumed" / "last.pt")["model"]
    assert all(torch.equal(t, new_state[k]) for k, t in ref_state.items()), "resumed weights differ"
    assert resumed.final["last"] == reference.final["last"]


def test_the_loop_reads_the_device_once_per_interval_and_at_each_epochs_end(tmp_path, data_dir, monkeypatch):
    from course_utils import engine

    reads = []
    real_read = engine.read_progress

    def recording_read(losses, steps_done, correct):
        reads.append(steps_done)
        return real_read(losses, steps_done, correct)

    monkeypatch.setattr(engine, "read_progress", recording_read)
    config = load_config(SMOKE, TINY_OVERRIDES + ["epochs=2", "device_read_every=4"])  # 10 steps per epoch
    train(config, tmp_path / "run", progress="text", log=lambda *a: None)
    assert reads == [4, 8, 10] * 2, reads
    assert engine.device_read_interval(config.replace(device_read_every=None), torch.device("cpu")) == 1
    assert engine.device_read_interval(config.replace(device_read_every=None), torch.device("cuda")) == 25


def test_reading_the_progress_is_one_copy_from_the_device():
    from device_traffic import count_traffic

    from course_utils.engine import read_progress

    losses = torch.zeros(10, device="meta")
    correct = torch.zeros((), device="meta")
    with count_traffic("meta") as traffic:
        read_progress(losses, 6, correct)
    assert (traffic.to_device, traffic.to_host) == (0, 1), "finite flag, loss and correct count: one read"
    finite, loss, count = read_progress(torch.tensor([1.0, float("nan"), 2.0]), 3, torch.tensor(5.0))
    assert (finite, loss, count) == (False, 2.0, 5.0)
    assert read_progress(torch.tensor([1.0, 3.0, float("inf")]), 2, torch.tensor(1.0)) == (True, 3.0, 1.0), \
        "only the steps done so far are checked"


def test_evaluation_batches_have_their_own_size_and_run_in_inference_mode(data_dir):
    from course_utils.engine import build_data, build_model
    from course_utils.evaluate import evaluate

    config = load_config(SMOKE, [f"data_dir={data_dir}"])
    default = build_data(config, torch.device("cpu"))
    assert {default.val.batch_size, default.test.batch_size, default.train_eval.batch_size} == {512}
    bundle = build_data(config.replace(eval_batch_size=200), torch.device("cpu"))
    assert {bundle.val.batch_size, bundle.test.batch_size, bundle.train_eval.batch_size} == {200}
    assert bundle.train.batch_size == config.batch_size, "training batches keep the recipe's size"
    model = build_model(config.replace(width=4), 10)
    modes = []
    model.register_forward_hook(lambda *_: modes.append(torch.is_inference_mode_enabled()))
    small, large = evaluate(model, bundle.val), evaluate(model, default.val)
    assert modes and all(modes), "evaluation should run under torch.inference_mode"
    assert small["accuracy"] == large["accuracy"] and small["loss"] == pytest.approx(large["loss"], rel=1e-5)


def test_full_fast_changes_only_how_the_reference_recipe_runs():
    from course_utils.engine import RUNTIME_KEYS

    reference = load_config(REPO_ROOT / "configs" / "config.yaml")
    fast = load_config(REPO_ROOT / "configs" / "full_fast.yaml")
    changed = {k for k, v in fast.to_dict().items() if reference.to_dict()[k] != v}
    assert changed and changed <= RUNTIME_KEYS, f"full_fast.yaml changes recipe keys: {changed - RUNTIME_KEYS}"
    assert (fast.deterministic, fast.compile, fast.drop_last) == (False, True, False), \
        "full_fast keeps every batch; it trades bitwise repeatability for cuDNN autotuning"
