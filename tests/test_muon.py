"""Muon (course_utils/muon.py): the Newton-Schulz orthogonalization, the SGD half, the engine's groups, a real run."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from course_utils.checkpoint import load_checkpoint
from course_utils.config import ConfigError, load_config
from course_utils.engine import build_optimizer, parameter_groups, train
from course_utils.models import create_model
from course_utils.muon import Muon, orthogonalize

FAST = Path(__file__).resolve().parents[1] / "configs" / "fast.yaml"


@pytest.mark.parametrize("shape", [(64, 576), (576, 64), (128, 128)])
def test_orthogonalize_puts_every_singular_value_near_one(shape):
    torch.manual_seed(0)
    # A gradient-like matrix: a few strong directions on top of weak noise (singular values spread over 1e3).
    g = torch.randn(shape[0], 4) @ torch.randn(4, shape[1]) * 30 + torch.randn(shape) * 0.03
    before = torch.linalg.svdvals(g)
    after = torch.linalg.svdvals(orthogonalize(g))
    assert orthogonalize(g).shape == g.shape
    assert before.max() / before.min() > 100, "the test matrix should be badly conditioned"
    # Three quintic steps: the strong directions land near 1, the weak ones grow from ~0 by the slope at 0
    # (3.4445 per step, 41x in all); none above airbench's 1.5.
    assert after.max() < 1.5 and after[:4].min() > 0.6, after
    assert (after[4:] / (before[4:] / g.norm())).min() > 20, "the weak directions should be amplified"


def test_orthogonalize_of_an_orthogonal_matrix_stays_near_it():
    q, _ = torch.linalg.qr(torch.randn(32, 32, generator=torch.Generator().manual_seed(1)))
    out = orthogonalize(q)
    # The iteration is tuned for speed, not exactness: U S' V^T with S' in about [0.7, 1.2].
    cosine = (out * q).sum() / (out.norm() * q.norm())
    assert cosine > 0.99, f"the direction should be kept, cosine {cosine:.4f}"


def test_orthogonalize_rejects_a_vector():
    with pytest.raises(ValueError, match="needs a matrix, got a tensor of shape"):
        orthogonalize(torch.ones(5))


def test_sgd_groups_step_exactly_as_torch_sgd():
    """orthogonalize=False is torch.optim.SGD (momentum, Nesterov, weight decay), bit for bit on the CPU."""
    torch.manual_seed(0)
    ours, theirs = (torch.nn.Linear(6, 3) for _ in range(2))
    theirs.load_state_dict(ours.state_dict())
    options = dict(lr=0.1, momentum=0.85, nesterov=True, weight_decay=5e-3)
    opt_ours = Muon(ours.parameters(), orthogonalize=False, **options)
    opt_theirs = torch.optim.SGD(theirs.parameters(), foreach=False, **options)
    x = torch.randn(8, 6)
    for _ in range(5):
        for model, opt in ((ours, opt_ours), (theirs, opt_theirs)):
            opt.zero_grad()
            model(x).square().mean().backward()
            opt.step()
    for a, b in zip(ours.parameters(), theirs.parameters()):
        assert torch.equal(a, b)


def test_a_muon_step_renormalizes_then_moves_by_an_orthogonalized_direction():
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(8, 16, 3, bias=False)
    start = conv.weight.detach().clone()
    opt = Muon([conv.weight], lr=0.05, momentum=0.6, nesterov=True)
    conv(torch.randn(4, 8, 10, 10)).square().mean().backward()
    opt.step()
    normalized = start * (16 ** 0.5 / start.norm())
    step = (normalized - conv.weight.detach()) / 0.05
    singular = torch.linalg.svdvals(step.reshape(16, -1))
    assert 0.5 < singular.min() and singular.max() < 1.5, singular
    # First step: buffer = g, Nesterov direction = g + 0.6 g, whose orthogonalization is g's.
    expected = orthogonalize(conv.weight.grad.reshape(16, -1) * 1.6).view_as(start)
    assert torch.allclose(step, expected, atol=1e-5)
    with pytest.raises(ValueError, match="fewer than 2 dimensions"):
        Muon([torch.nn.Parameter(torch.zeros(3))])


def test_engine_gives_muon_the_filters_and_sgd_the_rest():
    config = load_config(FAST, ["optimizer=muon"])
    model = create_model("fastnet", width=16, init="dirac")
    optimizer = build_optimizer(config, model)
    assert isinstance(optimizer, Muon)
    muon_group, *sgd_groups = optimizer.param_groups
    trainable = {id(p) for g in parameter_groups(config, model) for p in g["params"]}
    filters = {id(p) for p in model.parameters() if p.ndim == 4 and id(p) in trainable}
    assert {id(p) for p in muon_group["params"]} == filters and filters
    assert (muon_group["lr"], muon_group["momentum"], muon_group["orthogonalize"]) == (0.24, 0.6, True)
    assert all(not g["orthogonalize"] and all(p.ndim != 4 for p in g["params"]) for g in sgd_groups)
    assert {g["lr"] for g in sgd_groups} == {config.lr, config.lr * config.norm_bias_lr_scale}
    assert id(model.whiten.weight) not in {id(p) for g in optimizer.param_groups for p in g["params"]}
    with pytest.raises(ConfigError, match="muon_lr"):
        load_config(FAST, ["optimizer=muon", "muon_lr=0"])


def test_every_muon_group_warms_up_and_decays_by_the_configs_schedule():
    """The schedule is a multiple of each group's own lr, read on the config's lr: every group peaks at its lr
    and ends at eta_min / lr of it. (Read on the first group's lr, Muon's 0.24, fast.yaml's eta_min of 0.105
    would leave every group at 0.105 / 0.24 = 44% of its peak instead of 7%.)"""
    from course_utils.schedule import config_schedule

    config = load_config(FAST, ["optimizer=muon"])
    optimizer = build_optimizer(config, create_model("fastnet", width=16, init="dirac"))
    peaks = [group["lr"] for group in optimizer.param_groups]
    steps_per_epoch, total = 10, 10 * config.epochs
    scheduler = config_schedule(optimizer, config, steps_per_epoch, total)
    lrs = []
    for _ in range(total):
        lrs.append([group["lr"] for group in optimizer.param_groups])
        optimizer.step()
        scheduler.step()
    peak_step = steps_per_epoch * config.warmup_epochs - 1
    end_fraction = config.eta_min / config.lr
    assert end_fraction == pytest.approx(0.07)
    for i, peak in enumerate(peaks):
        assert lrs[peak_step][i] == pytest.approx(peak, rel=1e-12), f"group {i} should peak at its own lr {peak}"
        assert lrs[-1][i] == pytest.approx(peak * end_fraction, rel=1e-12), \
            f"group {i} should end at {end_fraction:.2f} of its peak, not {lrs[-1][i] / peak:.3f}"


@pytest.mark.slow
def test_a_real_muon_run_learns_and_resumes_bitwise(tmp_path, data_dir):
    overrides = ["optimizer=muon", "train_per_class=30", "val_per_class=10", "test_per_class=10", "width=16",
                 "epochs=3", "warmup_epochs=1", "batch_size=50", "lookahead_every=0", "tta=none", f"data_dir={data_dir}"]
    config = load_config(FAST, overrides)
    reference = train(config, tmp_path / "reference", progress=False, log=lambda line: None)
    train(config, tmp_path / "resumed", progress=False, log=lambda line: None, stop_after_epochs=2)
    resumed = train(config, tmp_path / "resumed", progress=False, log=lambda line: None)
    ref_state, new_state = (load_checkpoint(tmp_path / run / "last.pt") for run in ("reference", "resumed"))
    for name, tensor in ref_state["model"].items():
        assert torch.equal(tensor, new_state["model"][name]), f"{name} differs after stop-and-resume"
    assert resumed.metrics[-1]["val_acc"] == reference.metrics[-1]["val_acc"]
    assert reference.metrics[-1]["train_acc"] > 0.2, "300 real images, 3 epochs: above chance (10%)"
