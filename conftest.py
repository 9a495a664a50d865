"""Session set-up for every test, notebooks (nbval) included.

- ``COURSE_DATA_DIR``: the real offline CIFAR-10 copy (``$COURSE_DATA_DIR``, else
  ``../shared/data``, else ``data/``). When notebooks are executed, a temporary folder that
  links that copy and adds a synthetic CIFAR-100-format cache made by the tests (no
  CIFAR-100 exists on these machines; notebook 10 says so loudly).
- ``COURSE_PROFILE=smoke`` for kernels started by nbval, which cannot pass parameters.
- ``COURSE_EXPERIMENTS_DIR`` and ``COURSE_FIGURES_DIR``: a temporary folder, so tests never
  touch the committed runs and figures. papermill and nbval share it: nbval's re-execution
  reuses the runs that papermill's execution trained (skip-if-trained).
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent


def _real_data_dir() -> Path:
    if os.environ.get("COURSE_DATA_DIR"):
        return Path(os.environ["COURSE_DATA_DIR"])
    shared = REPO_ROOT.parent / "shared" / "data"
    return shared if (shared / "cifar10.npz").is_file() else REPO_ROOT / "data"


def pytest_configure(config):
    os.environ["COURSE_DATA_DIR"] = str(_real_data_dir())
    scratch = Path(tempfile.mkdtemp(prefix="course-tests-"))
    os.environ.setdefault("COURSE_PROFILE", "smoke")
    os.environ["COURSE_EXPERIMENTS_DIR"] = str(scratch / "experiments")
    os.environ["COURSE_FIGURES_DIR"] = str(scratch / "figures")
    os.environ.setdefault("MPLBACKEND", "Agg")
    config._course_scratch = scratch


def pytest_collection_finish(session):
    """If notebooks will run, give them a data folder with CIFAR-10 and a synthetic CIFAR-100."""
    runs_notebooks = any(
        item.path.suffix == ".ipynb" or item.path.name == "test_notebooks.py" for item in session.items
    )
    if not runs_notebooks:
        return
    real = _real_data_dir()
    notebook_data = session.config._course_scratch / "data"
    notebook_data.mkdir()
    (notebook_data / "cifar10.npz").symlink_to(real / "cifar10.npz")
    sys.path.insert(0, str(REPO_ROOT / "tests"))
    from fake_torchvision import make_fake_cifar100_cache

    make_fake_cifar100_cache(notebook_data)
    os.environ["COURSE_DATA_DIR"] = str(notebook_data)
