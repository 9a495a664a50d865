"""Muon: momentum whose update is orthogonalized, for the convolution filters (lesson 12).

Keller Jordan's optimizer, as airbench94_muon.py uses it: keep SGD's (Nesterov) momentum
buffer, but replace the step direction of each filter bank, viewed as a matrix
``(out_channels, in_channels x k x k)``, by an approximation of its nearest semi-orthogonal
matrix ``U V^T`` (``U S V^T`` its SVD): every direction the momentum points to moves at the same
rate, so rare directions are not drowned out by the dominant ones. Three steps of a quintic
Newton-Schulz iteration (three matrix products each) replace the SVD. The filter's norm is held at
``sqrt(out_channels)`` before each step (weight normalization instead of weight decay).

Groups marked ``orthogonalize=False`` (norm-layer biases, the head) take torch.optim.SGD's
step exactly, so one optimizer (one state dict, one schedule) holds the whole model.
"""
from __future__ import annotations

import torch

# The quintic's coefficients, chosen to maximize its slope at zero (airbench94_muon.py): three steps
# push every singular value near 1 (airbench: about [0.5, 1.5]) rather than exactly onto it, which trains as well.
NEWTON_SCHULZ_COEFFICIENTS = (3.4445, -4.7750, 2.0315)
NEWTON_SCHULZ_STEPS = 3


def orthogonalize(g: torch.Tensor, steps: int = NEWTON_SCHULZ_STEPS, eps: float = 1e-7) -> torch.Tensor:
    """Approximately ``U V^T`` for a 2-D ``g = U S V^T``, by ``steps`` Newton-Schulz iterations.

    Computed in ``g``'s dtype (fp32 on a CPU; airbench uses bf16 on a GPU). Dividing by the Frobenius
    norm puts every singular value in [0, 1], where the iteration converges; it works on the wide
    orientation (rows <= columns) so that ``X X^T`` is the small Gram matrix.
    """
    if g.ndim != 2:
        raise ValueError(f"orthogonalize needs a matrix, got a tensor of shape {tuple(g.shape)}")
    a, b, c = NEWTON_SCHULZ_COEFFICIENTS
    x = g / (g.norm() + eps)
    tall = g.shape[0] > g.shape[1]
    if tall:
        x = x.T
    for _ in range(steps):
        gram = x @ x.T
        x = a * x + (b * gram + c * gram @ gram) @ x
    return x.T if tall else x


class Muon(torch.optim.Optimizer):
    """Muon on the groups with ``orthogonalize=True``, SGD (momentum, Nesterov, weight decay) on the rest.

    Every group has ``lr``, ``momentum``, ``nesterov``, ``weight_decay`` and ``orthogonalize``.
    An orthogonalized group ignores ``weight_decay``: its weights are renormalized instead.
    """

    def __init__(self, params, lr: float = 0.24, momentum: float = 0.6, nesterov: bool = True,
                 weight_decay: float = 0.0, orthogonalize: bool = True):
        if lr < 0 or momentum < 0 or weight_decay < 0:
            raise ValueError(f"Muon needs lr, momentum and weight_decay >= 0, got {lr}, {momentum}, {weight_decay}")
        super().__init__(params, dict(lr=lr, momentum=momentum, nesterov=nesterov, weight_decay=weight_decay,
                                      orthogonalize=orthogonalize))
        for group in self.param_groups:
            if group["orthogonalize"] and any(p.ndim < 2 for p in group["params"]):
                raise ValueError("Muon orthogonalizes matrices and filter banks only: a group with "
                                 "orthogonalize=True holds a parameter with fewer than 2 dimensions")

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            lr, momentum = group["lr"], group["momentum"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                g = p.grad
                if not group["orthogonalize"] and group["weight_decay"]:
                    g = g.add(p, alpha=group["weight_decay"])
                state = self.state[p]
                if "momentum_buffer" not in state:
                    state["momentum_buffer"] = g.clone()
                else:
                    state["momentum_buffer"].mul_(momentum).add_(g)
                buf = state["momentum_buffer"]
                direction = g.add(buf, alpha=momentum) if group["nesterov"] else buf
                if group["orthogonalize"]:
                    p.mul_(len(p) ** 0.5 / p.norm())  # hold the filter bank's norm at sqrt(out_channels)
                    direction = orthogonalize(direction.reshape(len(direction), -1)).view_as(p)
                p.add_(direction, alpha=-lr)
        return loss


__all__ = ["NEWTON_SCHULZ_COEFFICIENTS", "NEWTON_SCHULZ_STEPS", "Muon", "orthogonalize"]
