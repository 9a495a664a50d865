"""The fast recipe's pieces (lesson 12): translate with reflected borders, alternating flip,
patch whitening, lookahead, norm-bias learning rate, test-time augmentation, and the whole
recipe through the engine, resumed bitwise."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from course_utils.augment import random_crop_flip
from course_utils.checkpoint import load_checkpoint
from course_utils.config import load_config
from course_utils.engine import parameter_groups, train
from course_utils.evaluate import tta_logits
from course_utils.loader import BatchIterator
from course_utils.lookahead import Lookahead
from course_utils.models import create_model
from course_utils.whitening import whitening_filters

REPO_ROOT = Path(__file__).resolve().parents[1]
FAST = REPO_ROOT / "configs" / "fast.yaml"


def test_reflect_translate_equals_cropping_a_reflect_padded_image(cifar10):
    images = torch.as_tensor(cifar10.x_train[:64]).permute(0, 3, 1, 2).contiguous()
    generator = torch.Generator().manual_seed(3)
    out = random_crop_flip(images, padding=2, flip=True, generator=generator, pad_mode="reflect")
    # Redo the same draws by hand: pad with reflection, cut the window, mirror.
    generator = torch.Generator().manual_seed(3)
    offsets = torch.randint(0, 5, (2, 64), generator=generator)
    mirror = torch.rand(64, generator=generator).lt(0.5)
    padded = F.pad(images.float(), (2, 2, 2, 2), mode="reflect").to(torch.uint8)
    for i in range(64):
        window = padded[i, :, offsets[0, i]:offsets[0, i] + 32, offsets[1, i]:offsets[1, i] + 32]
        expected = window.flip(-1) if mirror[i] else window
        assert torch.equal(out[i], expected), f"image {i} differs from the reflect-padded crop"
    assert out.dtype == torch.uint8


def test_alternating_flip_shows_every_image_both_ways_in_two_epochs(cifar10):
    images, labels = cifar10.x_train[:200], cifar10.y_train[:200]
    batches = BatchIterator(images, labels, 50, (0.5,) * 3, (0.25,) * 3, train=True, padding=0,
                            flip_mode="alternating", seed=1)
    originals = torch.as_tensor(images).permute(0, 3, 1, 2).float()
    mirrored_in_epoch = []
    for epoch in (0, 1, 2):
        batches.set_epoch(epoch)
        seen = {}
        for x, _ in batches:
            for image in x:
                pixels = image * 0.25 + 0.5  # undo the normalization: [0, 1]
                match = ((originals / 255 - pixels).abs().flatten(1).amax(1) < 1e-4).nonzero()
                index = int(match[0]) if len(match) else int(((originals.flip(-1) / 255 - pixels).abs()
                                                              .flatten(1).amax(1) < 1e-4).nonzero()[0])
                seen[index] = not len(match)
        mirrored_in_epoch.append(torch.tensor([seen[i] for i in range(200)]))
    assert torch.equal(mirrored_in_epoch[0], ~mirrored_in_epoch[1]), "epoch 2 should mirror what epoch 1 did not"
    assert torch.equal(mirrored_in_epoch[0], mirrored_in_epoch[2]), "even epochs share the first mirror state"
    assert 60 < int(mirrored_in_epoch[0].sum()) < 140, "the first state should be a fair coin per image"


def test_whitening_filters_decorrelate_the_patches_of_real_images(cifar10):
    images = torch.as_tensor(cifar10.x_train[:2000]).permute(0, 3, 1, 2).float() / 255
    images = (images - images.mean((0, 2, 3), keepdim=True)) / images.std((0, 2, 3), keepdim=True)
    weight, eigenvalues = whitening_filters(images[:1000], kernel_size=2, eps=1e-8)
    assert weight.shape == (24, 3, 2, 2) and torch.equal(weight[12:], -weight[:12])
    assert torch.all(eigenvalues[:-1] >= eigenvalues[1:]), "eigenvalues should come largest first"
    out = F.conv2d(images[1000:], weight[:12]).double()  # held-out images
    flat = out.permute(0, 2, 3, 1).reshape(-1, 12)
    covariance = flat.T @ flat / len(flat)
    assert torch.allclose(covariance, torch.eye(12, dtype=torch.float64), atol=0.1), \
        f"whitened patches should have ~identity covariance, got diagonal {covariance.diagonal()}"


def test_lookahead_follows_its_decay_and_sets_the_weights_to_the_average():
    model = torch.nn.Linear(3, 1, bias=False)
    lookahead = Lookahead(every=5, start_epoch=1, total_steps=100)
    assert lookahead.decay(100) == pytest.approx(0.95 ** 5)
    assert lookahead.decay(50) == pytest.approx(0.95 ** 5 * 0.125)
    with torch.no_grad():
        model.weight.fill_(1.0)
    lookahead.after_step(model, 5, epoch=0)
    assert lookahead.average is None, "no averaging before start_epoch"
    lookahead.after_step(model, 50, epoch=1)  # first averaging step: the average starts here
    with torch.no_grad():
        model.weight.fill_(3.0)
    lookahead.after_step(model, 51, epoch=1)  # not a multiple of 5: nothing happens
    assert torch.all(model.weight == 3.0)
    lookahead.after_step(model, 100, epoch=1)
    decay = 0.95 ** 5
    assert torch.allclose(model.weight, torch.full((1, 3), decay * 1.0 + (1 - decay) * 3.0)), \
        "the weights should be reset to the moved average"
    restored = Lookahead(5, 1, 100)
    restored.load_state_dict(lookahead.state_dict())
    assert torch.equal(restored.average["weight"], model.weight.detach())


def test_norm_biases_get_the_scaled_lr_and_frozen_weights_are_left_out():
    config = load_config(FAST)
    model = create_model("fastnet", width=16, init="dirac")
    groups = parameter_groups(config, model)
    norm_biases = {id(m.bias) for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)}
    assert {id(p) for p in groups[1]["params"]} == norm_biases
    assert groups[1]["lr"] == pytest.approx(config.lr * 64)
    assert groups[1]["lr"] * groups[1]["weight_decay"] == pytest.approx(config.lr * config.weight_decay), \
        "the norm biases' decay per step should equal everyone else's"
    everything = {id(p) for g in groups for p in g["params"]}
    assert id(model.whiten.weight) not in everything, "the frozen whitening filters must not be optimized"
    assert id(model.whiten.bias) in everything
    frozen_scales = [m.weight for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert not any(id(w) in everything for w in frozen_scales), "BatchNorm scales stay at 1"


def test_tta_averages_the_views_airbench_uses():
    torch.manual_seed(0)
    model = create_model("fastnet", width=8, init="dirac").eval()
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        plain, flip, six = (tta_logits(model, x, mode) for mode in ("none", "flip", "flip_translate"))
        assert torch.allclose(plain, model(x))
        assert torch.allclose(flip, (model(x) + model(x.flip(-1))) / 2, atol=1e-6)
        up_left = F.pad(x, (1, 1, 1, 1), mode="reflect")[:, :, :32, :32]
        assert torch.equal(up_left[:, :, 1:, 1:], x[:, :, :31, :31]), "a one-pixel shift down-right of content"
        assert not torch.allclose(six, flip), "translated views should change the logits"
    with pytest.raises(ValueError, match="tta must be one of"):
        tta_logits(model, x, "rotate")


def test_whitening_bias_trains_for_its_epochs_then_freezes():
    model = create_model("fastnet", width=8, init="dirac")
    model.start_epoch(2)
    assert model.whiten.bias.requires_grad
    model.start_epoch(3)
    assert not model.whiten.bias.requires_grad


TINY_FAST = ["train_per_class=30", "val_per_class=10", "test_per_class=10", "width=16", "epochs=4",
             "warmup_epochs=1", "batch_size=50", "lookahead_start_epoch=1", "tta=flip"]


@pytest.mark.slow
def test_fast_recipe_stopped_and_resumed_equals_an_uninterrupted_run(tmp_path, data_dir):
    config = load_config(FAST, [*TINY_FAST, f"data_dir={data_dir}"])
    lines = []
    reference = train(config, tmp_path / "reference", progress=False, log=lines.append)
    # The stop falls after epoch 2: lookahead is averaging and the whitening bias still trains.
    train(config, tmp_path / "resumed", progress=False, log=print, stop_after_epochs=2)
    assert load_checkpoint(tmp_path / "resumed" / "last.pt")["lookahead"]["average"] is not None
    resumed_lines = []
    resumed = train(config, tmp_path / "resumed", progress=False, log=resumed_lines.append)
    assert any("after epoch 2/4" in line for line in resumed_lines), resumed_lines
    ref_state = load_checkpoint(tmp_path / "reference" / "last.pt")
    new_state = load_checkpoint(tmp_path / "resumed" / "last.pt")
    for name, tensor in ref_state["model"].items():
        assert torch.equal(tensor, new_state["model"][name]), f"{name} differs after stop-and-resume"
    untimed = lambda final: {k: v for k, v in final.items() if k != "final_evaluation_seconds"}  # noqa: E731
    assert untimed(resumed.final) == untimed(reference.final)
    assert reference.final["tta"] == "flip" and set(reference.final["without_tta"]) == {"val", "test"}
    assert any("test-time augmentation 'flip'" in line for line in lines)
    assert reference.final["last"]["val"]["accuracy"] > 0.2, "300 images, 4 epochs: well above chance (10%)"


def test_lookahead_foreach_update_equals_the_update_tensor_by_tensor():
    """The foreach pull (one call for all tensors) gives bit for bit the weights and average of
    ``lerp_`` then ``copy_`` on each parameter and float buffer in turn."""
    torch.manual_seed(0)
    model = create_model("fastnet", num_classes=10, width=8)
    model(torch.randn(16, 3, 32, 32))  # BatchNorm running statistics move: float buffers too
    reference = {k: v.detach().clone() for k, v in model.state_dict().items()}
    lookahead = Lookahead(every=1, start_epoch=0, total_steps=10)
    lookahead.after_step(model, 1, epoch=0)  # the average starts at these weights
    average = {k: v.clone() for k, v in reference.items() if v.is_floating_point()}
    for step in range(2, 6):
        with torch.no_grad():
            for tensor in model.state_dict(keep_vars=True).values():
                if tensor.is_floating_point():
                    tensor.add_(torch.randn_like(tensor))
        current = {k: v.detach().clone() for k, v in model.state_dict().items()}
        lookahead.after_step(model, step, epoch=0)
        decay = lookahead.decay(step)
        for name, value in average.items():  # the update written tensor by tensor
            value.lerp_(current[name], 1.0 - decay)
            current[name].copy_(value)
        for name, value in average.items():
            assert torch.equal(lookahead.average[name], value), f"step {step}: average of {name} differs"
            assert torch.equal(model.state_dict()[name], current[name]), f"step {step}: weights of {name} differ"
    assert lookahead.decay(5) > 0, "a zero decay would make the comparison trivial"


# --------------------------------------------------------------------------- airbench94, step for step

FAST_GPU_50K = REPO_ROOT / "configs" / "fast_gpu_50k.yaml"


def airbench94_lr_multiplier(step: int, total_steps: int) -> float:
    """airbench94's published schedule: a line from 0.2 at step 0 to 1 at step int(0.23 T), then a
    line to 0.07 at step T (its optimizer step ``step`` runs at this times the peak lr)."""
    peak = int(0.23 * total_steps)
    if step < peak:
        return 0.2 + (1.0 - 0.2) * step / peak
    return 1.0 + (0.07 - 1.0) * (step - peak) / (total_steps - peak)


def airbench94_decay(step: int, total_steps: int) -> float:
    """airbench94's lookahead decay after step ``step`` (1-based): 0.95^5 (step / T)^3."""
    return 0.95 ** 5 * (step / total_steps) ** 3


def test_fast_gpu_50k_learning_rate_equals_airbench94s_at_all_476_steps():
    from course_utils.engine import run_steps
    from course_utils.schedule import config_schedule

    config = load_config(FAST_GPU_50K)
    total = run_steps(config, 48, 50_000)  # 48 full batches of 1,024 per epoch (test_whole_training_set)
    assert total == 476
    weight = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([weight], lr=config.lr)
    scheduler = config_schedule(optimizer, config, 48, total)
    engine_lrs = []
    for _ in range(total):
        engine_lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    for step, lr in enumerate(engine_lrs):
        expected = config.lr * airbench94_lr_multiplier(step, total)
        assert lr == pytest.approx(expected, rel=1e-12, abs=0), f"step {step}: lr {lr!r}, airbench94 {expected!r}"
    assert engine_lrs[0] == pytest.approx(0.2 * 1.5) and engine_lrs[109] == pytest.approx(1.5), \
        "airbench's landmarks: 0.2 x lr on the first step, the peak on step int(0.23 x 476) = 109"
    assert engine_lrs[108] < engine_lrs[109] > engine_lrs[110]


def test_fast_gpu_50k_lookahead_pulls_on_airbench94s_steps_with_its_decay():
    from course_utils.engine import build_lookahead

    config = load_config(FAST_GPU_50K)
    lookahead = build_lookahead(config, 476)
    model = torch.nn.Linear(2, 1)
    pulls = []
    lookahead._pull = lambda _model, decay: pulls.append((step, decay))
    lookahead.begin(model)
    assert lookahead.average is not None, "airbench's average starts at step 0"
    for step in range(1, 477):
        lookahead.after_step(model, step, epoch=(step - 1) // 48)
        if step % 48 == 0:
            lookahead.end_epoch(model)
    expected = [(s, airbench94_decay(s, 476)) for s in range(5, 477, 5)] + [(476, 1.0)]
    assert [s for s, _ in pulls] == [s for s, _ in expected], "pulls on every 5th step and after the last only"
    for (step, decay), (_, airbench) in zip(pulls, expected):
        assert decay == airbench, f"step {step}: decay {decay!r}, airbench94 {airbench!r}"


def tiny_airbench_config(data_dir):
    """fast_gpu_50k.yaml on 300 images: 6 steps of 50 per epoch, 4 epochs cut at 23 steps."""
    return load_config(FAST_GPU_50K, ["train_per_class=30", "test_per_class=10", "width=8", "batch_size=50",
                                      "total_steps=23", "epochs=4", "tta=none", f"data_dir={data_dir}"])


@pytest.mark.slow
def test_a_real_airbench_run_pulls_every_5th_step_and_after_the_last_and_resumes_bitwise(tmp_path, data_dir,
                                                                                         monkeypatch):
    from course_utils import engine

    config = tiny_airbench_config(data_dir)
    steps, pulls = [0], []
    real_step, real_pull = engine.train_step, Lookahead._pull

    def counting_step(*args, **kwargs):
        steps[0] += 1
        return real_step(*args, **kwargs)

    def recording_pull(self, model, decay):
        pulls.append((steps[0], decay))
        return real_pull(self, model, decay)

    monkeypatch.setattr(engine, "train_step", counting_step)
    monkeypatch.setattr(Lookahead, "_pull", recording_pull)
    reference = train(config, tmp_path / "reference", progress=False, log=lambda line: None)
    assert steps[0] == 23 and reference.finished
    assert pulls == [(s, airbench94_decay(s, 23)) for s in (5, 10, 15, 20)] + [(23, 1.0)], pulls

    train(config, tmp_path / "resumed", progress=False, log=lambda line: None, stop_after_epochs=2)
    assert load_checkpoint(tmp_path / "resumed" / "last.pt")["lookahead"]["average"] is not None
    resumed = train(config, tmp_path / "resumed", progress=False, log=lambda line: None)
    ref_state = load_checkpoint(tmp_path / "reference" / "last.pt")["model"]
    new_state = load_checkpoint(tmp_path / "resumed" / "last.pt")["model"]
    for name, tensor in ref_state.items():
        assert torch.equal(tensor, new_state[name]), f"{name} differs after stop-and-resume"
    assert resumed.final["last"] == reference.final["last"]
