"""Repeat a recipe over seeds and report mean ± std; put finished runs side by side.

One run is one sample: two seeds of the same recipe differ by a few tenths of a point on
CIFAR-10, as much as many "improvements". So the course reports its headline numbers as the
mean ± sample standard deviation over seeds.

- ``run_seeds(config, seeds, root_dir)``: ``engine.train`` once per seed, in ``root_dir/seed<k>``
  (finished runs are returned without training again, as ``train`` always does).
- ``aggregate(runs)``: mean ± std of every final metric (last and best weights; train, val and
  test; accuracy and loss). The std is the *sample* standard deviation (``ddof=1``, dividing
  by n - 1): with n = 1 it is undefined (NaN). ``sem`` is the standard error of the mean,
  std / sqrt(n): how far the mean of n seeds is likely to be from the recipe's true mean.
- ``format_aggregate(agg)``: that as a text table.
- ``compare_runs(runs)``, ``format_rows(rows)``: one row per run (parameters, time per epoch,
  images/s, accuracies, and calibration if predictions are given), for lessons that compare
  models trained under the same recipe; ``train_or_diverged`` trains one arm of such a
  comparison and returns a diverged run instead of raising, since divergence is a result too.

The command line (the papermill/notebook route is lesson 11 calling ``run_seeds``)::

    python -m course_utils.seeds --config configs/smoke.yaml --seeds 0 1 2 [--set k=v] [--root DIR]
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import numpy as np

from course_utils import data as data_lib
from course_utils.config import TrainConfig
from course_utils.engine import (
    Run,
    TrainingDiverged,
    build_data,
    build_model,
    load_run,
    load_weights,
    train,
)
from course_utils.stats import mean_and_standard_error

SPLITS = ("train", "val", "test")
WEIGHTS = ("last", "best")
QUANTITIES = ("accuracy", "loss")


# --------------------------------------------------------------------------- running


def run_seeds(config: TrainConfig, seeds, root_dir, **train_kwargs) -> list[Run]:
    """Train ``config`` once per seed (``config.replace(seed=k)``) in ``root_dir/seed<k>``.

    Only the seed changes: initialization, data order and augmentation. The train/validation
    split (``split_seed``) and any subset stay the same, so the spread measured is that of
    training alone. ``train_kwargs`` go to ``engine.train`` (e.g. ``progress=False``).
    Returns the runs in the order of ``seeds``.
    """
    seeds = [int(s) for s in seeds]
    if not seeds:
        raise ValueError("run_seeds needs at least one seed")
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"seeds must be distinct, got {seeds}")
    root_dir = Path(root_dir)
    return [train(config.replace(seed=seed), root_dir / f"seed{seed}", **train_kwargs) for seed in seeds]


def train_or_diverged(config: TrainConfig, run_dir, **train_kwargs) -> Run:
    """``engine.train``, but a run whose loss became non-finite is returned (``run.diverged``)
    rather than raised: in a comparison, "this recipe diverges" is one of the results.
    Calling it again returns the recorded run at once, diverged or finished."""
    try:
        return train(config, run_dir, **train_kwargs)
    except TrainingDiverged:
        return load_run(run_dir)


# --------------------------------------------------------------------------- aggregating


def final_metrics(run: Run) -> dict[str, float]:
    """A finished run's final table, flat: ``{"last/test/accuracy": 0.93, ...}``.

    Keys ``<weights>/<split>/<quantity>`` for weights ``last`` and (if kept) ``best``, splits
    train/val/test and quantities accuracy (a fraction) and loss (cross-entropy, nats).
    """
    if not run.finished:
        status = "unfinished" if run.final is None else run.final.get("status")
        raise ValueError(f"{run.run_dir}: run is {status}, it has no final metrics")
    return {f"{which}/{split}/{quantity}": float(run.final[which][split][quantity])
            for which in WEIGHTS if which in run.final
            for split in SPLITS for quantity in QUANTITIES}


def aggregate(runs: list[Run]) -> dict[str, dict]:
    """Mean ± sample std of every final metric over ``runs`` (e.g. one recipe over seeds).

    Returns ``{metric: {"mean", "std", "sem", "n", "values", "seeds"}}`` with metric keys as in
    ``final_metrics``; ``values`` and ``seeds`` follow the order of ``runs``. ``std`` is the
    sample standard deviation (``ddof=1``) and ``sem`` the standard error of the mean,
    ``std / sqrt(n)``; both NaN when n = 1. Every run must be finished and
    report the same metrics (the same recipe, seed aside).
    """
    if not runs:
        raise ValueError("aggregate needs at least one run")
    tables = [final_metrics(run) for run in runs]
    keys = list(tables[0])
    for run, table in zip(runs, tables):
        if list(table) != keys:
            raise ValueError(f"{run.run_dir}: reports {sorted(table)}, the first run {sorted(keys)}; "
                             "aggregate runs of one recipe only")
    seeds = [run.config.seed for run in runs]
    result = {}
    for key in keys:
        values = np.array([table[key] for table in tables], dtype=np.float64)
        mean, sem = mean_and_standard_error(values)
        result[key] = {
            "mean": mean,
            "std": float(values.std(ddof=1)) if len(values) > 1 else math.nan,
            "sem": sem,
            "n": len(values),
            "values": values.tolist(),
            "seeds": seeds,
        }
    return result


def format_mean_std(entry: dict, percent: bool = True) -> str:
    """``"93.12 ± 0.15%"`` for a fraction (``percent``), ``"0.2712 ± 0.0031"`` otherwise."""
    if percent:
        return f"{100 * entry['mean']:.2f} ± {100 * entry['std']:.2f}%"
    return f"{entry['mean']:.4f} ± {entry['std']:.4f}"


def format_aggregate(agg: dict[str, dict]) -> str:
    """The aggregate as a text table: one line per metric, mean ± std, standard error, then each seed's value."""
    first = next(iter(agg.values()))
    seeds_header = "  ".join(f"{'seed ' + str(s):>8}" for s in first["seeds"])
    lines = [f"{'weights':<8}{'split':<7}{'metric':<10}{'mean ± std':>20}{'std error':>11}   {seeds_header}"]
    for key, entry in agg.items():
        which, split, quantity = key.split("/")
        percent = quantity == "accuracy"
        values = "  ".join(f"{100 * v:>7.2f}%" if percent else f"{v:>8.4f}" for v in entry["values"])
        sem = f"{100 * entry['sem']:.2f}%" if percent else f"{entry['sem']:.4f}"
        lines.append(f"{which:<8}{split:<7}{quantity:<10}{format_mean_std(entry, percent):>20}{sem:>11}   {values}")
    lines.append(f"n = {first['n']} seeds; ± is the sample standard deviation (ddof=1), "
                 "std error = std / sqrt(n) (the uncertainty of the mean)"
                 + ("; undefined for n = 1" if first["n"] == 1 else ""))
    return "\n".join(lines)


# --------------------------------------------------------------------------- comparing runs


def validation_predictions(run: Run, which: str = "last", device: str = "cpu") -> tuple[np.ndarray, np.ndarray]:
    """Softmax probabilities ``(N_val, C)`` float64 and labels ``(N_val,)`` of a run on its validation split."""
    import torch

    from course_utils.calibration import softmax
    from course_utils.evaluate import predict

    model, config = load_weights(run.run_dir, which, device=device)
    bundle = build_data(config.replace(device=str(device)), torch.device(device))
    logits, labels = predict(model, bundle.val)
    return softmax(logits), labels.numpy()


def compare_runs(runs: dict[str, Run], predictions: dict | None = None) -> list[dict]:
    """One row per finished run, for a side-by-side table (``format_rows``) or plots.

    Columns: ``run``, ``model``, ``width``, ``optimizer``, ``lr``, ``weight_decay``, ``epochs``,
    ``parameters``, ``s/epoch`` and ``img/s`` (medians over epochs of ``metrics.csv``: the
    median ignores the first epoch's warm-up and passing interference; s/epoch includes the
    validation pass, img/s is training only), ``train acc``, ``val acc``, ``test acc`` (last
    weights, train without augmentation), ``best val acc`` and ``status`` (``finished``, or
    e.g. ``diverged (epoch 2)``: its accuracies are then NaN). With ``predictions[label] =
    (probs, labels)`` (e.g. ``validation_predictions``) also ``val ECE`` and ``val NLL``.
    """
    from course_utils.calibration import (
        expected_calibration_error,
        negative_log_likelihood,
    )
    from course_utils.models import count_parameters

    rows = []
    for label, run in runs.items():
        if run.finished:
            metrics, status = final_metrics(run), "finished"
        else:
            metrics = {f"last/{split}/accuracy": math.nan for split in SPLITS}
            status = "unfinished" if run.final is None else f"{run.final['status']} (epoch {run.final.get('epoch')})"
        config = run.config
        num_classes = data_lib.SPECS[config.dataset].num_classes
        row = {
            "run": label, "model": config.model, "width": config.width, "optimizer": config.optimizer,
            "lr": config.lr, "weight_decay": config.weight_decay, "epochs": config.epochs,
            "parameters": count_parameters(build_model(config, num_classes)),
            "s/epoch": _median([r["epoch_seconds"] for r in run.metrics]),
            "img/s": _median([r["images_per_s"] for r in run.metrics]),
            "train acc": metrics["last/train/accuracy"],
            "val acc": metrics["last/val/accuracy"],
            "test acc": metrics["last/test/accuracy"],
            "best val acc": max((r["val_acc"] for r in run.metrics), default=math.nan),
            "status": status,
        }
        if predictions and label in predictions:
            probs, labels = predictions[label]
            row["val ECE"] = expected_calibration_error(probs, labels)
            row["val NLL"] = negative_log_likelihood(probs, labels)
        rows.append(row)
    return rows


def _median(values) -> float:
    return float(np.median(values)) if values else math.nan


def _format_cell(column: str, value) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, str):
        return value
    if column.endswith("acc") or column.endswith("ECE"):
        return f"{100 * value:.2f}%"  # fractions shown in percent
    if isinstance(value, int):
        return f"{value:,}"
    if column in ("s/epoch", "img/s"):
        return f"{value:.1f}" if column == "s/epoch" else f"{value:.0f}"
    return f"{value:.4g}"


def format_rows(rows: list[dict], columns=None) -> str:
    """A list of dicts (e.g. ``compare_runs``) as an aligned text table.

    Fractions in columns named ``*acc`` or ``*ECE`` are shown in %; a missing or NaN value as ``-``.
    """
    columns = list(columns or rows[0])
    cells = [[_format_cell(c, row.get(c)) for c in columns] for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(columns)]
    lines = ["  ".join(c.rjust(w) for c, w in zip(columns, widths))]
    lines += ["  ".join(v.rjust(w) for v, w in zip(r, widths)) for r in cells]
    return "\n".join(lines)


# --------------------------------------------------------------------------- command line


def main(argv=None) -> int:
    from course_utils.checkpoint import CheckpointError
    from course_utils.config import ConfigError, load_config
    from course_utils.data import DataError
    from course_utils.engine import (
        DEFAULT_EXPERIMENTS_DIR,
        RunDirError,
        TrainingDiverged,
    )

    parser = argparse.ArgumentParser(description="Train a config over several seeds and print mean ± std.")
    parser.add_argument("--config", required=True, type=Path, help="a YAML file in configs/")
    parser.add_argument("--seeds", required=True, type=int, nargs="+", help="e.g. --seeds 0 1 2")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config key (repeatable), e.g. --set epochs=10")
    parser.add_argument("--root", type=Path, default=None,
                        help="where the runs go, one seed<k>/ each (default: experiments/<config name>-seeds)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars (epoch lines only)")
    args = parser.parse_args(argv)
    try:
        config = load_config(args.config, args.overrides)
        root = args.root or DEFAULT_EXPERIMENTS_DIR / f"{args.config.stem}-seeds"
        runs = run_seeds(config, args.seeds, root, progress=not args.no_progress)
        table = format_aggregate(aggregate(runs))
    except TrainingDiverged as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    except (ConfigError, DataError, RunDirError, CheckpointError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"{len(runs)} runs in {root}")
    print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
