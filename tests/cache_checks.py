"""A check shared by the CIFAR-10 and CIFAR-100 cache tests: a bad cache is rejected and left alone."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from course_utils import data as cd


def assert_bad_cache_is_rejected_untouched(spec: cd.DatasetSpec, folder: Path, arrays: dict, expected: str) -> None:
    """Write ``arrays`` as ``spec``'s cache in an empty ``folder``, load it with download allowed, and
    require one ``DataError`` line naming the file and ``expected``, the file unchanged and nothing else written."""
    cache = folder / spec.cache_name
    np.savez_compressed(cache, **arrays)
    before = cache.read_bytes()
    with pytest.raises(cd.DataError) as err:
        cd.load_dataset(spec, folder, download=True)  # download allowed: it must still not replace the file
    message = str(err.value)
    assert str(cache) in message and expected in message, f"expected {expected!r} and the path in: {message}"
    assert "\n" not in message, "the error should be one line"
    assert cache.read_bytes() == before, "a bad cache was modified"
    assert sorted(p.name for p in folder.iterdir()) == [spec.cache_name], "something else was written"
