"""Evaluation: loss, accuracy and predictions of a model over a batch iterator."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from course_utils.repro import autocast


@torch.no_grad()
def predict(model: torch.nn.Module, batches, precision: str = "fp32") -> tuple[torch.Tensor, torch.Tensor]:
    """All logits and labels of ``batches``, in order.

    Returns ``logits`` float32 ``(N, num_classes)`` and ``labels`` int64 ``(N,)``, on the CPU.
    The model is put in eval mode (BatchNorm uses its running statistics) and restored after.
    """
    was_training = model.training
    model.eval()
    logits, labels = [], []
    try:
        for x, y in batches:
            with autocast(x.device, precision):
                out = model(x)
            logits.append(out.float().cpu())
            labels.append(y.cpu())
    finally:
        model.train(was_training)
    return torch.cat(logits), torch.cat(labels)


def loss_and_accuracy(logits: torch.Tensor, labels: torch.Tensor) -> dict:
    """Plain cross-entropy (no label smoothing: comparable across recipes) and accuracy."""
    return {
        "loss": float(F.cross_entropy(logits, labels)),
        "accuracy": float((logits.argmax(1) == labels).float().mean()),
    }


def evaluate(model: torch.nn.Module, batches, precision: str = "fp32") -> dict:
    """``{"loss", "accuracy"}`` of ``model`` over ``batches`` (accuracy as a fraction)."""
    return loss_and_accuracy(*predict(model, batches, precision))
