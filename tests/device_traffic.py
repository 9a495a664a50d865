"""Count the data that crosses between the host and a device, op by op.

``HostDeviceTraffic(device)`` is a dispatch mode: every tensor operation passes through it, so it
sees each copy from host (CPU) memory to ``device`` (``to_device``) and each copy or scalar read
back (``to_host``). Tensors made from Python numbers straight on the device (``torch.tensor``,
``torch.as_tensor``) bypass dispatch; ``count_traffic`` catches those too.

Without a GPU, the ``meta`` device stands in for one: it computes shapes only, so the whole data
path, a training step and an evaluation run on a CPU-only machine, and what they copy is what they
would copy to and from a GPU. Reads back from ``meta`` have no data; they return zeros (counted).
"""

from __future__ import annotations

import contextlib

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves


def _tensors(tree) -> list[torch.Tensor]:
    return [t for t in tree_leaves(tree) if isinstance(t, torch.Tensor)]


class HostDeviceTraffic(TorchDispatchMode):
    def __init__(self, device):
        super().__init__()
        self.device_type = torch.device(device).type
        self.to_device = 0  # host -> device copies
        self.to_host = 0  # device -> host copies and scalar reads (each one makes the host wait)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        inputs = _tensors((args, kwargs))
        on_device = [t for t in inputs if t.device.type == self.device_type]
        if func is torch.ops.aten._local_scalar_dense.default and on_device:
            self.to_host += 1
            if self.device_type == "meta":
                return 0
        # Inference tensors (evaluation runs under torch.inference_mode) reach this mode as aten.to,
        # not as its _to_copy decomposition.
        if (func in (torch.ops.aten._to_copy.default, torch.ops.aten.to.dtype_layout) and on_device
                and self.device_type == "meta" and torch.device(kwargs.get("device") or "meta").type == "cpu"):
            self.to_host += 1
            return torch.zeros(inputs[0].shape, dtype=kwargs.get("dtype") or inputs[0].dtype)
        out = func(*args, **kwargs)
        outputs = _tensors(out)
        if any(t.device.type == "cpu" for t in inputs) and any(t.device.type == self.device_type for t in outputs):
            self.to_device += 1
        elif on_device and any(t.device.type == "cpu" for t in outputs):
            self.to_host += 1
        return out


@contextlib.contextmanager
def count_traffic(device):
    """``with count_traffic("meta") as traffic: ...``, then read ``traffic.to_device`` / ``to_host``."""
    traffic = HostDeviceTraffic(device)
    factories = {"tensor": torch.tensor, "as_tensor": torch.as_tensor}

    def counted(factory):
        def make(data, *args, **kwargs):
            out = factory(data, *args, **kwargs)
            already_there = isinstance(data, torch.Tensor) and data.device == out.device
            if out.device.type == traffic.device_type and not already_there:
                traffic.to_device += 1
            return out
        return make

    for name, factory in factories.items():
        setattr(torch, name, counted(factory))
    try:
        with traffic:
            yield traffic
    finally:
        for name, factory in factories.items():
            setattr(torch, name, factory)
