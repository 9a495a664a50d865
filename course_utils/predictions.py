"""Predictions of a trained run directory on the validation or test split, and its classifier as a function.
"""

from __future__ import annotations

import dataclasses
import os
import zipfile
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from course_utils import engine
from course_utils.calibration import softmax
from course_utils.data import stratified_subset
from course_utils.evaluate import predict
from course_utils.loader import BatchIterator
from course_utils.repro import resolve_device

SPLITS = ("val", "test")


@dataclasses.dataclass
class SplitPredictions:
    """A trained run's logits on one split, with the labels and images they belong to."""

    logits: np.ndarray  # (N, C) float32
    labels: np.ndarray  # (N,) int64
    images: np.ndarray  # (N, 32, 32, 3) uint8 HWC RGB, in the same order
    classes: list[str]
    split: str
    which: str  # "last" or "best" weights
    # (N,) int64: each image's position in the official array it comes from (the training set for
    # "val", the test set for "test"), so published per-image data (e.g. label errors) can be matched.
    indices: np.ndarray | None = None

    @property
    def probs(self) -> np.ndarray:
        """(N, C) softmax probabilities, float64."""
        return softmax(self.logits)

    @property
    def preds(self) -> np.ndarray:
        return self.logits.argmax(axis=1)

    def __iter__(self):  # ``logits, labels = predictions_of_run(...)`` also works
        return iter((self.logits, self.labels))


def _model_and_data(run_dir, which: str, device):
    run = engine.load_run(run_dir)
    device = torch.device(device) if device is not None else resolve_device(run.config.device)
    model, config = engine.load_weights(run_dir, which, device=device)
    return model, engine.build_data(config, device), device


def official_indices(config, split: str) -> np.ndarray:
    """Positions, in the official training ("val") or test ("test") array, of a run's split, in its order.

    The same selection ``engine.build_data`` makes: validation = ``engine.select_train_val``; test =
    the whole test set, or its stratified ``test_per_class`` subset.
    """
    dataset = engine.load_dataset_cached(config.dataset, config.data_dir)
    if split == "val":
        return engine.select_train_val(config, dataset.y_train)[1].astype(np.int64)
    if config.test_per_class is None:
        return np.arange(len(dataset.y_test), dtype=np.int64)
    return np.asarray(stratified_subset(dataset.y_test, config.test_per_class, seed=config.split_seed), dtype=np.int64)


def predictions_of_run(run_dir, split: str = "val", which: str = "last", per_class: int | None = None,
                       device=None) -> SplitPredictions:
    """Logits of a trained run (its ``last`` or ``best`` weights) on ``val`` or ``test``.

    The split, normalization and device are the run's own (``engine.build_data`` on its
    config). ``per_class``: a stratified subset of that many images per class (seeded, the
    same every call), to keep quick profiles quick; None takes the whole split. ``indices``
    gives each image's position in the official training (val) or test (test) array.
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    model, bundle, device = _model_and_data(run_dir, which, device)
    batches = getattr(bundle, split)
    images, labels = batches.images, batches.labels  # uint8 CHW and int64, in the split's order
    indices = official_indices(engine.load_run(run_dir).config, split)
    if len(indices) != len(labels):
        raise RuntimeError(f"{run_dir}: {split} has {len(labels)} images but its official indices number {len(indices)}")
    if per_class is not None:
        chosen = stratified_subset(labels.cpu().numpy(), per_class, seed=0)
        keep = torch.as_tensor(chosen).to(images.device)
        images, labels, indices = images[keep], labels[keep], indices[np.asarray(chosen)]
        batches = BatchIterator(images, labels, batch_size=batches.batch_size, mean=bundle.mean, std=bundle.std,
                                train=False, device=device, channels_last=batches.channels_last)
    logits, labels_out = predict(model, batches)
    return SplitPredictions(logits=logits.numpy(), labels=labels_out.numpy().astype(np.int64),
                            images=images.permute(0, 2, 3, 1).cpu().numpy(), classes=list(bundle.classes),
                            split=split, which=which, indices=indices)


def recorded_logits(run_dir, split: str, which: str = "last", per_class: int | None = None) -> SplitPredictions:
    """``predictions_of_run`` kept beside the run as ``logits-<which>-<split>[-<per_class>].npz``.

    The first call computes the logits from the run's weights and writes the file; later calls, and
    a clone that has the records but not the weights, read it. The file holds logits, labels and
    official indices (no images: ``images`` is an empty array).
    """
    run_dir = Path(run_dir)
    path = run_dir / f"logits-{which}-{split}{'' if per_class is None else f'-{per_class}'}.npz"
    if not path.is_file():
        if not (run_dir / f"{which}.pt").is_file():
            raise FileNotFoundError(f"{run_dir}: neither {path.name} nor {which}.pt, so there are no {split} logits")
        p = predictions_of_run(run_dir, split, which, per_class)
        partial = path.with_name(f".{path.name}.{os.getpid()}.partial.npz")
        np.savez_compressed(partial, logits=p.logits, labels=p.labels, indices=p.indices, classes=np.array(p.classes))
        os.replace(partial, path)  # never a half-written file under the real name
    try:
        with np.load(path) as saved:
            missing = [key for key in ("logits", "labels", "indices", "classes") if key not in saved.files]
            if missing:
                raise ValueError(f"{path}: damaged logits record, key '{missing[0]}' missing; delete it to recompute")
            return SplitPredictions(logits=saved["logits"], labels=saved["labels"], images=np.empty((0, 32, 32, 3), np.uint8),
                                    classes=[str(c) for c in saved["classes"]], split=split, which=which,
                                    indices=saved["indices"])
    except (OSError, zipfile.BadZipFile) as error:
        raise ValueError(f"{path}: damaged logits record ({type(error).__name__}); delete it to recompute") from None


def classifier_of_run(run_dir, which: str = "last", device=None,
                      batch_size: int = 512) -> Callable[[np.ndarray], np.ndarray]:
    """``predict_fn(images) -> (N,) predicted class ids`` for uint8 ``(N, 32, 32, 3)`` images.

    Normalizes with the run's own training-split statistics and batches on the run's device:
    the ``predict_fn`` that ``background_probe.background_probe`` expects.
    """
    model, bundle, device = _model_and_data(run_dir, which, device)
    channels_last = bundle.val.channels_last

    def predict_fn(images: np.ndarray) -> np.ndarray:
        batches = BatchIterator(images, np.zeros(len(images), dtype=np.int64), batch_size=batch_size,
                                mean=bundle.mean, std=bundle.std, train=False, device=device,
                                channels_last=channels_last)
        return predict(model, batches)[0].argmax(1).numpy()

    return predict_fn
