"""Benchmark: minutes to 89.5% test accuracy, the laptop track's fp32 config (``configs/fast_laptop.yaml``).

89.5% is what airbench93's own code reached on the offline copy, in fp32 on a 2-core CPU, with all 50,000
training images, 11 epochs and its 6-view TTA (89.48%, one seed: docs/data.md). Test
accuracy is only meaningful at the end of a schedule (the learning rate must have decayed), so
"minutes to 89.5%" is the training time of a whole run whose final test accuracy reaches it: the
config trains once, seed 0, from scratch, and the row gives its minutes of training (the epochs of
``metrics.csv``), its final evaluation apart, and its test accuracy with and without TTA. Nothing is
chosen on the test images: the config's every choice was made on the 40k split's validation images.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import torch

from benchmarks.common import format_table
from course_utils.config import CONFIG_DIR, load_config
from course_utils.engine import train

NAME = "laptop_track"
CONFIG = "fast_laptop.yaml"
TARGET_TEST_ACC = 0.895  # airbench93 on the offline copy (89.48%), rounded up
TARGET_MINUTES = 20.0    # the laptop track's budget for 90%; the row reports 89.5% against it too
DATA_NOTE = ("all 50,000 training images of the offline CIFAR-10 copy, mostly JPEG-degraded: accuracies about "
             "3.5 points below the original's (docs/data.md)")
QUICK_OVERRIDES = ["train_per_class=20", "test_per_class=10", "epochs=2", "warmup_epochs=1", "lookahead_start_epoch=1",
                   "batch_size=50", "width=8"]


def run(device: torch.device, out_dir: Path, *, quick: bool = False, data_dir=None, log=print) -> dict:
    """Train ``CONFIG`` once (seed 0) in a fresh run directory; return the JSON payload."""
    overrides = [f"device={device}", "seed=0"] + (QUICK_OVERRIDES if quick else [])
    if data_dir is not None:
        overrides.append(f"data_dir={data_dir}")
    config = load_config(CONFIG_DIR / CONFIG, overrides)
    run_dir = Path(out_dir) / NAME / "run"
    shutil.rmtree(run_dir, ignore_errors=True)  # a benchmark never resumes old timings
    log(f"data: {DATA_NOTE}")
    log(f"laptop track: {CONFIG}, {config.epochs} epochs on {'all training images' if not config.val_size else 'the split'}, "
        f"seed 0; target {100 * TARGET_TEST_ACC:.1f}% test (with TTA) within {TARGET_MINUTES:g} min of training")
    result = train(config, run_dir, progress=False, log=lambda line: None)
    train_seconds = sum(m["epoch_seconds"] for m in result.metrics)
    test_acc = result.final["last"]["test"]["accuracy"]
    reached = test_acc >= TARGET_TEST_ACC
    row = {"name": CONFIG, "epochs": len(result.metrics), "train_minutes": train_seconds / 60,
           "final_evaluation_minutes": result.final["final_evaluation_seconds"] / 60,
           "test_acc_tta": test_acc, "test_acc_no_tta": result.final["without_tta"]["test"]["accuracy"],
           "minutes_to_target": train_seconds / 60 if reached else None}
    met = reached and train_seconds / 60 <= TARGET_MINUTES
    return {"benchmark": NAME, "title": f"Minutes to {100 * TARGET_TEST_ACC:.1f}% test accuracy: {CONFIG}, seed 0",
            "device": str(device), "data_source": result.final["data_source"], "data_note": DATA_NOTE, "rows": [row], "target_test_acc": TARGET_TEST_ACC, "target_minutes": TARGET_MINUTES,
            "target": {"what": f"{CONFIG} at {100 * TARGET_TEST_ACC:.1f}% test within {TARGET_MINUTES:g} min of training",
                       "met": met},
            "notes": ["minutes are the run's own epoch times (training only); the final evaluation is apart",
                      "test accuracy of the last epoch's weights, 6-view TTA; the config was chosen on validation",
                      f"{100 * TARGET_TEST_ACC:.1f}%: airbench93's own code on the offline copy, fp32, 2-core CPU, "
                      "all 50,000 images, 11 epochs (89.48%, one seed; docs/data.md)"]}


def format_result(payload: dict) -> str:
    columns = [("name", "config", 18), ("epochs", "epochs", 6), ("train_minutes", "train min", 9),
               ("final_evaluation_minutes", "eval min", 8), ("test_acc_tta", "test (TTA)", 10),
               ("test_acc_no_tta", "test (no TTA)", 13), ("minutes_to_target", f"min to {100 * payload['target_test_acc']:.1f}%", 12)]
    rows = [{**r, "train_minutes": f"{r['train_minutes']:.1f}", "final_evaluation_minutes": f"{r['final_evaluation_minutes']:.1f}",
             "test_acc_tta": f"{100 * r['test_acc_tta']:.2f}%", "test_acc_no_tta": f"{100 * r['test_acc_no_tta']:.2f}%",
             "minutes_to_target": "-" if r["minutes_to_target"] is None else f"{r['minutes_to_target']:.1f}"}
            for r in payload["rows"]]
    target = payload["target"]
    lines = [f"== {payload['title']}", format_table(columns, rows),
             f"target: {target['what']}: {'met' if target['met'] else 'NOT met'}"]
    lines += [f"note: {n}" for n in payload["notes"]]
    return "\n".join(lines)
