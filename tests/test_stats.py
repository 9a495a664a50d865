"""Noise statistics: a ratio to a standard error never divides by zero (repeated runs can tie on one CPU)."""

from __future__ import annotations

import math
import re

import nbformat
import pytest

from course_utils import course
from course_utils.stats import in_standard_errors, mean_and_standard_error


def test_ratio_to_a_standard_error():
    assert in_standard_errors(0.034, 0.01) == "3.4"
    assert in_standard_errors(-0.034, 0.01, signed=True) == "-3.4"
    assert in_standard_errors(0.034, 0.01, signed=True) == "+3.4"


def test_two_seeds_that_tie_give_no_ratio_instead_of_a_zero_division():
    """What lesson 06's smoke run met on an AMD EPYC: two seeds with identical accuracies."""
    _, se = mean_and_standard_error([0.25, 0.25])
    assert se == 0
    assert in_standard_errors(0.01, se) == "n/a (se = 0)"
    _, se_one = mean_and_standard_error([0.25])
    assert math.isnan(se_one)
    assert in_standard_errors(0.01, se_one) == "n/a (se undefined)"


# A division whose divisor is named like a standard error: `x / se`, `gap / gap_se`, `d / (se)`.
DIVIDES_BY_SE = re.compile(r"/\s*\(?\s*(?:[A-Za-z_][\w.]*_)?se\b(?![-\w])")


@pytest.mark.parametrize("path", course.lesson_notebooks(), ids=lambda p: p.stem)
def test_no_lesson_divides_by_a_standard_error_itself(path):
    code = "\n".join(c.source for c in nbformat.read(path, as_version=4).cells if c.cell_type == "code")
    hits = [line.strip() for line in code.splitlines() if DIVIDES_BY_SE.search(line)]
    assert not hits, f"{path.name} divides by a standard error (use stats.in_standard_errors): {hits}"


def test_the_check_above_catches_the_division_it_is_for():
    for line in ('ratio = f"{gap / gap_se:.1f}"', "{abs(diff) / se:.1f}", "{diff / se:+.1f}"):
        assert DIVIDES_BY_SE.search(line), line
    for line in ("p['se'] = pooled_sd / math.sqrt(n)", "x = total / sequence", "y = a / base", '"/content/course"'):
        assert not DIVIDES_BY_SE.search(line), line
