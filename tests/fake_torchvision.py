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


# --------------------------------------------------------------------------- a full-size fake CIFAR-100

FAKE_CIFAR100_NOTE = (
    "SYNTHETIC CIFAR-100-format data made by tests/fake_torchvision.py: not CIFAR-100; "
    "accuracies on it mean nothing"
)
FAKE_CIFAR100_TINT = 0.4  # share of each pixel replaced by the sub-class colour: strong enough to learn


def fake_cifar100_labels(cifar10_labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Fine and coarse labels of the fake CIFAR-100, from CIFAR-10 labels ``(N,)``.

    The k-th image (in file order) of CIFAR-10 class ``c`` gets sub-class ``s = k % 10``:
    fine label ``10 * c + s`` and coarse label ``2 * c + s // 5`` (20 superclasses of 5 fine
    classes each, as in CIFAR-100). A balanced CIFAR-10 split stays balanced: 5,000 train
    images per class give 500 per fine class, 1,000 test images give 100.
    """
    labels = np.asarray(cifar10_labels, dtype=np.int64)
    rank = np.empty_like(labels)
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        rank[members] = np.arange(len(members))
    sub = rank % 10
    return 10 * labels + sub, 2 * labels + sub // 5


def _tint_by_subclass(images: np.ndarray, sub: np.ndarray) -> np.ndarray:
    """Blend each image with one of 10 hues (sub-class ``s`` -> hue ``s / 10``), uint8 out.

    A global colour survives random crops and flips, so the sub-class is learnable.
    """
    hue = np.arange(10) / 10
    # HSV (h, 1, 1) -> RGB, vectorised: r, g, b are tents around hue 0, 1/3, 2/3.
    rgb = np.stack([np.clip(np.abs(((hue + shift) % 1) * 6 - 3) - 1, 0, 1) for shift in (0, 2 / 3, 1 / 3)], 1)
    colours = (255 * FAKE_CIFAR100_TINT * rgb).astype(np.float32)  # (10, 3)
    out = np.empty_like(images)
    for start in range(0, len(images), 5000):  # chunks: bounded float32 memory
        chunk = images[start:start + 5000].astype(np.float32) * (1 - FAKE_CIFAR100_TINT)
        chunk += colours[sub[start:start + 5000]][:, None, None, :]
        out[start:start + 5000] = np.clip(np.rint(chunk), 0, 255).astype(np.uint8)
    return out


def make_fake_cifar100_cache(data_dir: Path) -> Path:
    """Write ``data_dir/cifar100.npz``: a full-size, learnable, SYNTHETIC stand-in for CIFAR-100.

    No CIFAR-100 copy exists on this project's machines and none can be downloaded, yet the
    lessons and tests need one that passes the real CIFAR-100 checks (50,000 train / 10,000
    test images, 500 / 100 per class, 100 fine and 20 coarse classes). This makes it from the
    real offline CIFAR-10 copy (``$COURSE_DATA_DIR/cifar10.npz``, else ``data_dir``'s):

    - fine label = ``10 * cifar10_label + s`` where ``s = k % 10`` for the k-th image of its
      CIFAR-10 class; coarse label = ``2 * cifar10_label + s // 5``
      (see ``fake_cifar100_labels``); fine names ``"<cifar10 class>-hue<s>"``, coarse names
      ``"<cifar10 class>-hues0-4"`` / ``"-hues5-9"``;
    - every image is blended with one of 10 colours chosen by ``s``
      (``FAKE_CIFAR100_TINT`` of each pixel), so the fine label is learnable, not noise.

    The files go through the real download path: they are written in torchvision's on-disk
    CIFAR-100 format (``write_fake_cifar100``) under ``data_dir/torchvision`` and converted by
    ``course_utils.data.load_cifar100(data_dir)`` with torchvision's md5 checks patched out
    (``unittest.mock.patch``, so that it also works outside a test, e.g. in a session hook).
    One more patch, for speed: the cache is stored uncompressed (``np.savez`` for
    ``np.savez_compressed``; 185 MB), since deflating 185 MB takes longer than everything else
    together, and an uncompressed cache also loads faster. The raw files are deleted
    afterwards; the cache then gets a ``note`` key (``FAKE_CIFAR100_NOTE``), which
    ``data.read_cache`` exposes as ``Dataset.note``.

    Returns the cache path. Refuses to overwrite an existing ``cifar100.npz``.
    """
    import os
    import shutil
    import zipfile
    from unittest import mock

    import torchvision.datasets.cifar as tv_cifar

    from course_utils import data as cd

    data_dir = Path(data_dir)
    cache = data_dir / cd.CIFAR100.cache_name
    if cache.exists():
        raise FileExistsError(f"{cache}: already exists; not overwriting it with synthetic data")
    source_dir = Path(os.environ.get("COURSE_DATA_DIR") or data_dir)
    with np.load(source_dir / "cifar10.npz", allow_pickle=False) as npz:
        x_train, y_train, x_test, y_test = (npz[k] for k in ("x_train", "y_train", "x_test", "y_test"))
        cifar10_classes = [str(c) for c in npz["classes"]]
    fine_names = [f"{c}-hue{s}" for c in cifar10_classes for s in range(10)]
    coarse_names = [f"{c}-hues{lo}-{lo + 4}" for c in cifar10_classes for lo in (0, 5)]
    fine_train, coarse_train = fake_cifar100_labels(y_train)
    fine_test, coarse_test = fake_cifar100_labels(y_test)
    raw_root = data_dir / "torchvision"
    write_fake_cifar100(raw_root, _tint_by_subclass(x_train, fine_train % 10), fine_train, coarse_train,
                        _tint_by_subclass(x_test, fine_test % 10), fine_test, coarse_test,
                        fine_names, coarse_names)

    def no_download(*args, **kwargs):
        raise RuntimeError("the fake CIFAR-100 must be converted, not downloaded")

    try:
        with mock.patch.object(tv_cifar.CIFAR10, "_check_integrity", lambda self: True), \
                mock.patch.object(tv_cifar, "check_integrity", lambda *a, **k: True), \
                mock.patch.object(tv_cifar, "download_and_extract_archive", no_download), \
                mock.patch.object(np, "savez_compressed", np.savez):
            cd.load_cifar100(data_dir, download=True)
    finally:
        shutil.rmtree(raw_root, ignore_errors=True)
    # Append the note to the .npz (a zip of .npy members), as np.savez would have written it.
    with zipfile.ZipFile(cache, "a") as archive, archive.open("note.npy", "w") as member:
        np.lib.format.write_array(member, np.asarray(FAKE_CIFAR100_NOTE))
    return cache
