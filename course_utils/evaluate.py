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


def predict(model: torch.nn.Module, batches, precision: str = "fp32", tta: str = "none") -> tuple[torch.Tensor, torch.Tensor]:
    """All logits and labels of ``batches``, in order (averaged over TTA views, see ``tta_logits``).

    Returns ``logits`` float32 ``(N, num_classes)`` and ``labels`` int64 ``(N,)``, on the CPU.
    The model is put in eval mode (BatchNorm uses its running statistics) and restored after.
    """
    logits, labels = device_predictions(model, batches, precision, tta)
    return logits.cpu(), labels.cpu()  # one copy to the host for the whole split


@torch.inference_mode()  # no autograd bookkeeping at all (version counters, views): the cheapest mode
def device_predictions(model: torch.nn.Module, batches, precision: str = "fp32",
                       tta: str = "none") -> tuple[torch.Tensor, torch.Tensor]:
    """``predict`` without the copy to the host: the logits and labels stay on the batches' device.

    Nothing in the loop waits for the device or copies from it: batch after batch is queued, and
    the caller reads the results once (a GPU never idles between evaluation batches).
    """
    was_training = model.training
    model.eval()
    logits, labels = [], []
    try:
        for x, y in batches:
            with autocast(x.device, precision):
                out = tta_logits(model, x, tta)
            logits.append(out.float())
            labels.append(y)
    finally:
        model.train(was_training)
    if not logits:
        raise ValueError("no batches to evaluate: the split is empty")
    return torch.cat(logits), torch.cat(labels)


def loss_and_accuracy(logits: torch.Tensor, labels: torch.Tensor) -> dict:
    """Plain cross-entropy (no label smoothing: comparable across recipes) and accuracy."""
    loss = F.cross_entropy(logits, labels)
    accuracy = (logits.argmax(1) == labels).float().mean()
    loss, accuracy = torch.stack([loss, accuracy]).tolist()  # one read from the device for both
    return {"loss": loss, "accuracy": accuracy}


def evaluate(model: torch.nn.Module, batches, precision: str = "fp32", tta: str = "none") -> dict:
    """``{"loss", "accuracy"}`` of ``model`` over ``batches`` (accuracy as a fraction), computed on
    the batches' device and read from it once."""
    return loss_and_accuracy(*device_predictions(model, batches, precision, tta))
