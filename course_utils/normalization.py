"""What a normalization layer computes over: moments per channel (BatchNorm) or per group (GroupNorm),
and how much one image's output depends on the rest of its batch.
"""

from __future__ import annotations

import copy

import torch
from torch import nn


def normalized_moments(x: torch.Tensor, over: str, groups: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and std of ``x`` ``(N, C, H, W)`` per normalization unit.

    ``over="channel"``: one unit per channel, over ``(N, H, W)`` (what BatchNorm normalizes).
    ``over="sample_group"``: one unit per sample and group of ``C / groups`` channels, over
    ``(C / groups, H, W)`` (what GroupNorm normalizes). Returns two 1-D tensors.
    """
    if over == "channel":
        flat = x.transpose(0, 1).flatten(1)  # (C, N*H*W)
    elif over == "sample_group":
        flat = x.reshape(x.shape[0] * groups, -1)  # (N*G, C/G*H*W)
    else:
        raise ValueError(f"over must be 'channel' or 'sample_group', got {over!r}")
    return flat.mean(1), flat.std(1, unbiased=False)


def batch_dependence(model: nn.Module, images: torch.Tensor, index: int = 0) -> float:
    """Max |difference| of image ``index``'s logits: alone (batch of 1) vs. inside ``images``, train mode.

    BatchNorm in train mode normalizes with the batch's statistics, so an image's output depends
    on the other images of its batch; GroupNorm's does not. Works on a copy: ``model`` is untouched.
    """
    probe = copy.deepcopy(model).train()
    with torch.no_grad():
        in_batch = probe(images)[index]
        alone = probe(images[index : index + 1])[0]
    return float((in_batch - alone).abs().max())
