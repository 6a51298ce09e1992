"""The pure parts of `bench.memory_paid`: quiet readings of a noisy counter, per-response
figures and ratios (the processes and Redis are exercised by
tests/e2e/test_bench_memory_smoke.py)."""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable

import pytest

from bench.memory_paid import per_response, quiet_reading, ratio


def _reader(values: list[int]) -> Callable[[], int]:
    it = iter(values)
    return lambda: next(it)


def test_a_quiet_window_gives_its_median_and_spread_at_once() -> None:
    sleeps: list[float] = []
    reading = quiet_reading(
        _reader([100, 104, 102, 101, 103]), samples=5, max_spread=10, sleep=sleeps.append
    )
    assert reading == (102, 4)
    assert len(sleeps) == 4  # between samples, not before the first


def test_a_noisy_window_is_taken_again_until_quiet() -> None:
    noisy, quiet = [0, 50_000, 0], [500, 510, 505]
    reading = quiet_reading(
        _reader(noisy + quiet), samples=3, max_spread=100, tries=5, sleep=lambda _: None
    )
    assert reading == (505, 10)


def test_when_no_window_is_quiet_the_quietest_is_kept_with_its_spread() -> None:
    windows = [[0, 9000, 0], [10, 3000, 10], [0, 7000, 0]]
    reading = quiet_reading(
        _reader(list(itertools.chain(*windows))),
        samples=3,
        max_spread=100,
        tries=3,
        sleep=lambda _: None,
    )
    assert reading == (10, 2990)


def test_per_response_and_ratio() -> None:
    assert per_response(10_001, 2) == 5000.5
    assert ratio(1, 3) == 0.3333
    with pytest.raises(ValueError, match="no responses"):
        per_response(10, 0)
    for bad in (0.0, -1.0, math.nan):
        with pytest.raises(ValueError, match="not positive"):
            ratio(1.0, bad)
