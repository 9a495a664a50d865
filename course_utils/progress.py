"""What the training loop shows: a progress bar per epoch (a widget, or one line of text that a
saved notebook keeps), the epoch's metrics line and the final table."""

from __future__ import annotations

import os


PROGRESS_ENV = "COURSE_PROGRESS"  # "text": plain-text bars even in Jupyter (set by the course runner)


def progress_style(progress) -> str | None:
    """How ``train(progress=...)`` shows its bars: ``None`` (no bar), ``"text"`` or ``"auto"``.

    ``True`` means ``"auto"`` (tqdm's choice: a widget in a live Jupyter, text in a terminal),
    unless ``$COURSE_PROGRESS`` is ``text``: unattended executions (papermill, the course runner)
    set it, because nothing shows a widget live there and a saved notebook keeps only the
    widget's state, not the bar. Text bars stay readable in the saved outputs.
    """
    if not progress:
        return None
    if progress not in (True, "auto", "text"):
        raise ValueError(f"progress must be True, False, 'auto' or 'text', got {progress!r}")
    if progress == "text" or os.environ.get(PROGRESS_ENV, "").lower() == "text":
        return "text"
    return "auto"


def progress_bar(iterable, total: int, description: str, enabled):
    style = progress_style(enabled)
    if style is None:
        return iterable
    if style == "text":
        return text_bar(iterable, total, description)
    from tqdm.auto import tqdm

    return tqdm(iterable, total=total, desc=description, leave=False, dynamic_ncols=True)


def text_bar(iterable, total: int, description: str):
    """A tqdm bar printed once, as one line on stdout, when its epoch ends.

    A saved notebook keeps every intermediate state of a refreshing text bar (one ``\r`` line
    each); this one leaves exactly the final state: steps, time, speed, the running loss and
    accuracy set by ``set_postfix``.
    """
    import io

    from tqdm.std import tqdm

    class EpochBar(tqdm):
        def close(self):
            if not self.disable:
                print(str(self), flush=True)
            super().close()

    return EpochBar(iterable, total=total, desc=description, file=io.StringIO(), ncols=100, ascii=False,
                    mininterval=float("inf"))


def format_epoch(row: dict, epochs: int) -> str:
    val = ("no validation split" if row["val_acc"] is None
           else f"val loss {row['val_loss']:.4f} acc {100 * row['val_acc']:6.2f}%")
    return (
        f"epoch {row['epoch']:>3}/{epochs}  lr {row['lr']:.5f}  "
        f"train loss {row['train_loss']:.4f} acc {100 * row['train_acc']:6.2f}%  {val}  "
        f"{row['epoch_seconds']:6.1f}s  {row['images_per_s']:7.0f} img/s"
    )


def format_final(final: dict) -> str:
    """The final train/val/test table as text (accuracy in %, cross-entropy loss)."""
    lines = [f"{'weights':<18}{'split':<7}{'accuracy':>10}{'loss':>9}"]
    if final.get("tta", "none") != "none":
        lines.insert(0, f"val and test with test-time augmentation '{final['tta']}' (train without)")
    for which in ("last", "best"):
        if which not in final:
            continue
        label = "last epoch" if which == "last" else f"best val (ep {final['best']['epoch']})"
        for split in ("train", "val", "test"):
            if split not in final[which]:  # no validation split
                continue
            r = final[which][split]
            lines.append(f"{label:<18}{split:<7}{100 * r['accuracy']:>9.2f}%{r['loss']:>9.4f}")
    for split, r in final.get("without_tta", {}).items():
        lines.append(f"{'last, no TTA':<18}{split:<7}{100 * r['accuracy']:>9.2f}%{r['loss']:>9.4f}")
    return "\n".join(lines)
