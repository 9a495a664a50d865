"""A PROJECTION, not a measurement: the 200-epoch reference recipe on an H100 and a T4, from facts
measured on the CPU and assumptions stated beside them (``python -m benchmarks.projection``).

Measured here, on any machine: the optimizer steps of the recipe, the PyTorch operators of one
training step and of one evaluation batch (each is at least one kernel launch on a GPU; counted on
the ``meta`` device, which runs the real code on shapes only), the bytes of one ``last.pt``, and
the FLOPs of one training image (``torch.utils.flop_counter``). Assumed: each GPU's dense
tensor-core peak times a utilization (as ``course_utils.timing``), a host cost per eager operator,
and a disk speed for the fsynced checkpoint. A step takes the longer of its compute and its
launches (the host queues launches while the GPU computes).
"""

from __future__ import annotations

import io
import math

import torch
from torch.utils._python_dispatch import TorchDispatchMode

from course_utils import engine
from course_utils.checkpoint import FORMAT
from course_utils.config import CONFIG_DIR, load_config
from course_utils.timing import train_flops_per_image, train_images, validation_images

GPUS = {  # dense tensor-core peak (NVIDIA data sheets) x ASSUMED utilization at CIFAR's small kernels
    "H100 SXM": {"peak_flops": 989e12, "utilization": (0.05, 0.10), "precision": "bf16"},
    "T4": {"peak_flops": 65e12, "utilization": (0.07, 0.10), "precision": "fp16"},
}
LAUNCH_SECONDS = 6e-6  # ASSUMED host cost of one eager PyTorch operator on CUDA (~5-10 us)
DISK_BYTES_PER_S = 1e9  # ASSUMED write + fsync speed of a checkpoint (local NVMe; Colab's disk is slower)


class OperatorCount(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.count = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.count += 1
        return func(*args, **(kwargs or {}))


def measured_facts(config) -> dict:
    """What the CPU can measure about one epoch of ``config`` (the reference recipe)."""
    images, val_images = train_images(config), validation_images(config)
    steps = math.ceil(images / config.batch_size)
    model = engine.build_model(config, 10).to("meta")
    optimizer = engine.build_optimizer(config, model)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    criterion = torch.nn.CrossEntropyLoss()
    scaler = torch.amp.GradScaler("cpu", enabled=False)
    x = torch.zeros(config.batch_size, 3, 32, 32, device="meta")
    y = torch.zeros(config.batch_size, dtype=torch.int64, device="meta")
    engine.train_step(model, x, y, criterion, optimizer, scaler, scheduler, "fp32")  # momentum buffers exist
    with OperatorCount() as train_ops:
        engine.train_step(model, x, y, criterion, optimizer, scaler, scheduler, "fp32")
    with OperatorCount() as step_ops:
        optimizer.step()  # foreach SGD on meta; on CUDA the engine's fused SGD is one or two kernels
    model.eval()
    with OperatorCount() as eval_ops, torch.inference_mode():
        model(torch.zeros(512, 3, 32, 32, device="meta"))

    cpu_model = engine.build_model(config, 10)
    cpu_optimizer = engine.build_optimizer(config, cpu_model)
    cpu_model(torch.randn(2, 3, 32, 32)).sum().backward()
    cpu_optimizer.step()  # the momentum buffers, as in every checkpoint after the first step
    buffer = io.BytesIO()
    torch.save({"format": FORMAT, "model": cpu_model.state_dict(), "optimizer": cpu_optimizer.state_dict()}, buffer)
    return {"train_images": images, "val_images": val_images, "steps_per_epoch": steps, "epochs": config.epochs,
            "steps": steps * config.epochs, "operators_per_step": train_ops.count,
            "optimizer_operators_foreach": step_ops.count, "operators_per_eval_batch_512": eval_ops.count,
            "checkpoint_bytes": buffer.getbuffer().nbytes, "train_flops_per_image": train_flops_per_image(config)}


def project(facts: dict, gpu: str, utilization: float, eval_batch: int, checkpoint_every: int) -> dict:
    spec = GPUS[gpu]
    flops_per_s = spec["peak_flops"] * utilization
    step_compute = facts["train_flops_per_image"] * facts["train_images"] / facts["steps_per_epoch"] / flops_per_s
    fused_ops = facts["operators_per_step"] - facts["optimizer_operators_foreach"] + 2  # fused SGD on CUDA
    step_launch = fused_ops * LAUNCH_SECONDS
    train_s = facts["steps_per_epoch"] * max(step_compute, step_launch)
    eval_batches = math.ceil(facts["val_images"] / eval_batch)
    eval_s = max(facts["train_flops_per_image"] / 3 * facts["val_images"] / flops_per_s,
                 eval_batches * facts["operators_per_eval_batch_512"] * LAUNCH_SECONDS)
    checkpoint_s = facts["checkpoint_bytes"] / DISK_BYTES_PER_S / checkpoint_every
    epoch_s = train_s + eval_s + checkpoint_s
    return {"gpu": gpu, "utilization": utilization, "step_ms_compute": 1e3 * step_compute,
            "step_ms_launch": 1e3 * step_launch, "bound": "compute" if step_compute >= step_launch else "launches",
            "epoch_s": epoch_s, "checkpoint_s_per_epoch": checkpoint_s, "eval_s": eval_s,
            "run_minutes": facts["epochs"] * epoch_s / 60}


def main() -> None:
    reference = load_config(CONFIG_DIR / "config.yaml")
    fast = load_config(CONFIG_DIR / "full_fast.yaml")
    facts = measured_facts(reference)
    print("PROJECTION, not a measurement: the 200-epoch reference recipe (configs/config.yaml)")
    print(f"measured on the CPU: {facts['steps_per_epoch']} steps/epoch x {facts['epochs']} epochs = {facts['steps']:,} "
          f"steps; {facts['operators_per_step']} PyTorch operators per training step ({facts['optimizer_operators_foreach']} "
          f"of them the foreach SGD step, which CUDA fuses into ~2 kernels); {facts['operators_per_eval_batch_512']} per "
          f"evaluation batch; last.pt {facts['checkpoint_bytes'] / 1e6:.1f} MB (weights + momentum); "
          f"{facts['train_flops_per_image'] / 1e9:.2f} GFLOPs per training image (forward + backward)")
    print(f"assumed: {LAUNCH_SECONDS * 1e6:.0f} us of host time per eager operator; checkpoints written at "
          f"{DISK_BYTES_PER_S / 1e9:.0f} GB/s; " + "; ".join(
              f"{gpu} {spec['peak_flops'] / 1e12:.0f} TFLOPS {spec['precision']} peak at "
              + " or ".join(f"{u:.0%}" for u in spec["utilization"]) for gpu, spec in GPUS.items()))
    print(f"{'gpu':<9}{'util':>5}  {'recipe':<40}{'ms/step compute':>16}{'ms/step launch':>15}"
          f"{'s/epoch':>8}{'200 epochs':>11}")
    for gpu, spec in GPUS.items():
        for utilization in spec["utilization"]:
            for name, config in (("full (eval 512, checkpoint every epoch)", reference),
                                 ("full_fast (eval 1000, every 10; eager)", fast)):
                p = project(facts, gpu, utilization, config.eval_batch_size or engine.EVAL_BATCH_SIZE,
                            config.checkpoint_every)
                print(f"{gpu:<9}{utilization:>5.0%}  {name:<40}{p['step_ms_compute']:>16.2f}{p['step_ms_launch']:>15.2f}"
                      f"{p['epoch_s']:>8.2f}{p['run_minutes']:>8.1f} min")


if __name__ == "__main__":
    main()
