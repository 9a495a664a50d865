"""CIFAR-100: the download path with coarse labels, bad caches, the long-tailed subset, the fake copy.

No CIFAR-100 copy exists on these machines: the tests write torchvision-format files made
from real CIFAR-10 images (``fake_torchvision``) and convert them through the real code.
"""

from __future__ import annotations

import dataclasses
import shutil

import numpy as np
import pytest

from course_utils import data as cd
from course_utils.config import TrainConfig
from course_utils.engine import select_train_val
from cache_checks import assert_bad_cache_is_rejected_untouched
from fake_torchvision import (
    FAKE_CIFAR100_NOTE,
    fake_cifar100_labels,
    make_fake_cifar100_cache,
    skip_integrity_checks,
    write_fake_cifar100,
)

# 2 train and 1 test image per fine class: 200 + 100 images.
TINY = dataclasses.replace(cd.CIFAR100, train_per_class=2, test_per_class=1)
FINE = [f"fine{i:02d}" for i in range(100)]
COARSE = [f"coarse{i:02d}" for i in range(20)]


@pytest.fixture(scope="module")
def tiny_arrays(cifar10):
    """A valid tiny CIFAR-100 cache's arrays, from 20 train / 10 test real images per CIFAR-10 class."""
    train = cd.stratified_subset(cifar10.y_train, 20)
    test = cd.stratified_subset(cifar10.y_test, 10)
    y_train, yc_train = fake_cifar100_labels(cifar10.y_train[train])
    y_test, yc_test = fake_cifar100_labels(cifar10.y_test[test])
    return {
        "x_train": cifar10.x_train[train], "y_train": y_train, "y_train_coarse": yc_train,
        "x_test": cifar10.x_test[test], "y_test": y_test, "y_test_coarse": yc_test,
        "classes": np.asarray(FINE), "coarse_classes": np.asarray(COARSE),
    }


# --------------------------------------------------------------------------- the download path


def test_fake_labels_are_balanced_and_coarse_groups_five_fine_classes(cifar10):
    fine, coarse = fake_cifar100_labels(cifar10.y_train)
    assert np.bincount(fine, minlength=100).tolist() == [500] * 100, "500 train images per fine class expected"
    assert np.bincount(coarse, minlength=20).tolist() == [2500] * 20, "2,500 train images per superclass expected"
    assert np.array_equal(coarse, fine // 5), "every superclass should hold 5 consecutive fine classes"
    assert np.array_equal(fine // 10, cifar10.y_train), "fine label // 10 should give back the CIFAR-10 class"


def test_torchvision_cifar100_converts_with_coarse_labels_and_loads_back(tmp_path, monkeypatch, tiny_arrays):
    v = tiny_arrays
    write_fake_cifar100(tmp_path / "torchvision", v["x_train"], v["y_train"], v["y_train_coarse"],
                        v["x_test"], v["y_test"], v["y_test_coarse"], FINE, COARSE)
    skip_integrity_checks(monkeypatch)
    ds = cd.load_dataset(TINY, tmp_path, download=True)
    cache = tmp_path / "cifar100.npz"
    assert cache.is_file(), "the converted download was not cached"
    for key in ("x_train", "y_train", "x_test", "y_test"):
        assert np.array_equal(getattr(ds, key), v[key]), f"{key} changed between torchvision files and cache"
    assert ds.classes == FINE and ds.num_classes == 100
    for key in ("y_train_coarse", "y_test_coarse"):
        assert key in ds.extra, f"coarse labels {key} missing from Dataset.extra"
        assert np.array_equal(ds.extra[key], v[key]), f"{key} differ from the raw pickles' coarse_labels"
    assert [str(c) for c in ds.extra["coarse_classes"]] == COARSE, "coarse class names lost"
    assert ds.note == "", "a real (non-synthetic) conversion should carry no note"
    # The second load reads the cache and never rewrites it, even with the raw files gone.
    stamp = cache.stat().st_mtime_ns
    shutil.rmtree(tmp_path / "torchvision")
    again = cd.load_dataset(TINY, tmp_path, download=True)
    assert np.array_equal(again.extra["y_test_coarse"], v["y_test_coarse"])
    assert cache.stat().st_mtime_ns == stamp, "a valid cache was rewritten"


# --------------------------------------------------------------------------- bad caches


def _corruptions(valid):
    def with_(key, value):
        return {**valid, key: value}

    def without(key):
        return {k: v for k, v in valid.items() if k != key}

    return {
        "missing coarse labels": (without("y_train_coarse"), "missing key(s) ['y_train_coarse']"),
        "missing coarse names": (without("coarse_classes"), "missing key(s) ['coarse_classes']"),
        "coarse labels wrong shape": (with_("y_test_coarse", valid["y_test_coarse"][:-1]),
                                      "y_test_coarse has shape (99,), expected (100,)"),
        "images wrong shape": (with_("x_train", valid["x_train"][:, :, :16]), "x_train has shape (200, 32, 16, 3)"),
        "fine label out of range": (with_("y_test", np.where(valid["y_test"] == 99, 100, valid["y_test"])),
                                    "y_test has labels in [0, 100], expected [0, 99]"),
    }


@pytest.mark.parametrize("case", ["missing coarse labels", "missing coarse names", "coarse labels wrong shape",
                                  "images wrong shape", "fine label out of range"])
def test_bad_cifar100_cache_names_file_and_problem_and_is_left_untouched(tmp_path, tiny_arrays, case):
    arrays, expected = _corruptions(tiny_arrays)[case]
    assert_bad_cache_is_rejected_untouched(TINY, tmp_path, arrays, expected)


# --------------------------------------------------------------------------- long tail


def test_long_tailed_counts_fall_from_500_to_5_at_ratio_100():
    counts = cd.long_tailed_counts(500, 100, 100)
    assert counts[0] == 500 and counts[-1] == 5, f"head {counts[0]}, tail {counts[-1]}: expected 500 and 5"
    assert counts[0] / counts[-1] == 100, "largest/smallest should equal the imbalance ratio"
    assert np.all(np.diff(counts) <= 0), "counts should never increase along the classes"
    assert counts[50] == int(500 * 100 ** (-50 / 99)), "the middle class should follow the exponential profile"


def test_long_tailed_subset_has_the_requested_counts_and_is_deterministic():
    labels = np.repeat(np.arange(100), 500)  # 500 images per class, as CIFAR-100's train set
    np.random.default_rng(0).shuffle(labels)
    idx = cd.long_tailed_subset(labels, 100, seed=3)
    got = np.bincount(labels[idx], minlength=100)
    assert np.array_equal(got, cd.long_tailed_counts(500, 100, 100)), f"per-class counts {got[:3]}...{got[-3:]}"
    assert got.max() / got.min() == 100
    assert len(np.unique(idx)) == len(idx) and np.all(np.diff(idx) > 0), "indices should be sorted and unique"
    assert np.array_equal(idx, cd.long_tailed_subset(labels, 100, seed=3)), "same seed, different subset"
    other = cd.long_tailed_subset(labels, 100, seed=4)
    assert np.array_equal(np.bincount(labels[other], minlength=100), got), "the counts must not depend on the seed"
    assert not np.array_equal(idx, other), "another seed should pick other images"


# --------------------------------------------------------------------------- the full-size fake copy


@pytest.fixture(scope="module")
def fake_cifar100(tmp_path_factory, data_dir):
    fake_dir = tmp_path_factory.mktemp("fake-cifar100")
    (fake_dir / "cifar10.npz").symlink_to(data_dir / "cifar10.npz")
    cache = make_fake_cifar100_cache(fake_dir)
    return cd.load_cifar100(fake_dir, download=False), cache


def test_fake_cifar100_cache_loads_with_100_classes_and_says_it_is_synthetic(fake_cifar100):
    ds, cache = fake_cifar100
    assert cache.name == "cifar100.npz" and ds.source == cache
    assert ds.num_classes == 100 and len(ds.extra["coarse_classes"]) == 20
    assert np.bincount(ds.y_train).tolist() == [500] * 100 and np.bincount(ds.y_test).tolist() == [100] * 100
    assert ds.note == FAKE_CIFAR100_NOTE and "SYNTHETIC" in ds.note and "mean nothing" in ds.note
    assert np.array_equal(ds.extra["y_train_coarse"], ds.y_train // 5), "coarse labels should group 5 fine classes"
    assert not (cache.parent / "torchvision").exists(), "the raw torchvision files should be removed"
    with pytest.raises(FileExistsError):
        make_fake_cifar100_cache(cache.parent)  # never overwrites a cache


def test_fake_cifar100_sub_classes_differ_in_colour(fake_cifar100):
    # The tint makes the fine label learnable: mean colour differs between the hues of one class.
    ds, _ = fake_cifar100
    means = np.stack([ds.x_train[ds.y_train == f].reshape(-1, 3).mean(0) for f in range(10)])  # airplane hues
    gaps = np.abs(means[:, None] - means[None]).max(-1)[~np.eye(10, dtype=bool)]
    assert gaps.min() > 10, f"two sub-classes have nearly the same mean colour (gap {gaps.min():.1f} / 255)"


def test_engine_long_tailed_train_split_on_cifar100(fake_cifar100):
    ds, _ = fake_cifar100
    config = TrainConfig(dataset="cifar100", imbalance_ratio=100)
    train_idx, val_idx = select_train_val(config, ds.y_train)
    counts = np.bincount(ds.y_train[train_idx], minlength=100)
    head = np.bincount(ds.y_train[select_train_val(TrainConfig(dataset="cifar100"), ds.y_train)[0]]).min()
    assert np.array_equal(counts, cd.long_tailed_counts(int(head), 100, 100)), "train split not long-tailed as asked"
    assert len(val_idx) == 10_000 and len(np.intersect1d(train_idx, val_idx)) == 0, "validation must stay whole"


# --------------------------------------------------------------------------- measuring the tail


def test_frequency_groups_accuracy_by_group_and_the_skewed_test_set_illusion():
    from course_utils.imbalance import accuracy_by_group, format_group_table, frequency_groups, frequency_weighted_accuracy

    counts = np.array([5, 100, 20, 1, 50, 10])  # classes in no particular order
    assert frequency_groups(counts).tolist() == ["tail", "head", "middle", "tail", "head", "middle"]
    assert frequency_groups([3, 3, 3]).tolist() == ["head", "middle", "tail"], "ties should split by class index"
    acc = np.array([0.0, 1.0, 0.5, 0.0, 0.8, 0.5])
    table = accuracy_by_group(acc, counts)
    assert table["head"] == {"classes": 2, "images_per_class": (50, 100), "accuracy": pytest.approx(0.9)}
    assert table["middle"]["accuracy"] == pytest.approx(0.5) and table["tail"]["accuracy"] == 0.0
    # By hand: (100*1.0 + 50*0.8 + 20*0.5 + 10*0.5) / 186 = 155 / 186, far above the balanced 2.8 / 6.
    assert frequency_weighted_accuracy(acc, counts) == pytest.approx(155 / 186)
    assert np.mean(acc) == pytest.approx(2.8 / 6)
    text = format_group_table({"plain": table})
    assert "head" in text and "90.00%" in text and "50-100" in text, text


# --------------------------------------------------------------------------- the committed lesson


def test_committed_lesson_10_holds_no_synthetic_cifar100_result():
    """Synthetic data exercises the code in CI only: the committed page must not show it (issue 12 B)."""
    from pathlib import Path

    import nbformat

    path = Path(__file__).resolve().parents[1] / "notebooks" / "10_cifar100.ipynb"
    outputs = []
    for cell in nbformat.read(path, as_version=4).cells:
        for output in cell.get("outputs", []):
            outputs.append(output.get("text", "") + str(output.get("data", {}).get("text/plain", ""))
                           + str(output.get("data", {}).get("text/markdown", "")))
    text = "\n".join(outputs)
    assert text, "lesson 10 is committed without outputs"
    for marker in ("SYNTHETIC", FAKE_CIFAR100_NOTE, "synthetic stand-in ("):
        assert marker not in text, f"lesson 10's committed outputs show synthetic CIFAR-100 data ({marker!r})"
