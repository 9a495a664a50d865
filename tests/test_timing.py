"""Time estimates before training, and the profile `auto` picks on a GPU."""

from __future__ import annotations

import torch

from course_utils import profiles, timing
from course_utils.profiles import profile_config, resolve_profile


def test_auto_picks_the_gpu_profile_on_a_gpu_never_full(monkeypatch):
    monkeypatch.delenv("COURSE_PROFILE", raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_profile("auto", verbose=False) == "gpu"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_profile("auto", verbose=False) == "laptop"
    assert resolve_profile("full", verbose=False) == "full", "full must stay available when asked for"


def test_the_gpu_profile_is_the_reference_network_with_fewer_epochs():
    gpu, full = profile_config("gpu"), profile_config("full")
    assert (gpu.model, gpu.width, gpu.batch_size, gpu.lr) == (full.model, full.width, full.batch_size, full.lr)
    assert gpu.epochs < full.epochs


def test_training_images_and_steps_come_from_the_config():
    full = profile_config("full")
    assert timing.train_images(full) == 40_000
    assert timing.steps_per_epoch(full) == 313  # ceil(40,000 / 128)
    smoke = profile_config("smoke")
    assert timing.train_images(smoke) == 10 * smoke.train_per_class
    long_tail = full.replace(dataset="cifar100", imbalance_ratio=100)
    assert 8_000 < timing.train_images(long_tail) < 9_500, "CIFAR-100-LT at ratio 100 keeps ~8.7k of the 40k images"


def test_finished_runs_cost_nothing_and_interrupted_ones_only_their_remaining_epochs(tmp_path):
    config = profile_config("smoke")
    assert timing.epochs_left(config, tmp_path / "new") == config.epochs
    resumable = tmp_path / "resumable"
    resumable.mkdir()
    (resumable / "last.pt").write_bytes(b"")
    (resumable / "metrics.csv").write_text("epoch,train_loss\n1,2.3\n")
    assert timing.epochs_left(config, resumable) == config.epochs - 1
    (resumable / "final.json").write_text("{}")
    assert timing.epochs_left(config, resumable) == 0


def test_announce_training_times_real_steps_and_multiplies_by_the_steps_ahead(capsys):
    config = profile_config("smoke").replace(width=4, batch_size=16)
    seconds = timing.announce_training({"tiny": config}, "cpu", "smoke", steps=2)
    out = capsys.readouterr().out
    step = timing.seconds_per_step(config, "cpu", 2)  # cached: the same measurement
    assert step > 0
    assert abs(seconds - timing.run_seconds(config, step, config.epochs)) < 1e-9
    assert "tiny" in out and "estimated total" in out and "smoke profile on cpu" in out, out


def test_reference_gpu_estimates_are_flop_based_and_labelled():
    full, gpu = profile_config("full"), profile_config("gpu")
    per_image = timing.train_flops_per_image(full)
    assert 3.0e9 < per_image < 3.7e9, f"ResNet-18 (CIFAR) trains at ~3.3 GFLOPs per image, counted {per_image:.3g}"
    hours = timing.reference_gpu_hours([gpu])
    assert hours["T4"] < 1.0, f"the gpu profile's ResNet-18 run must stay under an hour on a T4 (estimated {hours['T4']:.2f} h)"
    assert timing.reference_gpu_hours([full])["T4"] > hours["T4"]
    text = timing.format_reference_estimate([gpu])
    assert "ESTIMATE, not measured" in text and "T4" in text and "A100" in text and "assumed utilization" in text


def test_every_profile_has_a_config():
    for name in profiles.PROFILES:
        profile_config(name)  # raises if configs/<name>.yaml is missing or invalid
