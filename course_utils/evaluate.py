"""Evaluation: loss, accuracy and predictions of a model over a batch iterator, with optional
test-time augmentation (TTA)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from course_utils.repro import autocast


TTA_MODES = ("none", "flip", "flip_translate")


def tta_logits(model: torch.nn.Module, x: torch.Tensor, tta: str = "none") -> torch.Tensor:
    """Logits of ``x`` averaged over test-time views (airbench's levels 0, 1 and 2).

    - ``"none"``: one view.
    - ``"flip"``: the image and its mirror image, averaged (2 views).
    - ``"flip_translate"``: half the weight on ``"flip"``, half on ``"flip"`` of the image shifted
      by one pixel up-left and down-right with reflected borders (6 views).
    """
    if tta not in TTA_MODES:
        raise ValueError(f"tta must be one of {', '.join(TTA_MODES)}, got {tta!r}")
    if tta == "none":
        return model(x)
    mirrored = 0.5 * (model(x) + model(x.flip(-1)))
    if tta == "flip":
        return mirrored
    padded = F.pad(x, (1, 1, 1, 1), mode="reflect")
    shifted = (padded[:, :, :-2, :-2], padded[:, :, 2:, 2:])
    translated = sum(0.5 * (model(s) + model(s.flip(-1))) for s in shifted) / len(shifted)
    return 0.5 * mirrored + 0.5 * translated


@torch.no_grad()
def predict(model: torch.nn.Module, batches, precision: str = "fp32", tta: str = "none") -> tuple[torch.Tensor, torch.Tensor]:
    """All logits and labels of ``batches``, in order (averaged over TTA views, see ``tta_logits``).

    Returns ``logits`` float32 ``(N, num_classes)`` and ``labels`` int64 ``(N,)``, on the CPU.
    The model is put in eval mode (BatchNorm uses its running statistics) and restored after.
    """
    was_training = model.training
    model.eval()
    logits, labels = [], []
    try:
        for x, y in batches:
            with autocast(x.device, precision):
                out = tta_logits(model, x, tta)
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


def evaluate(model: torch.nn.Module, batches, precision: str = "fp32", tta: str = "none") -> dict:
    """``{"loss", "accuracy"}`` of ``model`` over ``batches`` (accuracy as a fraction)."""
    return loss_and_accuracy(*predict(model, batches, precision, tta))
