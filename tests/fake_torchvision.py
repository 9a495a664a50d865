"""Write tiny datasets in torchvision's on-disk CIFAR format, for testing the download path.

No CIFAR-100 copy exists on these machines and no download is possible, so the tests make
the raw pickles themselves. Pixels are taken from the real CIFAR-10 copy where given.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest


def _dump(path: Path, obj) -> None:
    with open(path, "wb") as f:
        pickle.dump(obj, f)


def _rows(images: np.ndarray) -> np.ndarray:
    """(N, 32, 32, 3) HWC -> (N, 3072) CHW rows, torchvision's raw layout."""
    return images.transpose(0, 3, 1, 2).reshape(len(images), -1)


def write_fake_cifar10(root: Path, x_train, y_train, x_test, y_test, classes) -> Path:
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    for i, (xs, ys) in enumerate(zip(np.array_split(x_train, 5), np.array_split(y_train, 5)), start=1):
        _dump(folder / f"data_batch_{i}", {"data": _rows(xs), "labels": [int(v) for v in ys]})
    _dump(folder / "test_batch", {"data": _rows(x_test), "labels": [int(v) for v in y_test]})
    _dump(folder / "batches.meta", {"label_names": list(classes)})
    return folder


def write_fake_cifar100(root: Path, x_train, y_train, yc_train, x_test, y_test, yc_test, classes, coarse) -> Path:
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True)
    for name, xs, ys, ycs in (("train", x_train, y_train, yc_train), ("test", x_test, y_test, yc_test)):
        _dump(folder / name, {"data": _rows(xs), "fine_labels": [int(v) for v in ys],
                              "coarse_labels": [int(v) for v in ycs]})
    _dump(folder / "meta", {"fine_label_names": list(classes), "coarse_label_names": list(coarse)})
    return folder


def skip_integrity_checks(monkeypatch) -> None:
    """Patch only torchvision's md5 checks (our fake files cannot match the real checksums)."""
    import torchvision.datasets.cifar as tv_cifar

    monkeypatch.setattr(tv_cifar.CIFAR10, "_check_integrity", lambda self: True)
    monkeypatch.setattr(tv_cifar, "check_integrity", lambda *args, **kwargs: True)
    # Should anything still try to reach the network, fail loudly rather than hang.
    monkeypatch.setattr(tv_cifar, "download_and_extract_archive",
                        lambda *a, **k: pytest.fail("the fake dataset should not be downloaded"))
