"""Reading a run directory's own files with checks: a damaged ``metrics.csv`` or ``final.json``
is one line naming the file and what is wrong with it, never a traceback, and nothing is rewritten.

(``config.yaml`` is read by ``config.read_saved_config``, ``last.pt`` by ``checkpoint.load_checkpoint``.)
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from course_utils.checkpoint import CheckpointError, load_checkpoint

FINAL_STATUSES = ("finished", "diverged")


class RunDirError(RuntimeError):
    """A run directory holds something that this call must not overwrite, or cannot read."""


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise RunDirError(f"{path}: not UTF-8 text (a binary or damaged file); nothing was changed") from None


def _shorten(text: str, limit: int = 60) -> str:
    text = repr(text)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def read_metrics_csv(path: Path, columns: list[str]) -> list[dict]:
    """The rows of a ``metrics.csv`` with exactly ``columns``: ``epoch`` an int, every other
    cell a float or, empty (no validation split), ``None``. A missing file has no rows."""
    path = Path(path)
    if not path.exists():
        return []
    try:
        table = list(csv.reader(io.StringIO(_read_text(path), newline="")))
    except csv.Error as err:
        raise RunDirError(f"{path}: not a CSV file ({err})") from None
    header = table[0] if table else []
    if header != list(columns):
        found = _shorten(",".join(header)) if header else "missing (empty file)"
        raise RunDirError(f"{path}: wrong header {found}, expected {','.join(columns)}")
    rows = []
    for number, cells in enumerate(table[1:], start=1):
        if len(cells) != len(columns):
            raise RunDirError(f"{path}: row {number} has {len(cells)} fields, expected {len(columns)}")
        row = {}
        for key, cell in zip(columns, cells):
            try:
                row[key] = int(cell) if key == "epoch" else None if cell == "" else float(cell)
            except ValueError:
                raise RunDirError(f"{path}: row {number}: {key} is {_shorten(cell, 30)}, not a number") from None
        rows.append(row)
    return rows


def read_final(path: Path) -> dict | None:
    """A run's ``final.json`` (``None`` while the run is unfinished): an object whose ``status``
    is ``finished`` (with its ``last`` table) or ``diverged``."""
    path = Path(path)
    if not path.exists():
        return None
    try:
        final = json.loads(_read_text(path))
    except json.JSONDecodeError as err:
        raise RunDirError(f"{path}: not valid JSON ({err.msg} at line {err.lineno}); nothing was changed") from None
    status = final.get("status") if isinstance(final, dict) else None
    if status not in FINAL_STATUSES:
        raise RunDirError(f"{path}: expected an object whose 'status' is finished or diverged, "
                          f"got {_shorten(json.dumps(final))}")
    if status == "finished" and not isinstance(final.get("last"), dict):
        raise RunDirError(f"{path}: a finished run without its 'last' table")
    return final


def existing_run_message(run_dir: Path) -> str:
    """What ``train(resume=False)`` says, and does, on a directory that already holds a run."""
    run_dir = Path(run_dir)
    checkpoint = run_dir / "last.pt"
    found = "config.yaml"
    if checkpoint.exists():
        try:
            state = load_checkpoint(checkpoint)
            found = f"last.pt after epoch {state['epoch']} of {state['config']['epochs']}"
        except (CheckpointError, KeyError, TypeError):
            found = "an unreadable last.pt"
    if (run_dir / "final.json").exists():
        found += ", final.json"
    return (f"{run_dir}: already holds a run ({found}); without resume nothing is trained and nothing is "
            "overwritten: resume it (train.py --resume, or train(..., resume=True)) or choose another run directory")
