"""Data parallelism under ``torchrun``: joining the process group, and what the ranks share (sums,
BatchNorm statistics, barriers, weight digests). Every helper is a no-op in a single process."""

from __future__ import annotations

import dataclasses
import hashlib
import os

import torch


@dataclasses.dataclass
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def init_distributed() -> DistInfo:
    """Join the process group when launched by ``torchrun`` (NCCL on GPUs, gloo on CPUs)."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return DistInfo()
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if torch.cuda.is_available() else "gloo")
    return DistInfo(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))


def all_reduce_sum(values: torch.Tensor, dist_info: DistInfo) -> torch.Tensor:
    if dist_info.enabled:
        import torch.distributed as dist

        dist.all_reduce(values)
    return values


def average_buffers(model: torch.nn.Module, dist_info: DistInfo) -> None:
    """Average BatchNorm running statistics over ranks at the end of every epoch.

    In training each rank normalizes with the statistics of its own per-GPU batch (as
    single-GPU BatchNorm does at that batch size; ``sync_batchnorm`` shares them instead).
    The running estimates drift apart between ranks; averaging them makes evaluation and
    checkpoints use all ranks' data and keeps every rank's weights identical.
    """
    if not dist_info.enabled:
        return
    import torch.distributed as dist

    for buffer in model.buffers():
        if buffer.is_floating_point():
            dist.all_reduce(buffer)
            buffer.div_(dist_info.world_size)


def barrier(dist_info: DistInfo) -> None:
    if dist_info.enabled:
        import torch.distributed as dist

        dist.barrier()


def weights_digest(model: torch.nn.Module) -> str:
    """sha256 of every parameter and buffer, to compare weights across ranks or runs."""
    digest = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def gather_digests(model, dist_info: DistInfo) -> list[str]:
    digest = weights_digest(model)
    if not dist_info.enabled:
        return [digest]
    import torch.distributed as dist

    digests = [None] * dist_info.world_size
    dist.all_gather_object(digests, digest)
    return digests
