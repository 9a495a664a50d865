"""The CIFAR ViT trains through the engine with either optimizer arm of lesson 09."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from course_utils.config import load_config

REPO_ROOT = Path(__file__).resolve().parents[1]
CONFIGS = REPO_ROOT / "configs"
# One smoke epoch of a narrow ViT (width 16: embedding dim 48, 3 heads) on 200 images.
TINY = ["model=vit_tiny", "width=16", "train_per_class=20", "val_per_class=10", "epochs=1", "warmup_epochs=0",
        "batch_size=50"]


def test_vit_configs_differ_from_the_reference_only_where_they_say():
    reference = load_config(CONFIGS / "config.yaml").to_dict()
    sgd = load_config(CONFIGS / "vit_sgd.yaml").to_dict()
    adamw = load_config(CONFIGS / "vit_adamw.yaml").to_dict()
    assert {k for k in sgd if sgd[k] != reference[k]} == {"model", "init"}, \
        "vit_sgd.yaml should change only the model (and its init) of the ResNet recipe"
    assert (sgd["model"], sgd["init"]) == ("vit_small", "trunc_normal")
    assert {k for k in adamw if adamw[k] != sgd[k]} == {"optimizer", "lr", "weight_decay"}, \
        "vit_adamw.yaml should change only the optimizer settings of vit_sgd.yaml"
    assert (adamw["optimizer"], adamw["lr"], adamw["weight_decay"]) == ("adamw", 1e-3, 0.05)


@pytest.mark.slow
@pytest.mark.parametrize("arm", ["vit_sgd", "vit_adamw"])
def test_vit_trains_one_epoch_with_each_optimizer_arm(tmp_path, arm):
    from course_utils.engine import train

    config = load_config(CONFIGS / f"{arm}.yaml", TINY)
    assert config.optimizer == ("sgd" if arm == "vit_sgd" else "adamw")
    run = train(config, tmp_path / arm, progress=False, log=lambda *args: None)
    assert run.finished, f"the {arm} run did not finish: {run.final}"
    assert len(run.metrics) == 1
    row = run.metrics[0]
    for key in ("train_loss", "val_loss"):
        assert math.isfinite(row[key]), f"{arm}: {key} is {row[key]}"
    assert row["train_loss"] < 10, f"{arm}: train loss {row['train_loss']} is far above ln(10) = 2.3"
    for split in ("train", "val", "test"):
        assert math.isfinite(run.final["last"][split]["loss"]), f"{arm}: final {split} loss is not finite"
    assert (tmp_path / arm / "last.pt").is_file() and (tmp_path / arm / "final.json").is_file()
