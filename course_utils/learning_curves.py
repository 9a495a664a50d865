"""Numbers read off a run's learning curves: best and last epochs, the train/val gap, the val-loss rise.
"""

from __future__ import annotations

from course_utils import engine


def learning_curve_summary(run: engine.Run) -> dict:
    """Where validation loss bottoms out, and where training accuracy ends (fractions).

    ``final_train_acc_clean`` is the final table's training accuracy (no augmentation), when
    the run finished; ``final_train_acc`` is the last epoch's, measured on training batches.
    """
    rows = run.metrics
    if not rows:
        raise ValueError(f"{run.run_dir}: no finished epoch")
    best = min(rows, key=lambda r: r["val_loss"])
    last = rows[-1]
    clean = run.final["last"]["train"]["accuracy"] if run.finished else float("nan")
    return {
        "epochs": len(rows),
        "min_val_loss_epoch": int(best["epoch"]),
        "min_val_loss": float(best["val_loss"]),
        "final_val_loss": float(last["val_loss"]),
        "val_loss_rise": float(last["val_loss"] - best["val_loss"]),
        "final_train_acc": float(last["train_acc"]),
        "final_train_acc_clean": float(clean),
        "final_val_acc": float(last["val_acc"]),
    }


def format_curve_summaries(summaries: dict[str, dict]) -> str:
    """A text table of ``learning_curve_summary`` results, one line per named run."""
    width = max([len("run")] + [len(name) for name in summaries]) + 2
    lines = [f"{'run':<{width}}{'epochs':>7}{'min val loss (epoch)':>22}{'final val loss':>16}"
             f"{'final train acc':>17}{'final val acc':>15}"]
    for name, s in summaries.items():
        lines.append(f"{name:<{width}}{s['epochs']:>7}{s['min_val_loss']:>14.4f} (ep {s['min_val_loss_epoch']:>2})"
                     f"{s['final_val_loss']:>16.4f}{100 * s['final_train_acc_clean']:>16.2f}%"
                     f"{100 * s['final_val_acc']:>14.2f}%")
    return "\n".join(lines)
