"""The refresh pool (`kong_plugin.refresh_pool`): at most `limit` refreshes at once, one
per key, every outcome counted, failures logged at most once per interval."""

from __future__ import annotations

import logging
import threading

import pytest

from kong_plugin.refresh_pool import Job, Outcome, RefreshPool, Started


def blocked(gate: threading.Event, outcome: Outcome = Outcome.REFRESHED) -> Job:
    def job() -> tuple[Outcome, str]:
        assert gate.wait(5)
        return outcome, "why"

    return job


def test_no_more_than_limit_refreshes_run_and_the_rest_are_skipped() -> None:
    pool = RefreshPool()
    gate = threading.Event()
    try:
        assert pool.submit(b"a", blocked(gate), 2) is Started.STARTED
        assert pool.submit(b"b", blocked(gate), 2) is Started.STARTED
        assert pool.submit(b"c", blocked(gate), 2) is Started.FULL
        assert pool.stats().running == 2
    finally:
        gate.set()
    assert pool.join(5)
    stats = pool.stats()
    assert stats.running == 0
    assert stats.outcomes == {Outcome.REFRESHED: 2, Outcome.SKIPPED: 1}
    assert pool.submit(b"c", blocked(gate), 2) is Started.STARTED  # room again
    assert pool.join(5)


def test_a_key_is_not_refreshed_twice_at_once() -> None:
    pool = RefreshPool()
    gate = threading.Event()
    try:
        assert pool.submit(b"k", blocked(gate), 8) is Started.STARTED
        assert pool.submit(b"k", blocked(gate), 8) is Started.DUPLICATE
    finally:
        gate.set()
    assert pool.join(5)
    assert pool.stats().outcomes == {Outcome.REFRESHED: 1, Outcome.DUPLICATE: 1}


def test_a_refresh_that_raises_is_counted_as_failed_and_frees_its_key(
    caplog: pytest.LogCaptureFixture,
) -> None:
    pool = RefreshPool()

    def broken() -> tuple[Outcome, str]:
        raise RuntimeError("bug")

    with caplog.at_level(logging.ERROR, logger="strata.plugin"):
        assert pool.submit(b"k", broken, 1) is Started.STARTED
        assert pool.join(5)
    assert pool.stats().outcomes == {Outcome.FAILED: 1}
    assert "background refresh failed" in caplog.text
    done = threading.Event()
    done.set()
    assert pool.submit(b"k", blocked(done, Outcome.REVALIDATED), 1) is Started.STARTED
    assert pool.join(5)


def test_failures_are_logged_once_per_interval_with_the_count_left_out(
    caplog: pytest.LogCaptureFixture,
) -> None:
    pool = RefreshPool(log_interval_s=3600)
    with caplog.at_level(logging.WARNING, logger="strata.plugin"):
        pool.note(Outcome.TIMEOUT, "route r: no answer")
        pool.note(Outcome.TIMEOUT, "route r: no answer")
        pool.note(Outcome.CONNECTION, "route r: refused")
        pool.note(Outcome.REFRESHED, "")
    lines = [r.getMessage() for r in caplog.records]
    assert lines == [
        "background refresh timeout: route r: no answer",
        "background refresh connection: route r: refused",
    ]
    pool = RefreshPool(log_interval_s=0)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="strata.plugin"):
        pool.note(Outcome.ERROR_STATUS, "a")
        pool.note(Outcome.ERROR_STATUS, "b")
    assert len(caplog.records) == 2
