"""The learning-rate schedule: per-iteration linear warmup, then per-iteration cosine annealing."""

from __future__ import annotations

import math

import torch


def lr_at(step: int, total_steps: int, warmup_steps: int, base_lr: float, eta_min: float) -> float:
    """The learning rate of optimizer step ``step`` (0-based) of ``total_steps``.

    - Warmup: ``base_lr * (step + 1) / warmup_steps``, so the first step already moves and
      the last warmup step (``warmup_steps - 1``) runs at exactly ``base_lr``.
    - Cosine: from ``base_lr`` at step ``warmup_steps`` down to exactly ``eta_min`` at the last
      step (``total_steps - 1``), i.e. the last step of the last epoch.
    """
    if step < warmup_steps:
        return base_lr * (step + 1) / warmup_steps
    cosine_steps = total_steps - 1 - warmup_steps
    progress = 1.0 if cosine_steps <= 0 else min((step - warmup_steps) / cosine_steps, 1.0)
    return eta_min + (base_lr - eta_min) * 0.5 * (1.0 + math.cos(math.pi * progress))


def warmup_cosine(optimizer: torch.optim.Optimizer, total_steps: int, warmup_steps: int, eta_min: float):
    """A ``LambdaLR`` following ``lr_at``; call ``scheduler.step()`` after every optimizer step."""
    base_lr = optimizer.param_groups[0]["lr"]
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: lr_at(step, total_steps, warmup_steps, base_lr, eta_min) / base_lr
    )


def schedule_curve(total_steps: int, warmup_steps: int, base_lr: float, eta_min: float) -> list[float]:
    """Every step's learning rate, for plotting the schedule."""
    return [lr_at(s, total_steps, warmup_steps, base_lr, eta_min) for s in range(total_steps)]
