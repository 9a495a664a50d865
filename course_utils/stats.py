"""The noise of a comparison over repeated runs: a mean with its standard error, and a difference with its.

Lessons print these beside every difference they interpret; the verdict is the lesson's to write.
"""

from __future__ import annotations

import numpy as np


def mean_and_standard_error(values) -> tuple[float, float]:
    """``(mean, standard error of the mean)`` of repeated measurements, e.g. one per seed.

    The standard error is the sample standard deviation (``ddof=1``) over ``sqrt(n)``; NaN for
    a single value, which has no measured spread.
    """
    values = np.asarray(values, dtype=np.float64)
    if values.size == 0:
        raise ValueError("mean_and_standard_error needs at least one value")
    if values.size == 1:
        return float(values[0]), float("nan")
    return float(values.mean()), float(values.std(ddof=1) / np.sqrt(values.size))


def difference_with_noise(baseline_values, other_values) -> tuple[float, float]:
    """``(mean(other) - mean(baseline), its standard error)`` for two independent sets of runs.

    The standard error of the difference is ``sqrt(se_baseline**2 + se_other**2)``: the noise to
    compare the difference with (a difference below about two of it is not established).
    """
    mean_a, se_a = mean_and_standard_error(baseline_values)
    mean_b, se_b = mean_and_standard_error(other_values)
    return mean_b - mean_a, float(np.hypot(se_a, se_b))


def in_standard_errors(difference: float, se: float, signed: bool = False) -> str:
    """``difference / se`` as text with one decimal, for a table or a sentence.

    A zero or undefined standard error gives ``"n/a (se = 0)"`` / ``"n/a (se undefined)"``
    instead of a division: repeated runs can agree to the last digit on one CPU and differ on
    another, and a ratio to zero noise means nothing.
    """
    if not np.isfinite(se):
        return "n/a (se undefined)"
    if se == 0:
        return "n/a (se = 0)"
    return f"{difference / se:{'+' if signed else ''}.1f}"
