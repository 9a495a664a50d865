"""The learning-rate schedule: per-iteration linear warmup, then a per-iteration cosine (the
reference recipe) or linear decay (the fast recipe)."""

from __future__ import annotations

import math

import torch

SHAPES = ("cosine", "linear")


def lr_at(step: int, total_steps: int, warmup_steps: int, base_lr: float, eta_min: float,
          shape: str = "cosine") -> float:
    """The learning rate of optimizer step ``step`` (0-based) of ``total_steps``.

    - Warmup: ``base_lr * (step + 1) / warmup_steps``, so the first step already moves and
      the last warmup step (``warmup_steps - 1``) runs at exactly ``base_lr``.
    - Then ``shape``: a cosine (``"cosine"``) or a straight line (``"linear"``) from ``base_lr``
      at step ``warmup_steps`` down to exactly ``eta_min`` at the last step (``total_steps - 1``),
      i.e. the last step of the last epoch.
    """
    if step < warmup_steps:
        return base_lr * (step + 1) / warmup_steps
    decay_steps = total_steps - 1 - warmup_steps
    progress = 1.0 if decay_steps <= 0 else min((step - warmup_steps) / decay_steps, 1.0)
    if shape == "cosine":
        remaining = 0.5 * (1.0 + math.cos(math.pi * progress))
    elif shape == "linear":
        remaining = 1.0 - progress
    else:
        raise ValueError(f"shape must be one of {', '.join(SHAPES)}, got {shape!r}")
    return eta_min + (base_lr - eta_min) * remaining


def warmup_schedule(optimizer: torch.optim.Optimizer, total_steps: int, warmup_steps: int, eta_min: float,
                    shape: str = "cosine"):
    """A ``LambdaLR`` following ``lr_at``; call ``scheduler.step()`` after every optimizer step.

    The first parameter group's lr is the base; other groups (e.g. norm biases at a multiple of
    it) follow the same curve scaled by their own lr.
    """
    base_lr = optimizer.param_groups[0]["lr"]
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: lr_at(step, total_steps, warmup_steps, base_lr, eta_min, shape) / base_lr
    )


def warmup_cosine(optimizer: torch.optim.Optimizer, total_steps: int, warmup_steps: int, eta_min: float):
    """The reference recipe's schedule: ``warmup_schedule`` with a cosine."""
    return warmup_schedule(optimizer, total_steps, warmup_steps, eta_min, "cosine")


def schedule_curve(total_steps: int, warmup_steps: int, base_lr: float, eta_min: float,
                   shape: str = "cosine") -> list[float]:
    """Every step's learning rate, for plotting the schedule."""
    return [lr_at(s, total_steps, warmup_steps, base_lr, eta_min, shape) for s in range(total_steps)]
