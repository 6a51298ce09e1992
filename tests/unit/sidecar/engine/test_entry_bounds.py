"""What a store claims about time cannot make an entry outlive the sidecar's bounds.

Before: an entry stored with `stored_at_ms` a day in the future and a 1-second TTL was a
HIT for that whole day (and the sweep never dropped it), and a TTL above
`max_ttl_seconds` was refused (INVALID_ARGUMENT), which the plugin's user never saw.
Now a future stored_at becomes the sidecar's now and durations are clamped so nothing
lives longer than `max_ttl_seconds`; each clamp is counted and logged (rate-limited).
"""

from __future__ import annotations

import logging

import pytest

from sidecar.core.clock import ManualClock
from sidecar.core.limits import Limits
from sidecar.core.model import CachedResponse, Outcome, StoreStatus
from sidecar.core.observer import RecordingObserver
from sidecar.engine.engine import Engine
from sidecar.engine.entry_bounds import REPORT_SKEW_MS, bound_entry
from sidecar.tiers.memory import MemoryTier

DAY_MS = 24 * 3600 * 1000
MAX_TTL_MS = 30 * DAY_MS


def _engine(clock: ManualClock) -> tuple[Engine, MemoryTier, RecordingObserver]:
    observer = RecordingObserver()
    tier = MemoryTier(1 << 24, clock)
    engine = Engine([tier], clock, Limits(max_ttl_ms=MAX_TTL_MS), observer=observer)
    return engine, tier, observer


def _clamped(observer: RecordingObserver) -> list[object]:
    return [e[1] for e in observer.events if e[0] == "clamped"]


async def test_a_stored_at_in_the_future_does_not_extend_life() -> None:
    clock = ManualClock()
    engine, tier, observer = _engine(clock)
    future = CachedResponse(200, (), b"x", clock.now_ms() + DAY_MS, 1000)
    assert (await engine.store(b"k", future)).status is StoreStatus.STORED
    assert (await engine.lookup(b"k")).outcome is Outcome.HIT
    clock.advance(1500)
    assert (await engine.lookup(b"k")).outcome is Outcome.MISS
    await engine.store(b"k2", future)
    clock.advance(1500)
    assert await engine.sweep() == 1  # the sweep drops it too
    assert tier.snapshot().entries == 0
    assert _clamped(observer) == ["stored_at_ms", "stored_at_ms"]


async def test_a_stored_at_slightly_ahead_is_clamped_without_a_report() -> None:
    clock = ManualClock()
    engine, _tier, observer = _engine(clock)
    ahead = CachedResponse(200, (), b"x", clock.now_ms() + REPORT_SKEW_MS, 1000)
    await engine.store(b"k", ahead)
    found = await engine.lookup(b"k")
    assert found.entry is not None and found.entry.stored_at_ms == clock.now_ms()
    assert _clamped(observer) == []


async def test_a_ttl_beyond_the_cap_is_clamped_and_still_hits() -> None:
    clock = ManualClock()
    engine, _tier, observer = _engine(clock)
    long = CachedResponse(200, (), b"x", clock.now_ms(), 10 * MAX_TTL_MS)
    assert (await engine.store(b"k", long)).status is StoreStatus.STORED
    found = await engine.lookup(b"k")
    assert found.outcome is Outcome.HIT
    assert found.entry is not None and found.entry.ttl_ms == MAX_TTL_MS
    clock.advance(MAX_TTL_MS)
    assert (await engine.lookup(b"k")).outcome is Outcome.MISS
    assert _clamped(observer) == ["ttl_ms"]
    assert engine.counters.rejected_requests == 0


async def test_nothing_lives_longer_than_the_cap_after_it_was_stored() -> None:
    clock = ManualClock()
    engine, _tier, observer = _engine(clock)
    now = clock.now_ms()
    stale = CachedResponse(200, (), b"x", now, MAX_TTL_MS - DAY_MS, 7 * DAY_MS, 9 * DAY_MS)
    kept = CachedResponse(200, (), b"x", now, DAY_MS, storage_ttl_ms=2 * MAX_TTL_MS)
    await engine.store(b"stale", stale)
    await engine.store(b"kept", kept)
    clock.advance(MAX_TTL_MS - 1)
    assert (await engine.lookup(b"stale")).outcome is Outcome.STALE
    clock.advance(1)
    assert await engine.sweep() == 2
    assert sorted(map(str, _clamped(observer))) == [
        "stale_if_error_ms",
        "stale_while_revalidate_ms",
        "storage_ttl_ms",
    ]


def test_an_entry_within_bounds_is_returned_as_it_is() -> None:
    entry = CachedResponse(200, (), b"x", 1_000, 5_000, 1_000, 1_000)
    assert bound_entry(entry, Limits(max_ttl_ms=10_000), 2_000) == (entry, ())
    assert bound_entry(entry, Limits(max_ttl_ms=10_000), 2_000)[0] is entry
    now = bound_entry(CachedResponse(200, (), b"x", 0, 5), Limits(), 42)
    assert now == (CachedResponse(200, (), b"x", 42, 5), ())  # 0 means now: not a clamp


async def test_clamps_are_logged_at_most_once_per_interval(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = ManualClock()
    engine, _tier, observer = _engine(clock)
    with caplog.at_level(logging.WARNING, logger="strata.sidecar.entry_bounds"):
        for i in range(50):
            long = CachedResponse(200, (), b"x", clock.now_ms(), 2 * MAX_TTL_MS)
            await engine.store(b"k%d" % i, long)
        clock.advance(11_000)
        await engine.store(b"last", long)
    assert len(_clamped(observer)) == 51
    records = [r for r in caplog.records if r.name == "strata.sidecar.entry_bounds"]
    assert len(records) == 2
    assert "ttl_ms" in records[0].getMessage()
    assert getattr(records[1], "strata.count") == 50
