"""What only a GPU can check; skipped (with the reason) where there is none. ``make gpu-check`` runs it."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from course_utils.config import load_config
from course_utils.engine import train
from course_utils.loader import BatchIterator

REPO_ROOT = Path(__file__).resolve().parents[1]
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine")


@needs_cuda
def test_augmented_batches_are_identical_on_cpu_and_gpu(cifar10):
    images, labels = cifar10.x_train[:512], cifar10.y_train[:512]
    kwargs = dict(batch_size=128, mean=(0.5,) * 3, std=(0.25,) * 3, train=True, padding=2, pad_mode="reflect",
                  flip_mode="alternating", seed=3)
    for (x_cpu, y_cpu), (x_gpu, y_gpu) in zip(BatchIterator(images, labels, device="cpu", **kwargs),
                                             BatchIterator(images, labels, device="cuda", **kwargs)):
        assert torch.equal(y_cpu, y_gpu.cpu())
        assert torch.allclose(x_cpu, x_gpu.cpu()), "the same seed should give the same augmented batch on any device"


@needs_cuda
@pytest.mark.parametrize("config_name", ["fast.yaml", "smoke.yaml"])
def test_recipes_train_on_the_gpu_with_auto_precision(tmp_path, data_dir, config_name):
    config = load_config(REPO_ROOT / "configs" / config_name,
                         ["train_per_class=100", "val_per_class=20", "test_per_class=20", "epochs=2",
                          "warmup_epochs=1", "batch_size=100", "device=cuda", f"data_dir={data_dir}"])
    run = train(config, tmp_path / "run", progress=False)
    assert run.finished and run.final["last"]["train"]["accuracy"] > 0.15, run.final


@needs_cuda
def test_deterministic_recipe_repeats_bit_for_bit_on_the_gpu(tmp_path, data_dir):
    """Two runs of a deterministic recipe give the same weights: cuDNN, cuBLAS (its workspace set at
    import) and the deterministic algorithms together. The speed configs make no such promise."""
    config = load_config(REPO_ROOT / "configs" / "smoke.yaml",
                         ["train_per_class=50", "val_per_class=10", "test_per_class=10", "epochs=2", "warmup_epochs=1",
                          "device=cuda", "deterministic=true", f"data_dir={data_dir}"])
    digests = [train(config, tmp_path / f"run{i}", progress=False).final["rank_weight_digests"][0] for i in range(2)]
    assert digests[0] == digests[1], f"two deterministic runs on one GPU should give the same weights: {digests}"


@needs_cuda
def test_the_gpu_data_path_copies_an_epochs_draws_once_and_evaluation_reads_once(cifar10):
    """The sync-free data path on a real GPU (tests/test_device_transfers.py checks it on the meta device)."""
    import sys

    sys.path.insert(0, str(Path(__file__).parent))
    from device_traffic import count_traffic

    from course_utils.evaluate import evaluate
    from course_utils.models import create_model

    images, labels = cifar10.x_train[:1000], cifar10.y_train[:1000]
    kwargs = dict(batch_size=100, mean=(0.5,) * 3, std=(0.25,) * 3, device="cuda")
    batches = BatchIterator(images, labels, train=True, padding=2, pad_mode="reflect", flip_mode="alternating", **kwargs)
    with count_traffic("cuda") as traffic:
        served = sum(1 for _ in batches)
    assert (served, traffic.to_device, traffic.to_host) == (10, 1, 0)
    model = create_model("fastnet", num_classes=10, width=8).cuda()
    evaluation = BatchIterator(images, labels, train=False, **kwargs)
    with count_traffic("cuda") as traffic:
        evaluate(model, evaluation)
    assert (traffic.to_device, traffic.to_host) == (0, 1)


@needs_cuda
def test_the_optimizer_is_fused_on_the_gpu_and_steps_with_the_fp16_scaler():
    from course_utils.engine import build_model, build_optimizer, train_step

    config = load_config(REPO_ROOT / "configs" / "fast.yaml", ["width=8"])
    model = build_model(config, 10).cuda()
    optimizer = build_optimizer(config, model)
    assert [group["fused"] for group in optimizer.param_groups] == [True, True]
    before = [p.detach().clone() for p in model.parameters() if p.requires_grad]
    scaler = torch.amp.GradScaler("cuda", init_scale=1024.0)  # the default 65536 may skip a first step on overflow
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    x, y = torch.randn(64, 3, 32, 32, device="cuda"), torch.randint(0, 10, (64,), device="cuda")
    train_step(model, x, y, torch.nn.CrossEntropyLoss(), optimizer, scaler, scheduler, "fp16")
    after = [p.detach() for p in model.parameters() if p.requires_grad]
    assert all(torch.isfinite(p).all() for p in after)
    assert any(not torch.equal(a, b) for a, b in zip(before, after)), "the fused step changed no weight"
