"""Benchmark 4: time to accuracy, the laptop ResNet-18 recipe against the fast recipe.

Both recipes train on the real 40k split through ``engine.train``, one epoch of each in turn
(``stop_after_epochs``, then resume), so a change in the machine's load hits both alike. The
clock is each run's own ``metrics.csv`` (training plus the per-epoch validation pass); a recipe
stops when it has passed every threshold, finished its schedule, or used up the time cap.
The per-epoch validation accuracy is plain (no test-time augmentation), for both recipes. Each
recipe's data (split, statistics, iterators on the device) is built once and handed to every
``train`` call of it.
On a GPU the fast recipe's full profile (``configs/fast_gpu.yaml``) runs as a third contestant.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import torch

from benchmarks.common import format_table
from course_utils.config import CONFIG_DIR, load_config
from course_utils.engine import build_data, train

NAME = "time_to_accuracy"
THRESHOLDS = (0.85, 0.90)
BASELINE = "laptop ResNet-18"
FAST = "fast recipe"
QUICK_OVERRIDES = ["train_per_class=20", "val_per_class=10", "test_per_class=10", "epochs=2", "warmup_epochs=1",
                   "batch_size=50", "width=8"]


def contestants(device: torch.device) -> dict[str, str]:
    recipes = {BASELINE: "laptop.yaml", FAST: "fast.yaml"}
    if device.type == "cuda":
        recipes["fast recipe, full profile"] = "fast_gpu.yaml"
    return recipes


def run(device: torch.device, out_dir: Path, *, quick: bool = False, cap_minutes: float = 45.0,
        data_dir=None, log=print) -> dict:
    """Train the recipes side by side, epoch by epoch; return the JSON payload."""
    overrides = [f"device={device}"] + (QUICK_OVERRIDES if quick else [])
    if data_dir is not None:
        overrides.append(f"data_dir={data_dir}")
    configs = {name: load_config(CONFIG_DIR / file, overrides) for name, file in contestants(device).items()}
    run_dirs = {name: Path(out_dir) / NAME / name.replace(" ", "_").replace(",", "") for name in configs}
    for path in run_dirs.values():
        shutil.rmtree(path, ignore_errors=True)  # fresh runs: a benchmark never resumes old timings
    bundles = {name: build_data(config, torch.device(device)) for name, config in configs.items()}  # once per recipe
    elapsed = {name: 0.0 for name in configs}
    reached = {name: {} for name in configs}
    history = {name: [] for name in configs}
    active = list(configs)
    epoch = 0
    log(f"time to accuracy: {', '.join(f'{n} ({contestants(device)[n]}, {c.epochs} epochs)' for n, c in configs.items())}; "
        f"cap {cap_minutes:g} min each; thresholds {', '.join(f'{100 * t:.0f}%' for t in THRESHOLDS)} validation")
    while active:
        for name in list(active):
            run_ = train(configs[name], run_dirs[name], progress=False, log=lambda line: None,
                         stop_after_epochs=epoch + 1, data=bundles[name])
            row = run_.metrics[-1]
            elapsed[name] += row["epoch_seconds"]
            history[name].append({"epoch": row["epoch"], "seconds": elapsed[name], "val_acc": row["val_acc"]})
            for t in THRESHOLDS:
                if row["val_acc"] >= t and t not in reached[name]:
                    reached[name][t] = {"seconds": elapsed[name], "epoch": row["epoch"]}
            log(f"  {name:<28} epoch {row['epoch']:>3}: val {100 * row['val_acc']:6.2f}%  {elapsed[name] / 60:6.1f} min")
            if (len(reached[name]) == len(THRESHOLDS) or row["epoch"] == configs[name].epochs
                    or elapsed[name] > 60 * cap_minutes):
                active.remove(name)
        epoch += 1
    rows = []
    for name in configs:
        row = {"name": name, "config": contestants(device)[name], "epochs_run": len(history[name]),
               "minutes_run": elapsed[name] / 60, "best_val_acc": max(h["val_acc"] for h in history[name])}
        for t in THRESHOLDS:
            row[f"minutes_to_{round(100 * t)}"] = reached[name][t]["seconds"] / 60 if t in reached[name] else None
        rows.append(row)
    ratios = {}
    for t in THRESHOLDS:
        key = f"minutes_to_{round(100 * t)}"
        base, fast = rows[0][key], rows[1][key]
        ratios[key] = None if base is None or fast is None else base / fast
    return {"benchmark": NAME, "title": "Time to validation accuracy: laptop ResNet-18 recipe vs the fast recipe",
            "device": str(device), "baseline": BASELINE, "rows": rows, "history": history, "ratios": ratios,
            "match": time_to_match(history[BASELINE], history[FAST]),
            "cap_minutes": cap_minutes, "thresholds": list(THRESHOLDS),
            "notes": ["minutes are the runs' own epoch times (training + the per-epoch validation pass), "
                      "measured epoch by epoch in turn", "validation accuracy without test-time augmentation",
                      "a '-' means not reached within the recipe's schedule or the cap"]}


def time_to_match(baseline: list[dict], other: list[dict]) -> dict:
    """Minutes until ``other`` first reaches the best validation accuracy that ``baseline`` ever reached,
    against the minutes ``baseline`` took to get there, and their ratio (None if ``other`` never got there).

    Fixed thresholds give no ratio when the baseline never reaches them (the laptop ResNet-18 ends near
    85% on a CPU); "as good as the baseline ever got, how much sooner" always exists.
    """
    best = max(h["val_acc"] for h in baseline)
    base_seconds = next(h["seconds"] for h in baseline if h["val_acc"] >= best)
    other_seconds = next((h["seconds"] for h in other if h["val_acc"] >= best), None)
    return {"val_acc": best, "baseline_minutes": base_seconds / 60,
            "other_minutes": None if other_seconds is None else other_seconds / 60,
            "ratio": None if other_seconds is None else base_seconds / other_seconds}


def format_result(payload: dict) -> str:
    columns = [("name", "recipe", 28), ("epochs_run", "epochs", 6), ("best_val_acc", "best val", 9)]
    columns += [(f"minutes_to_{round(100 * t)}", f"min to {100 * t:.0f}%", 10) for t in payload["thresholds"]]
    rows = [{**r, "best_val_acc": f"{100 * r['best_val_acc']:.2f}%"} for r in payload["rows"]]
    lines = [f"== {payload['title']}", format_table(columns, rows)]
    for key, ratio in payload["ratios"].items():
        threshold = key.rsplit("_", 1)[1]
        lines.append(f"time to {threshold}%: " + (f"the fast recipe is {ratio:.2f}x faster than {payload['baseline']}"
                                                  if ratio else f"no ratio: not both recipes reached {threshold}%"))
    match = payload["match"]
    lines.append(f"time to {payload['baseline']}'s best validation accuracy ({100 * match['val_acc']:.2f}%): "
                 f"{payload['baseline']} {match['baseline_minutes']:.1f} min, fast recipe "
                 + (f"{match['other_minutes']:.1f} min: {match['ratio']:.2f}x faster" if match["ratio"]
                    else "never: no ratio"))
    lines += [f"note: {n}" for n in payload["notes"]]
    return "\n".join(lines)
