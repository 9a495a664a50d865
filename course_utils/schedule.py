"""The learning-rate schedule: per-iteration linear warmup, then a per-iteration cosine (the
reference recipe) or linear decay (the fast recipe).

Two conventions, both per optimizer step:

- the course's (default): the warmup reaches the peak on step ``warmup_steps - 1`` and the
  decay reaches ``eta_min`` exactly on the last step;
- airbench94's (``warmup_start`` given, ``ends_after_last_step``): a straight line from
  ``warmup_start x lr`` at step 0 to the peak at step ``warmup_steps``, then a line that would
  reach ``eta_min`` at step ``total_steps``, one step after the last, so the last step runs just
  above it.
"""

from __future__ import annotations

import math

import torch

SHAPES = ("cosine", "linear")


def lr_at(step: int, total_steps: int, warmup_steps: int, base_lr: float, eta_min: float,
          shape: str = "cosine", warmup_start: float | None = None, ends_after_last_step: bool = False) -> float:
    """The learning rate of optimizer step ``step`` (0-based) of ``total_steps``.

    - Warmup, with ``warmup_start`` None: ``base_lr * (step + 1) / warmup_steps``, so the first
      step already moves and the last warmup step (``warmup_steps - 1``) runs at exactly ``base_lr``.
      With ``warmup_start`` a number: ``base_lr * (warmup_start + (1 - warmup_start) * step / warmup_steps)``,
      ``warmup_start x base_lr`` on step 0 and ``base_lr`` on step ``warmup_steps`` (airbench94).
    - Then ``shape``: a cosine (``"cosine"``) or a straight line (``"linear"``) from ``base_lr``
      at step ``warmup_steps`` down to exactly ``eta_min`` at the last step (``total_steps - 1``),
      or, with ``ends_after_last_step``, at step ``total_steps`` (airbench94's line).
    """
    if step < warmup_steps:
        if warmup_start is None:
            return base_lr * (step + 1) / warmup_steps
        fraction = step / warmup_steps
        return base_lr * (warmup_start * (1 - fraction) + fraction)
    decay_steps = total_steps - warmup_steps - (0 if ends_after_last_step else 1)
    progress = 1.0 if decay_steps <= 0 else min((step - warmup_steps) / decay_steps, 1.0)
    if shape == "cosine":
        remaining = 0.5 * (1.0 + math.cos(math.pi * progress))
    elif shape == "linear":
        remaining = 1.0 - progress
    else:
        raise ValueError(f"shape must be one of {', '.join(SHAPES)}, got {shape!r}")
    return eta_min + (base_lr - eta_min) * remaining


def warmup_schedule(optimizer: torch.optim.Optimizer, total_steps: int, warmup_steps: int, eta_min: float,
                    shape: str = "cosine", warmup_start: float | None = None, ends_after_last_step: bool = False,
                    base_lr: float | None = None):
    """A ``LambdaLR`` following ``lr_at``; call ``scheduler.step()`` after every optimizer step.

    ``eta_min`` is an lr on the scale of ``base_lr`` (default: the first parameter group's lr).
    Every group follows the same curve as a multiple of its own lr, so each ends at
    ``eta_min / base_lr`` of it: norm biases at 64x the lr, or Muon's filters at ``muon_lr``, decay
    by the same fraction as everything else.
    """
    if base_lr is None:
        base_lr = optimizer.param_groups[0]["lr"]
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: lr_at(step, total_steps, warmup_steps, base_lr, eta_min, shape,
                                      warmup_start, ends_after_last_step) / base_lr
    )


def warmup_cosine(optimizer: torch.optim.Optimizer, total_steps: int, warmup_steps: int, eta_min: float):
    """The reference recipe's schedule: ``warmup_schedule`` with a cosine."""
    return warmup_schedule(optimizer, total_steps, warmup_steps, eta_min, "cosine")


def config_warmup_steps(config, steps_per_epoch: int, total_steps: int) -> int:
    """A config's warmup in steps: ``int(warmup_fraction x total_steps)`` (airbench's count), or
    ``warmup_epochs`` whole epochs."""
    if config.warmup_fraction is not None:
        return int(config.warmup_fraction * total_steps)
    return steps_per_epoch * config.warmup_epochs


def config_schedule(optimizer: torch.optim.Optimizer, config, steps_per_epoch: int, total_steps: int):
    """The ``warmup_schedule`` a ``TrainConfig`` asks for (what the engine trains with).

    ``final_lr_fraction`` puts the end of the decay at ``final_lr_fraction x lr`` one step after
    the last (airbench94's 0.07); otherwise the decay reaches ``eta_min`` on the last step."""
    airbench_end = config.final_lr_fraction is not None
    eta_min = config.final_lr_fraction * config.lr if airbench_end else config.eta_min
    # base_lr is the config's lr, whichever group comes first: with Muon the first group is the filters
    # at muon_lr, and eta_min (set on lr's scale) must not be read on theirs.
    return warmup_schedule(optimizer, total_steps, config_warmup_steps(config, steps_per_epoch, total_steps),
                           eta_min, config.schedule, config.warmup_start, ends_after_last_step=airbench_end,
                           base_lr=config.lr)


def schedule_curve(total_steps: int, warmup_steps: int, base_lr: float, eta_min: float,
                   shape: str = "cosine") -> list[float]:
    """Every step's learning rate, for plotting the schedule."""
    return [lr_at(s, total_steps, warmup_steps, base_lr, eta_min, shape) for s in range(total_steps)]
