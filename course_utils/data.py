"""CIFAR-10 / CIFAR-100 as in-memory arrays: the cache, the download, the split, the statistics.

Every loader returns plain numpy arrays:

- images: ``uint8`` of shape ``(N, 32, 32, 3)`` (HWC, RGB)
- labels: ``int64`` of shape ``(N,)``

Where the data comes from, in order:

1. a cache file ``<data_dir>/cifar10.npz`` (or ``cifar100.npz``), validated on every load;
2. otherwise torchvision's ``download=True``, converted once into that cache (atomically).

``data_dir`` is the argument if given, else ``$COURSE_DATA_DIR``, else ``data/`` at the
repository root. The cache layout is the one of this project's offline copy
(``shared/data/cifar10.npz``): keys ``x_train, y_train, x_test, y_test, classes``; extra keys
are ignored, so that copy can serve as the cache as it is.
"""

from __future__ import annotations

import dataclasses
import os
import pickle
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import torch

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA_DIR = REPO_ROOT / "data"

# Commonly published constants, for comparison only (we compute ours from the 40k split):
# mean/std over all 50k training images of the original CIFAR-10.
PUBLISHED_CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
PUBLISHED_CIFAR10_STD = (0.2470, 0.2435, 0.2616)


class DataError(RuntimeError):
    """A data file is missing, unreadable or not what it claims to be."""


@dataclasses.dataclass(frozen=True)
class DatasetSpec:
    """What a dataset's cache must contain, so a bad file is caught before it is used."""

    name: str
    num_classes: int
    train_per_class: int
    test_per_class: int
    torchvision_name: str  # class name in torchvision.datasets
    extra_label_keys: tuple[str, ...] = ()  # e.g. CIFAR-100's coarse labels

    @property
    def train_size(self) -> int:
        return self.num_classes * self.train_per_class

    @property
    def cache_name(self) -> str:
        return f"{self.name}.npz"


CIFAR10 = DatasetSpec("cifar10", 10, 5000, 1000, "CIFAR10")
CIFAR100 = DatasetSpec(
    "cifar100", 100, 500, 100, "CIFAR100", extra_label_keys=("y_train_coarse", "y_test_coarse")
)
SPECS = {spec.name: spec for spec in (CIFAR10, CIFAR100)}


@dataclasses.dataclass
class Dataset:
    """The train and test arrays of one dataset, with its class names."""

    x_train: np.ndarray  # (N_train, 32, 32, 3) uint8
    y_train: np.ndarray  # (N_train,) int64
    x_test: np.ndarray  # (N_test, 32, 32, 3) uint8
    y_test: np.ndarray  # (N_test,) int64
    classes: list[str]
    source: Path  # the cache file these arrays came from
    extra: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)
    note: str = ""  # the cache's optional ``note`` key, e.g. "synthetic test data"; show it

    @property
    def num_classes(self) -> int:
        return len(self.classes)


def resolve_data_dir(data_dir: str | os.PathLike | None = None) -> Path:
    """The argument, else ``$COURSE_DATA_DIR``, else ``data/`` at the repository root."""
    if data_dir is not None:
        return Path(data_dir)
    if os.environ.get("COURSE_DATA_DIR"):
        return Path(os.environ["COURSE_DATA_DIR"])
    return DEFAULT_DATA_DIR


def load_cifar10(data_dir=None, download: bool = True) -> Dataset:
    """CIFAR-10: 50,000 train and 10,000 test images, 10 classes (see the module docstring)."""
    return load_dataset(CIFAR10, data_dir, download)


def load_cifar100(data_dir=None, download: bool = True) -> Dataset:
    """CIFAR-100 with its 100 fine labels; coarse labels (20 superclasses) are in ``extra``."""
    return load_dataset(CIFAR100, data_dir, download)


def load_dataset(spec: DatasetSpec, data_dir=None, download: bool = True) -> Dataset:
    """Load ``spec`` from its cache in ``data_dir``, downloading and caching it if absent."""
    data_dir = resolve_data_dir(data_dir)
    cache = data_dir / spec.cache_name
    if cache.exists():
        return read_cache(cache, spec)  # a bad cache raises: never silently replaced
    if not download:
        raise DataError(_missing_message(spec, cache))
    arrays = _download_with_torchvision(spec, data_dir, cache)
    validate_arrays(arrays, spec, cache)
    write_cache_atomically(cache, arrays)
    return read_cache(cache, spec)


def _missing_message(spec: DatasetSpec, cache: Path) -> str:
    return (
        f"{spec.name}: no cache at {cache} and the download failed or was disabled. "
        f"Either connect to the internet (torchvision downloads it into {cache.parent}), "
        f"or copy a {spec.cache_name} there, or set COURSE_DATA_DIR to the folder holding one."
    )


def read_cache(path: Path, spec: DatasetSpec = CIFAR10) -> Dataset:
    """Read and validate a cache file; any problem raises one ``DataError`` naming the file."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as npz:
            missing = [k for k in _required_keys(spec) if k not in npz.files]
            if missing:
                raise DataError(f"{path}: not a {spec.name} cache: missing key(s) {missing}")
            arrays = {k: npz[k] for k in _required_keys(spec)}
            note = str(npz["note"]) if "note" in npz.files else ""
    except DataError:
        raise
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as err:
        raise DataError(f"{path}: unreadable as an .npz cache ({type(err).__name__}: {err})") from err
    validate_arrays(arrays, spec, path)
    extra = {k: arrays[k] for k in spec.extra_label_keys}
    extra.update({k: arrays[k] for k in _extra_name_keys(spec)})
    return Dataset(
        x_train=arrays["x_train"],
        y_train=arrays["y_train"],
        x_test=arrays["x_test"],
        y_test=arrays["y_test"],
        classes=[str(c) for c in arrays["classes"]],
        source=path,
        extra=extra,
        note=note,
    )


def _required_keys(spec: DatasetSpec) -> tuple[str, ...]:
    return ("x_train", "y_train", "x_test", "y_test", "classes") + spec.extra_label_keys + _extra_name_keys(spec)


def _extra_name_keys(spec: DatasetSpec) -> tuple[str, ...]:
    return ("coarse_classes",) if spec.extra_label_keys else ()


def validate_arrays(arrays: dict[str, np.ndarray], spec: DatasetSpec, path: Path) -> None:
    """Check shapes, dtypes, label range and class counts; raise ``DataError`` naming the problem."""

    def fail(problem: str):
        raise DataError(f"{path}: {problem}")

    for split, per_class in (("train", spec.train_per_class), ("test", spec.test_per_class)):
        x, y = arrays[f"x_{split}"], arrays[f"y_{split}"]
        n = per_class * spec.num_classes
        if x.dtype != np.uint8:
            fail(f"x_{split} has dtype {x.dtype}, expected uint8")
        if x.shape != (n, 32, 32, 3):
            fail(f"x_{split} has shape {x.shape}, expected {(n, 32, 32, 3)}")
        if y.dtype != np.int64:
            fail(f"y_{split} has dtype {y.dtype}, expected int64")
        if y.shape != (n,):
            fail(f"y_{split} has shape {y.shape}, expected {(n,)}")
        if y.min() < 0 or y.max() >= spec.num_classes:
            fail(f"y_{split} has labels in [{y.min()}, {y.max()}], expected [0, {spec.num_classes - 1}]")
        counts = np.bincount(y, minlength=spec.num_classes)
        if not (counts == per_class).all():
            bad = int(np.flatnonzero(counts != per_class)[0])
            fail(f"y_{split} has {counts[bad]} images of class {bad}, expected {per_class} per class")
    for key in spec.extra_label_keys:  # e.g. coarse labels: one per image of that split
        split = "train" if "train" in key else "test"
        if arrays[key].shape != arrays[f"y_{split}"].shape:
            fail(f"{key} has shape {arrays[key].shape}, expected {arrays[f'y_{split}'].shape}")
    if arrays["classes"].shape != (spec.num_classes,):
        fail(f"classes has shape {arrays['classes'].shape}, expected ({spec.num_classes},)")


def write_cache_atomically(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Write an .npz next to ``path`` and rename it into place: a crash leaves no half file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}-", suffix=".npz")
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez_compressed(f, **arrays)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _download_with_torchvision(spec: DatasetSpec, data_dir: Path, cache: Path) -> dict[str, np.ndarray]:
    """Fetch with torchvision into ``data_dir/torchvision`` and return arrays in cache layout."""
    import torchvision.datasets as tvd

    raw_root = data_dir / "torchvision"
    # The top folder torchvision will create (a mistyped COURSE_DATA_DIR, say): a failed attempt removes it.
    created = next((p for p in reversed([raw_root, *raw_root.parents]) if not p.exists()), None)
    dataset_cls = getattr(tvd, spec.torchvision_name)
    try:
        train = dataset_cls(root=str(raw_root), train=True, download=True)
        test = dataset_cls(root=str(raw_root), train=False, download=True)
    except Exception as err:  # offline, DNS failure, corrupt archive, ...
        if created is not None:
            _remove_empty_folders(created)  # a failed offline attempt leaves nothing behind
        raise DataError(f"{_missing_message(spec, cache)} (download error: {err})") from err
    arrays = {
        "x_train": np.ascontiguousarray(train.data, dtype=np.uint8),
        "y_train": np.asarray(train.targets, dtype=np.int64),
        "x_test": np.ascontiguousarray(test.data, dtype=np.uint8),
        "y_test": np.asarray(test.targets, dtype=np.int64),
        "classes": np.asarray(train.classes, dtype=str),
    }
    if spec.extra_label_keys:
        arrays.update(_cifar100_coarse_labels(Path(train.root) / train.base_folder))
    return arrays


def _remove_empty_folders(root: Path) -> None:
    """Remove ``root`` and its sub-folders if they hold no file (a partial download is kept)."""
    if not root.is_dir():
        return
    for folder in sorted((p for p in root.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True):
        if not any(folder.iterdir()):
            folder.rmdir()
    if not any(root.iterdir()):
        root.rmdir()


def _cifar100_coarse_labels(folder: Path) -> dict[str, np.ndarray]:
    """torchvision exposes only fine labels; the coarse ones are in the same raw pickles."""

    def unpickle(name):
        with open(folder / name, "rb") as f:
            return pickle.load(f, encoding="latin1")

    meta = unpickle("meta")
    return {
        "y_train_coarse": np.asarray(unpickle("train")["coarse_labels"], dtype=np.int64),
        "y_test_coarse": np.asarray(unpickle("test")["coarse_labels"], dtype=np.int64),
        "coarse_classes": np.asarray(meta["coarse_label_names"], dtype=str),
    }


# --------------------------------------------------------------------------- splits and subsets


def split_train_val(
    n_train: int = 50_000,
    n_val: int = 10_000,
    seed: int = 42,
    labels: np.ndarray | None = None,
    stratified: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """Indices of the train/validation split of the ``n_train`` training images.

    Default (``stratified=False``): exactly ``torch.utils.data.random_split(range(n_train),
    [n_train - n_val, n_val], generator=torch.Generator().manual_seed(seed))``, the reference
    recipe's split, so a run of this course uses the same 40k/10k images as the original study.
    A random split is balanced only up to chance: seed 42 puts 963 to 1035 images of each
    class in validation (the hypergeometric standard deviation is about 27).

    ``stratified=True`` (needs ``labels``): ``n_val / num_classes`` images of every class,
    chosen by the same seeded generator; use it for small subsets, where chance imbalance matters.

    ``n_val=0``: no validation split; ``train_idx`` is every image (in the seeded order) and
    ``val_idx`` is empty, for a run that trains on the whole training set.

    Returns ``(train_idx, val_idx)``: disjoint int64 arrays covering ``range(n_train)``.
    """
    if not 0 <= n_val < n_train:
        raise ValueError(f"n_val={n_val} must be in [0, n_train={n_train})")
    generator = torch.Generator().manual_seed(seed)
    if not stratified:
        perm = torch.randperm(n_train, generator=generator).numpy()
        return perm[: n_train - n_val].astype(np.int64), perm[n_train - n_val :].astype(np.int64)
    if labels is None or len(labels) != n_train:
        raise ValueError("stratified=True needs labels of length n_train")
    num_classes = int(labels.max()) + 1
    if n_val % num_classes:
        raise ValueError(f"n_val={n_val} is not divisible by the {num_classes} classes")
    per_class = n_val // num_classes
    val_parts = []
    for c in range(num_classes):
        members = np.flatnonzero(labels == c)
        order = torch.randperm(len(members), generator=generator).numpy()
        val_parts.append(members[order[:per_class]])
    val_idx = np.sort(np.concatenate(val_parts)).astype(np.int64)
    train_idx = np.setdiff1d(np.arange(n_train), val_idx).astype(np.int64)
    return train_idx, val_idx


def stratified_subset(labels: np.ndarray, per_class: int, seed: int = 0) -> np.ndarray:
    """Sorted indices of ``per_class`` images of every class, chosen by a seeded generator.

    For smoke runs and tests: a small subset that keeps the classes balanced.
    """
    labels = np.asarray(labels)
    generator = torch.Generator().manual_seed(seed)
    picks = []
    for c in range(int(labels.max()) + 1):
        members = np.flatnonzero(labels == c)
        if len(members) < per_class:
            raise ValueError(f"class {c} has {len(members)} images, fewer than per_class={per_class}")
        picks.append(members[torch.randperm(len(members), generator=generator).numpy()[:per_class]])
    return np.sort(np.concatenate(picks)).astype(np.int64)


def long_tailed_counts(max_per_class: int, num_classes: int, imbalance_ratio: float) -> np.ndarray:
    """Per-class counts of an exponential long tail: ``n_c = max * ratio ** (-c / (C - 1))``.

    Class 0 keeps ``max_per_class`` images and the last class ``max_per_class / ratio``,
    the CIFAR-LT profile of Cao et al. 2019 (LDAM). Counts are floored, at least 1.
    """
    if imbalance_ratio < 1:
        raise ValueError(f"imbalance_ratio={imbalance_ratio} must be >= 1")
    exponents = np.arange(num_classes) / max(num_classes - 1, 1)
    counts = np.floor(max_per_class * imbalance_ratio ** (-exponents) + 1e-9).astype(np.int64)
    return np.maximum(counts, 1)


def long_tailed_subset(labels: np.ndarray, imbalance_ratio: float, seed: int = 0) -> np.ndarray:
    """Sorted indices of a long-tailed subset of ``labels`` (see ``long_tailed_counts``).

    The per-class maximum is the size of the smallest class, so every class can be served.
    """
    labels = np.asarray(labels)
    num_classes = int(labels.max()) + 1
    available = np.bincount(labels, minlength=num_classes)
    counts = long_tailed_counts(int(available.min()), num_classes, imbalance_ratio)
    generator = torch.Generator().manual_seed(seed)
    picks = []
    for c in range(num_classes):
        members = np.flatnonzero(labels == c)
        picks.append(members[torch.randperm(len(members), generator=generator).numpy()[: counts[c]]])
    return np.sort(np.concatenate(picks)).astype(np.int64)


# --------------------------------------------------------------------------- statistics


def channel_stats(images: np.ndarray) -> tuple[tuple[float, float, float], tuple[float, float, float]]:
    """Per-channel mean and std of uint8 ``(N, 32, 32, 3)`` images, in [0, 1] units.

    Compute them on the training split only (the validation and test images must not leak
    into preprocessing). For reference, the widely published values over all 50k training
    images of the original CIFAR-10 are mean (0.4914, 0.4822, 0.4465), std (0.2470, 0.2435,
    0.2616). A second, also widely copied std, (0.2023, 0.1994, 0.2010), is the mean of the
    per-image stds, a different quantity: it scales the inputs up by about 1.2x.
    """
    x = images.reshape(-1, 3)
    # float64 sums in chunks: exact enough and bounded memory for 40k images.
    total = np.zeros(3)
    total_sq = np.zeros(3)
    for start in range(0, len(x), 1 << 22):
        chunk = x[start : start + (1 << 22)].astype(np.float64)
        total += chunk.sum(0)
        total_sq += (chunk**2).sum(0)
    n = len(x)
    mean = total / n
    std = np.sqrt(total_sq / n - mean**2)
    return tuple(float(m) for m in mean / 255.0), tuple(float(s) for s in std / 255.0)
