"""Shared fixtures. Tests that touch data use the real offline CIFAR-10 copy and fail without it."""

from __future__ import annotations

import os
from pathlib import Path

import matplotlib
import pytest

matplotlib.use("Agg")  # tests never open windows

REPO_ROOT = Path(__file__).resolve().parents[1]


def offline_data_dir() -> Path:
    """``$COURSE_DATA_DIR`` (set by .ci/run), else ``../shared/data`` if present, else ``data/``."""
    if os.environ.get("COURSE_DATA_DIR"):
        return Path(os.environ["COURSE_DATA_DIR"])
    shared = REPO_ROOT.parent / "shared" / "data"
    return shared if (shared / "cifar10.npz").is_file() else REPO_ROOT / "data"


def pytest_configure(config):
    # Engine runs and subprocesses (train.py, torchrun, papermill) find the data through this.
    os.environ.setdefault("COURSE_DATA_DIR", str(offline_data_dir()))


@pytest.fixture(scope="session")
def data_dir() -> Path:
    path = offline_data_dir()
    if not (path / "cifar10.npz").is_file():
        pytest.fail(
            f"the offline CIFAR-10 copy is missing at {path / 'cifar10.npz'}: "
            "set COURSE_DATA_DIR to the folder holding cifar10.npz (these tests must not skip)"
        )
    return path


@pytest.fixture(scope="session")
def cifar10(data_dir):
    """The real CIFAR-10 arrays (offline copy, mostly JPEG-degraded), loaded once per session."""
    from course_utils.data import load_cifar10

    return load_cifar10(data_dir, download=False)
