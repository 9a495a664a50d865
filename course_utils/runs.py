"""Comparing run directories: their state (finished, partial, absent), their digests and results side by side.
"""

from __future__ import annotations

import json
from pathlib import Path

from course_utils.data import Dataset
from course_utils.engine import load_run, load_weights, weights_digest
from course_utils.run_files import read_final
from course_utils.tables import text_table


def run_dataset(config) -> Dataset:
    """The dataset a run of ``config`` trains on, from the engine's in-process cache.

    Loading it through that cache means the lesson and the ``engine.train`` call that follows
    decompress the file once, not twice.
    """
    from course_utils import engine

    return engine.load_dataset_cached(config.dataset, config.data_dir)


def run_state(run_dir) -> str:
    """What ``engine.train`` will do with ``run_dir``: ``"finished"``, ``"diverged"``, ``"resumable"`` or ``"new"``."""
    run_dir = Path(run_dir)
    final = read_final(run_dir / "final.json")  # a damaged file: one line naming it
    if final is not None:
        return final["status"]
    if (run_dir / "last.pt").exists():
        return "resumable"
    return "new"


def compare_runs(run_a, run_b) -> dict:
    """Are two finished runs the same? Weights (sha256 of every tensor), metrics, final table.

    Metrics are compared without the timing columns (``epoch_seconds``, ``images_per_s``);
    the final tables without ``rank_weight_digests`` (compared through the weights already)
    and ``final_evaluation_seconds`` (a timing).
    """
    def without_timings(rows):
        return [{k: v for k, v in row.items() if k not in ("epoch_seconds", "images_per_s")} for row in rows]

    def without_digests(final):
        skip = ("rank_weight_digests", "final_evaluation_seconds")
        return {k: v for k, v in (final or {}).items() if k not in skip}

    a, b = load_run(run_a), load_run(run_b)
    digests = [weights_digest(load_weights(d, "last")[0]) for d in (run_a, run_b)]
    return {
        "digest_a": digests[0], "digest_b": digests[1], "same_weights": digests[0] == digests[1],
        "same_metrics": without_timings(a.metrics) == without_timings(b.metrics),
        "same_final": without_digests(a.final) == without_digests(b.final),
    }


def result_table(run, reference: dict, label: str) -> str:
    """Our final accuracies (last epoch, best-by-validation) next to the reference, as text.

    ``reference``: ``{"train"|"val"|"test": accuracy in %}`` of the original study.
    ``label``: what produced ours (profile, hardware, data); printed above the table.
    """
    final = run.final
    columns = [("ours: last epoch", final["last"])]
    if "best" in final:
        columns.append((f"ours: best val (epoch {final['best']['epoch']})", final["best"]))
    header = ["split"] + [name for name, _ in columns] + ["reference (original study, not ours)"]
    rows = [[split] + [f"{100 * table[split]['accuracy']:.2f}%" for _, table in columns] + [f"~{reference[split]:.2f}%"]
            for split in ("train", "val", "test")]
    return f"ours: {label}\n" + text_table(header, rows)


def run_label(run) -> str:
    """Profile-independent facts of a run for labels: epochs, width, device, precision, data file."""
    env_path = Path(run.run_dir) / "environment.json"
    env = json.loads(env_path.read_text()) if env_path.exists() else {}
    data_source = (run.final or {}).get("data_source", env.get("data_source", "?"))
    return (f"{run.config.model} width {run.config.width}, {run.config.epochs} epochs, "
            f"{env.get('device_name', '?')} ({env.get('precision', '?')}), data {data_source}")
