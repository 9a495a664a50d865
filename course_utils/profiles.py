"""Notebook profiles: how much each lesson computes.

- ``full``:   the reference recipe (200 epochs of ResNet-18), for a GPU: hours. Only when asked.
- ``gpu``:    the reference recipe cut to 30 epochs (``configs/gpu.yaml``) and each lesson's runs
              sized so that none trains more than about an hour on a Colab T4 (estimated).
- ``laptop``: a real result on a 2-core CPU (``configs/laptop.yaml``: narrow, 18 epochs).
- ``smoke``:  minutes for the whole course on a CPU, for CI; its numbers only show it runs.

A notebook's ``profile`` parameter defaults to ``auto``: ``$COURSE_PROFILE`` if set (for tools
such as nbval that cannot pass parameters), else ``gpu`` on a GPU and ``laptop`` on a CPU; never
``full``, which a lesson trains only when asked (``profile = "full"``).
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from course_utils.config import CONFIG_DIR, TrainConfig, load_config

PROFILES = ("smoke", "laptop", "gpu", "full")
CONFIG_OF_PROFILE = {"smoke": "smoke.yaml", "laptop": "laptop.yaml", "gpu": "gpu.yaml", "full": "config.yaml"}
REPO_ROOT = Path(__file__).resolve().parents[1]


def resolve_profile(profile: str = "auto", verbose: bool = True) -> str:
    """``auto`` -> ``$COURSE_PROFILE``, else ``gpu`` on a GPU and ``laptop`` on a CPU (never ``full``)."""
    chosen, why = profile, "asked for"
    if profile == "auto":
        if os.environ.get("COURSE_PROFILE"):
            chosen, why = os.environ["COURSE_PROFILE"], "from $COURSE_PROFILE"
        elif torch.cuda.is_available():
            chosen, why = "gpu", 'a GPU is available; profile = "full" for the 200-epoch recipe'
        else:
            chosen, why = "laptop", "no GPU: the CPU track"
    if chosen not in PROFILES:
        raise ValueError(f"profile {chosen!r} ({why}) is not one of auto, {', '.join(PROFILES)}")
    if verbose:
        print(f"profile: {chosen} ({why})")
    return chosen


def profile_config(profile: str, overrides=()) -> TrainConfig:
    """The training config of a profile (``configs/smoke.yaml``, ``laptop.yaml``, ``gpu.yaml`` or ``config.yaml``)."""
    return load_config(CONFIG_DIR / CONFIG_OF_PROFILE[profile], overrides)


def experiments_dir() -> Path:
    """Where runs live: ``$COURSE_EXPERIMENTS_DIR``, else ``experiments/`` at the repository root."""
    return Path(os.environ.get("COURSE_EXPERIMENTS_DIR") or REPO_ROOT / "experiments")


def run_dir_for(profile: str, name: str) -> Path:
    """The run directory of run ``name`` in ``profile``: ``experiments/<profile>/<name>``.

    Notebooks share runs through these paths: lesson 05 trains ``resnet18`` and lessons 07
    and 08 load it (or train it, if you run them first).
    """
    return experiments_dir() / profile / name


def figures_dir(profile: str) -> Path:
    """Where a lesson saves its figures (created if needed).

    ``$COURSE_FIGURES_DIR`` if set; else ``figures/`` for the ``laptop``, ``gpu`` and ``full`` profiles
    (the committed figures come from a real run of one of them) and ``build/figures-smoke/``
    for ``smoke``, so that a quick check never overwrites real results.
    """
    if os.environ.get("COURSE_FIGURES_DIR"):
        path = Path(os.environ["COURSE_FIGURES_DIR"])
    elif profile == "smoke":
        path = REPO_ROOT / "build" / "figures-smoke"
    else:
        path = REPO_ROOT / "figures"
    path.mkdir(parents=True, exist_ok=True)
    return path
