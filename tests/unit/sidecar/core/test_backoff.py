"""The one back-off rule (down for a fixed interval after each failure, up at the first
success) and the once-per-interval log limit, with plain numbers for time."""

from __future__ import annotations

import pytest

from sidecar.core.backoff import Backoff, LogLimit


def test_a_fresh_backoff_is_up_and_not_tripped() -> None:
    backoff = Backoff(1.0)
    assert not backoff.tripped
    assert not backoff.is_down(0.0)
    assert not backoff.is_down(-1e9)
    assert backoff.remaining(0.0) == 0.0


def test_down_for_exactly_one_interval_after_a_failure() -> None:
    backoff = Backoff(2.0)
    backoff.failed(10.0)
    assert backoff.tripped
    assert backoff.is_down(10.0)
    assert backoff.is_down(11.999)
    assert backoff.remaining(11.5) == pytest.approx(0.5)
    assert not backoff.is_down(12.0)  # the interval is half-open: [failure, failure + interval)
    assert backoff.remaining(12.5) == 0.0
    assert backoff.tripped  # up again by time, yet no success seen since the failure


def test_a_later_failure_restarts_the_interval_and_nothing_grows() -> None:
    backoff = Backoff(1.0)
    for at in (0.0, 5.0, 10.0, 15.0):
        backoff.failed(at)
        assert backoff.is_down(at + 0.999)
        assert not backoff.is_down(at + 1.0)
    backoff.failed(20.0)
    backoff.failed(20.5)
    assert backoff.is_down(21.2)
    assert not backoff.is_down(21.5)


def test_a_success_ends_the_interval_at_once() -> None:
    backoff = Backoff(60.0)
    backoff.failed(0.0)
    backoff.succeeded()
    assert not backoff.tripped
    assert not backoff.is_down(0.0)
    assert backoff.remaining(0.0) == 0.0


def test_a_zero_interval_is_never_down_and_a_negative_one_is_refused() -> None:
    backoff = Backoff(0.0)
    backoff.failed(3.0)
    assert backoff.tripped and not backoff.is_down(3.0)
    with pytest.raises(ValueError, match="negative"):
        Backoff(-0.1)
    assert Backoff(1.5).interval_s == 1.5


def test_log_limit_lets_one_line_through_per_interval_and_counts_the_rest() -> None:
    limit = LogLimit(5.0)
    assert limit.take(0.0) == 0  # the first line always goes, nothing held back before it
    assert limit.take(1.0) is None
    assert limit.take(4.999) is None
    assert limit.take(5.0) == 2  # the two held back since the last line
    assert limit.take(5.1) is None
    assert limit.take(10.0) == 1
    assert limit.take(100.0) == 0


def test_log_limit_of_zero_lets_every_line_through() -> None:
    limit = LogLimit(0.0)
    assert [limit.take(1.0) for _ in range(3)] == [0, 0, 0]
