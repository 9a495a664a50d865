"""The data path, the training step and evaluation copy nothing between host and device per batch.

On a GPU every such copy makes the host wait or the device idle. ``device_traffic`` counts them op
by op; the ``meta`` device stands in for a GPU, so this runs on any CPU (see tests/device_traffic.py).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from course_utils import engine
from course_utils.augment import normalize
from course_utils.config import load_config
from course_utils.evaluate import evaluate, predict
from course_utils.loader import BatchIterator
from course_utils.lookahead import Lookahead
from course_utils.schedule import warmup_schedule
from device_traffic import count_traffic

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
MEAN, STD = (0.49, 0.48, 0.45), (0.25, 0.24, 0.26)
BATCHES = 10


def _split(cifar10, n=1000):
    return cifar10.x_train[:n], cifar10.y_train[:n]


def test_the_counter_sees_a_copy_per_batch_where_there_is_one(cifar10):
    """The counts below would be vacuous if the counter missed copies: here it must see them."""
    images, labels = _split(cifar10)
    device_images = torch.as_tensor(images).permute(0, 3, 1, 2).to("meta")
    with count_traffic("meta") as traffic:
        for start in range(0, len(labels), 100):
            idx = torch.arange(start, start + 100).to("meta")  # an index built on the host: 1 copy
            x = normalize(device_images[idx], MEAN, STD)  # mean and std made from Python numbers: 2 copies
            x.float().mean().cpu()  # a result read back: 1
    assert (traffic.to_device, traffic.to_host) == (3 * BATCHES, BATCHES)


@pytest.mark.parametrize("recipe", ["config.yaml", "fast.yaml"])
def test_a_training_epoch_copies_its_draws_to_the_device_once(cifar10, recipe):
    """One copy per epoch (order, crop offsets and mirrors together); none per step, in the loader,
    the training step (forward, backward, optimizer, schedule) or the lookahead."""
    config = load_config(REPO_ROOT / "configs" / recipe, ["width=8"])
    images, labels = _split(cifar10)
    batches = BatchIterator(images, labels, 100, MEAN, STD, train=True, padding=config.crop_padding,
                            pad_mode=config.pad_mode, flip_mode=config.flip_mode, device="meta")
    model = engine.build_model(config, 10).to("meta")
    optimizer = engine.build_optimizer(config, model)
    scheduler = warmup_schedule(optimizer, 2 * BATCHES, BATCHES, config.eta_min, config.schedule)
    scaler = torch.amp.GradScaler("cpu", enabled=False)
    criterion = torch.nn.CrossEntropyLoss(label_smoothing=config.label_smoothing)
    lookahead = Lookahead(every=2, start_epoch=0, total_steps=2 * BATCHES)
    for epoch in range(2):
        batches.set_epoch(epoch)
        with count_traffic("meta") as traffic:
            steps = 0
            for x, y in batches:
                engine.train_step(model, x, y, criterion, optimizer, scaler, scheduler, "fp32")
                steps += 1
                lookahead.after_step(model, epoch * BATCHES + steps, epoch)
        assert steps == BATCHES
        assert (traffic.to_device, traffic.to_host) == (1, 0), \
            f"epoch {epoch}: {traffic.to_device} copies to the device, {traffic.to_host} back, for {steps} steps"


def test_evaluation_copies_nothing_per_batch_and_reads_its_result_once(cifar10):
    images, labels = _split(cifar10)
    batches = BatchIterator(images, labels, 100, MEAN, STD, train=False, device="meta")
    model = engine.build_model(load_config(REPO_ROOT / "configs" / "smoke.yaml", ["width=4"]), 10).to("meta")
    with count_traffic("meta") as traffic:
        evaluate(model, batches)
    assert (traffic.to_device, traffic.to_host) == (0, 1), "loss and accuracy: one read for the whole split"
    with count_traffic("meta") as traffic:
        logits, labels_out = predict(model, batches, tta="flip_translate")
    assert (traffic.to_device, traffic.to_host) == (0, 2), "logits and labels: one copy each for the whole split"
    assert logits.shape == (1000, 10) and logits.device.type == "cpu" and labels_out.shape == (1000,)


def test_the_fused_optimizer_is_chosen_on_cuda_only():
    assert engine.uses_fused_optimizer(torch.device("cuda", 0)) is True
    assert engine.uses_fused_optimizer("cpu") is None  # PyTorch's default: CPU runs keep their arithmetic
    config = load_config(REPO_ROOT / "configs" / "fast.yaml", ["width=8"])
    optimizer = engine.build_optimizer(config, engine.build_model(config, 10))
    assert [group["fused"] for group in optimizer.param_groups] == [None, None]


def test_compiling_keeps_every_batch_and_asks_for_static_shapes(data_dir, monkeypatch):
    """compile does not change the recipe: the smaller last batch stays, compiled as its own shape."""
    config = load_config(REPO_ROOT / "configs" / "smoke.yaml", [f"data_dir={data_dir}", "train_per_class=103"])
    plain = engine.build_data(config, torch.device("cpu")).train
    compiled = engine.build_data(config.replace(compile=True), torch.device("cpu")).train
    assert (len(plain), len(compiled)) == (17, 17)  # 1,030 images in batches of 64: 16 full, 1 of 6
    assert [len(y) for _, y in compiled] == [64] * 16 + [6]
    dropped = engine.build_data(config.replace(compile=True, drop_last=True), torch.device("cpu")).train
    assert len(dropped) == 16, "drop_last stays an explicit key (airbench's loader)"
    asked = []
    monkeypatch.setattr(torch, "compile", lambda model, **kwargs: asked.append(kwargs) or model)
    engine.compile_model(torch.nn.Linear(2, 2))
    assert asked == [{"dynamic": False}], "each batch shape gets its own static graph"


def test_compile_may_change_on_resume_only_if_the_batches_stay_the_same(tmp_path, data_dir):
    """A run made when compile dropped the last batch (its environment.json says drop_last: true)
    resumes only with drop_last: true; a run that kept it resumes with or without compile."""
    config = load_config(REPO_ROOT / "configs" / "smoke.yaml", [f"data_dir={data_dir}", "epochs=1", "warmup_epochs=0"])
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    engine.save_config(config.replace(compile=True), run_dir / "config.yaml")
    (run_dir / "environment.json").write_text('{"drop_last": true}')
    with pytest.raises(engine.RunDirError, match="epochs drop their last batch; drop_last=False .* set drop_last: true"):
        engine._check_same_recipe(run_dir, config)
    engine._check_same_recipe(run_dir, config.replace(drop_last=True))  # the same batches, eager
    (run_dir / "environment.json").write_text('{"drop_last": false}')
    engine._check_same_recipe(run_dir, config)
    engine._check_same_recipe(run_dir, config.replace(compile=True))
