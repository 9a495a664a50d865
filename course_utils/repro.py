"""Reproducibility and the environment: seeds, deterministic mode, device and precision choice."""

from __future__ import annotations

import contextlib
import os
import platform
import random
import warnings

import numpy as np
import torch
import torch.nn.functional as F
import torch.utils.deterministic

from course_utils.config import DEVICE_PATTERN, ConfigError
from course_utils.models import create_model

# cuBLAS is deterministic only with a fixed workspace, and PyTorch reads this setting once, when it
# creates its first cuBLAS handle: so it is set here, at import, before any course code touches the
# GPU (8 buffers of 4 MiB, as PyTorch's reproducibility notes say). A value you exported is kept.
CUBLAS_WORKSPACE = ":4096:8"
os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", CUBLAS_WORKSPACE)
# If CUDA was already in use before this import, cuBLAS may have fixed its workspace without it.
CUDA_IN_USE_BEFORE_IMPORT = torch.cuda.is_initialized()


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (CPU and every CUDA device)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def set_deterministic(enabled: bool = True, device: torch.device | str = "cuda") -> None:
    """Deterministic kernels (``enabled``, the reference recipe) or the fastest ones (the speed configs).

    On a GPU, enabled: cuDNN's deterministic kernels, no autotuning, and PyTorch's deterministic
    algorithms (a few ops have none: those warn instead of failing), with cuBLAS's fixed workspace
    set at this module's import. Runs then repeat on the same GPU model and software versions, not
    across them. ``torch.empty`` is left unfilled: the deterministic mode would fill every new
    tensor with NaN, a memory pass per allocation that buys nothing where every value is written
    before it is read. Disabled: ``cudnn.benchmark`` autotuning picks the fastest kernels by timing
    them, so runs differ in their last bits.

    On a CPU: PyTorch's deterministic-algorithms switch would replace the oneDNN convolutions
    with a reference path about 8x slower, and those kernels already repeat bit for bit for a
    fixed thread count (the kill-and-resume test checks exactly that), so it stays off.
    """
    torch.backends.cudnn.deterministic = enabled
    torch.backends.cudnn.benchmark = not enabled  # autotuning picks kernels by timing: not repeatable
    on_gpu = torch.device(device).type == "cuda"
    if enabled and on_gpu and CUDA_IN_USE_BEFORE_IMPORT:
        warnings.warn("course_utils.repro was imported after CUDA was first used: cuBLAS may have chosen its "
                      "workspace without CUBLAS_WORKSPACE_CONFIG and then not be deterministic; import it first "
                      "or export CUBLAS_WORKSPACE_CONFIG=:4096:8", stacklevel=2)
    torch.use_deterministic_algorithms(enabled and on_gpu, warn_only=True)
    torch.utils.deterministic.fill_uninitialized_memory = False


def resolve_device(requested: str = "auto") -> torch.device:
    """``auto``, ``cpu``, ``cuda`` or ``cuda:N`` as a device of this machine; anything this machine
    lacks raises ``ConfigError`` with one line: what was asked, what is here, what to use instead."""
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if not DEVICE_PATTERN.fullmatch(str(requested)):
        raise ConfigError(f"device {requested!r} is not a device name: use auto, cpu, cuda or cuda:N")
    device = torch.device(requested)
    if device.type == "cuda" and not torch.cuda.is_available():
        build = "this PyTorch is a CPU-only build" if torch.version.cuda is None else "PyTorch sees none"
        raise ConfigError(f"device {requested!r} was asked for, but this machine has no CUDA GPU ({build}); "
                          "use device=cpu or device=auto")
    count = torch.cuda.device_count() if device.type == "cuda" else 0
    if device.index is not None and device.index >= count:
        raise ConfigError(f"device {requested!r} was asked for, but this machine has {count} CUDA GPU(s) "
                          f"(cuda:0 to cuda:{count - 1}); use cuda:0 or device=auto")
    return device


def resolve_precision(device: torch.device, requested: str = "auto") -> str:
    """``auto``: bf16 on GPUs that support it, fp16 (with a gradient scaler) on older GPUs such
    as Colab's T4, fp32 on the CPU (CPU autocast is slower than fp32 for these convs on most CPUs).

    An explicit ``bf16`` is allowed on a CPU: on CPUs with AMX bf16 units (Intel Sapphire Rapids
    and later) it trains the fast net 2.9x faster than fp32 (``python -m benchmarks.run --only
    precision`` prints the ratio for your CPU). fp16 needs a CUDA GPU (its gradient scaler does).
    """
    if requested != "auto":
        if requested == "fp16" and device.type != "cuda":
            raise ConfigError(f"precision 'fp16' needs a CUDA GPU (its gradient scaler does), but this run is on "
                              f"{device.type}; use precision=fp32, bf16 or auto there")
        return requested
    if device.type != "cuda":
        return "fp32"
    # Native bf16 needs compute capability 8.0 (Ampere) or newer. torch.cuda.is_bf16_supported()
    # also counts slow emulation and says yes on a T4 (7.5), where fp16 is the right choice.
    return "bf16" if torch.cuda.get_device_capability(device)[0] >= 8 else "fp16"


CPU_CHANNELS_LAST_MULTIPLE = 16  # channels_last on a CPU only for widths that are a multiple of this


def resolve_channels_last(device: torch.device, requested: str = "auto", width: int | None = None) -> bool:
    """Whether a model of this ``width`` trains in channels-last (NHWC) memory format.

    ``auto``: always on GPUs, where tensor cores want NHWC. On CPUs only when ``width`` is a
    multiple of 16. There NHWC measured 1.18-1.46x faster than NCHW for ResNet-18 at widths 8-64
    (``make bench`` keeps the A/B), but torch 2.14.1's oneDNN backward of a stride-2 1x1
    convolution (the projection shortcut) crashes the process (segfault, double free) in NHWC
    with 4 or 8 input channels and an odd batch size. With 16 and more channels it measured
    correct: its gradients matched NCHW's. An unknown width on a CPU gets NCHW.
    """
    if requested != "auto":
        return requested == "channels_last"
    if device.type == "cuda":
        return True
    return width is not None and width % CPU_CHANNELS_LAST_MULTIPLE == 0


def autocast(device: torch.device, precision: str):
    """The autocast context for a precision name (a no-op for fp32)."""
    if precision == "fp32":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device_type=device.type, dtype=dtype)


def environment_fingerprint(device: torch.device) -> dict:
    """Versions and hardware that a result depends on (no paths, no host names)."""
    info = {
        "python": platform.python_version(),
        "platform": platform.platform(terse=True),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else _cpu_name(),
        "cpu_threads": torch.get_num_threads(),
    }
    try:
        import torchvision

        info["torchvision"] = torchvision.__version__
    except ImportError:  # pragma: no cover - torchvision is a dependency
        info["torchvision"] = None
    return info


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "cpu"


def seeded_gradients(seed: int | None, device="cpu", width: int = 8, batch_size: int = 16) -> torch.Tensor:
    """All parameter gradients (flattened, on the CPU) of one training step from ``seed``.

    Seeds everything (``seed=None``: seeds nothing, the random streams go on where they
    are), builds a ResNet-18 of ``width``, draws a random batch from the same generator and
    back-propagates the cross-entropy. The same seed must give the same bits.
    """
    if seed is not None:
        seed_everything(seed)
    model = create_model("resnet18", width=width).to(device)
    images = torch.randn(batch_size, 3, 32, 32).to(device)
    labels = torch.randint(0, 10, (batch_size,)).to(device)
    F.cross_entropy(model(images), labels).backward()
    return torch.cat([p.grad.flatten() for p in model.parameters()]).cpu()
