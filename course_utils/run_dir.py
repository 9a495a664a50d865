"""A run directory as a whole: what ``engine.train`` writes there and ``load_run`` reads back.

- ``config.yaml``       the resolved config
- ``environment.json``  versions, device, precision and speed choices
- ``metrics.csv``       one row per epoch (``METRIC_COLUMNS``)
- ``last.pt``, ``best.pt``  checkpoints (``course_utils.checkpoint``), written by the engine
- ``final.json``        the final evaluation, or why the run stopped

Damaged files are one line naming them (``course_utils.run_files``); ``check_same_recipe`` keeps a
run directory from being continued with another recipe.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import os
from pathlib import Path

from course_utils.config import TrainConfig, read_saved_config
from course_utils.run_files import RunDirError, read_final, read_metrics_csv

REPO_ROOT = Path(__file__).resolve().parents[1]
METRIC_COLUMNS = ["epoch", "lr", "train_loss", "train_acc", "val_loss", "val_acc", "epoch_seconds", "images_per_s"]
# Keys that may change between a run and its resumption without changing the result's meaning.
RUNTIME_KEYS = {"device", "compile", "data_dir", "memory_format", "deterministic", "checkpoint_every",
                "eval_batch_size", "device_read_every"}


@dataclasses.dataclass
class Run:
    """A run directory's content, as ``train`` and ``load_run`` return it."""

    run_dir: Path
    config: TrainConfig
    metrics: list[dict]
    final: dict | None  # None while unfinished

    @property
    def finished(self) -> bool:
        return self.final is not None and self.final.get("status") == "finished"

    @property
    def diverged(self) -> bool:
        return self.final is not None and self.final.get("status") == "diverged"


def read_metrics(path: Path) -> list[dict]:
    """The rows of ``metrics.csv``; an empty cell (no validation split) reads as ``None``.
    A damaged file raises ``RunDirError`` naming it."""
    return read_metrics_csv(path, METRIC_COLUMNS)


def write_metrics(path: Path, rows: list[dict]) -> None:
    tmp = path.with_suffix(".csv.tmp")
    with open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=METRIC_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    os.replace(tmp, path)


def write_json(path: Path, payload: dict) -> None:
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(payload, indent=2) + "\n")
    os.replace(tmp, path)


def load_run(run_dir) -> Run:
    """Read a run directory (finished or not) without training."""
    run_dir = Path(run_dir)
    config_path = run_dir / "config.yaml"
    if not config_path.exists():
        raise RunDirError(f"{run_dir}: not a run directory (no config.yaml)")
    config = read_saved_config(config_path)  # damaged files: one line naming them
    return Run(run_dir, config, read_metrics(run_dir / "metrics.csv"), read_final(run_dir / "final.json"))


def check_same_recipe(run_dir: Path, config: TrainConfig) -> None:
    existing_config = load_run(run_dir).config
    existing = existing_config.to_dict()
    for key, value in config.to_dict().items():
        if key not in RUNTIME_KEYS and key != "drop_last" and existing[key] != value:
            raise RunDirError(
                f"{run_dir}: holds a run with {key}={existing[key]!r}, not {value!r}; "
                "use another run directory or delete this one"
            )
    # Earlier runs with compile: true dropped the last batch whatever drop_last said; environment.json
    # records what a run did, so only the batches must match.
    if existing_drops_last(run_dir, existing_config) != config.drop_last:
        kept = "drop" if existing_drops_last(run_dir, existing_config) else "keep"
        raise RunDirError(
            f"{run_dir}: holds a run whose epochs {kept} their last batch; drop_last={config.drop_last!r} "
            f"would not: set drop_last: {str(existing_drops_last(run_dir, existing_config)).lower()}"
        )


def existing_drops_last(run_dir: Path, existing_config: TrainConfig) -> bool:
    """Whether a run directory's epochs dropped their last batch: environment.json's record, else
    (an environment never written) its config's ``drop_last``."""
    environment = run_dir / "environment.json"
    if environment.exists():
        return bool(json.loads(environment.read_text()).get("drop_last", existing_config.drop_last))
    return existing_config.drop_last


def shown_path(path: Path) -> str:
    """``path`` relative to the repository when inside it: logs and notebook outputs stay free
    of machine-specific folders."""
    try:
        return str(Path(path).resolve().relative_to(REPO_ROOT))
    except ValueError:
        return str(path)
