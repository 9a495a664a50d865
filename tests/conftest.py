"""Shared fixtures. Tests that touch data use the real offline CIFAR-10 copy and fail without it."""

from __future__ import annotations

import os
from pathlib import Path

import matplotlib
import pytest

matplotlib.use("Agg")  # tests never open windows


def offline_data_dir() -> Path:
    """The folder holding ``cifar10.npz`` for this session (set up by the root conftest.py)."""
    return Path(os.environ["COURSE_DATA_DIR"])


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
