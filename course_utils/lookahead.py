"""Lookahead with an exponential moving average of the weights (hlb-CIFAR10, airbench).

Every ``every`` optimizer steps (from epoch ``start_epoch`` on) the running average moves
towards the current weights, and the weights are then reset to that average: the optimizer
explores, the average keeps what it found. The average's decay grows during training as
``decay_base ** every * (step / total_steps) ** decay_power``: light averaging early, when the
weights should move fast, heavy averaging at the end, which acts like a learning-rate decay.

``sync`` says when else the weights are set to the average (a pull with decay 1):

- ``"every_epoch"`` (the course's fast recipe): at the end of every epoch, so per-epoch
  evaluations and checkpoints see averaged weights; the average starts at the first pull step
  of epoch ``start_epoch``.
- ``"last_step"`` (airbench94): once, after the last step of the run; the average starts at
  step 0 (``begin``), and the steps since the last pull are never thrown away mid-run.
"""

from __future__ import annotations

import torch


SYNCS = ("every_epoch", "last_step")


class Lookahead:
    def __init__(self, every: int, start_epoch: int, total_steps: int,
                 decay_base: float = 0.95, decay_power: float = 3.0, sync: str = "every_epoch"):
        if sync not in SYNCS:
            raise ValueError(f"sync must be one of {', '.join(SYNCS)}, got {sync!r}")
        self.every, self.start_epoch, self.total_steps = every, start_epoch, total_steps
        self.decay_base, self.decay_power, self.sync = decay_base, decay_power, sync
        self.average: dict[str, torch.Tensor] | None = None  # None until the first averaging step

    def begin(self, model: torch.nn.Module) -> None:
        """Call once before the first step: with ``sync="last_step"`` the average starts here
        (a resumed run then loads its saved average over it)."""
        if self.sync == "last_step":
            self.average = {k: v.detach().clone() for k, v in _floats(model).items()}

    def decay(self, step: int) -> float:
        """The average's decay after optimizer step ``step`` (1-based, whole run)."""
        return self.decay_base ** self.every * (step / self.total_steps) ** self.decay_power

    def after_step(self, model: torch.nn.Module, step: int, epoch: int) -> None:
        """Call after optimizer step ``step`` (1-based, counted over the whole run) of ``epoch`` (0-based)."""
        if epoch >= self.start_epoch and step % self.every == 0:
            if self.average is None:
                self.average = {k: v.detach().clone() for k, v in _floats(model).items()}
            else:
                self._pull(model, self.decay(step))
        if self.sync == "last_step" and step == self.total_steps:
            self._pull(model, 1.0)  # weights := average, once, after the last step

    def end_epoch(self, model: torch.nn.Module) -> None:
        if self.sync == "every_epoch" and self.average is not None:
            self._pull(model, 1.0)  # weights := average

    @torch.no_grad()
    def _pull(self, model: torch.nn.Module, decay: float) -> None:
        """average += (1 - decay) * (weights - average); weights := average. One foreach call per
        operation for all tensors (a few kernel launches on a GPU instead of two per tensor); the
        same arithmetic as ``lerp_`` and ``copy_`` tensor by tensor."""
        tensors = _floats(model)
        averages = [self.average[name] for name in tensors]
        torch._foreach_lerp_(averages, list(tensors.values()), 1.0 - decay)
        torch._foreach_copy_(list(tensors.values()), averages)

    def state_dict(self) -> dict:
        return {"average": self.average}

    def load_state_dict(self, state: dict) -> None:
        self.average = state["average"]


def _floats(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Parameters and float buffers (BatchNorm running statistics); step counters are left alone."""
    return {k: v for k, v in model.state_dict(keep_vars=True).items() if v.is_floating_point()}
