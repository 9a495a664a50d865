"""Checkpoints: written atomically, loaded with ``weights_only=True``, checked to be ours.

A checkpoint is a dict of tensors and plain Python values (no pickled objects), so loading
it can never execute code. RNG states are converted to tensors/lists for that reason.
"""

from __future__ import annotations

import os
import random
import tempfile
from pathlib import Path

import numpy as np
import torch

FORMAT = "course_utils.checkpoint/1"


class CheckpointError(RuntimeError):
    """A checkpoint file is truncated, unreadable or not one of this course's."""


def save_atomically(state: dict, path: Path) -> None:
    """``torch.save`` to a temporary file in the same folder, then rename over ``path``.

    A kill at any moment leaves either the old file or the new one, never half a file.
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}-", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save({"format": FORMAT, **state}, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_checkpoint(path: Path, map_location="cpu") -> dict:
    """Load a checkpoint of this course safely; raise ``CheckpointError`` naming the file."""
    path = Path(path)
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except FileNotFoundError:
        raise CheckpointError(f"{path}: no such checkpoint") from None
    except Exception as err:  # truncated zip, foreign pickle refused by weights_only, ...
        raise CheckpointError(f"{path}: {_what_is_wrong(err)}") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a course_utils checkpoint (no '{FORMAT}' format tag)")
    return state


def _what_is_wrong(err: Exception) -> str:
    """torch.load's error in a few words (its own messages run to hundreds of characters)."""
    text = str(err)
    if isinstance(err, EOFError) or "zip archive" in text or "central directory" in text:
        return "truncated or damaged checkpoint (an interrupted copy or write?)"
    if "global" in text.lower() and "allowlist" in text.lower():
        return "refused: it holds Python objects that loading would run (checkpoints load with weights_only=True)"
    if "Weights only load failed" in text:
        return "not a PyTorch checkpoint (unreadable with weights_only=True)"
    first_line = next((line for line in text.splitlines() if line.strip()), "")
    return f"unreadable checkpoint ({type(err).__name__}: {first_line[:80]})"


def capture_rng_state() -> dict:
    """Every RNG the run touches: Python, NumPy, torch CPU and all CUDA devices."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    return {
        "python": random.getstate(),
        "numpy": {"keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def restore_rng_state(state: dict) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    np_state = state["numpy"]
    np.random.set_state(("MT19937", np_state["keys"].numpy().astype(np.uint32), np_state["pos"],
                         np_state["has_gauss"], np_state["cached_gaussian"]))
    torch.set_rng_state(state["torch"].cpu())
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])
