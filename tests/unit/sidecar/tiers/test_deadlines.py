"""Deadlines and skips: the breaker bounds a tier call by the caller's deadline and counts a
call that misses it, or is cancelled while in the tier, as a failure of that tier; calls it
does not make are skips, never errors; the engine gives a lookup's tier reads a budget, and
a corrupt entry is a miss for that call only. Fake tiers, no servers."""

from __future__ import annotations

import asyncio
import logging
import time

import pytest
from prometheus_client import CollectorRegistry

from sidecar.core.clock import ManualClock, SystemClock
from sidecar.core.errors import TierError
from sidecar.core.model import CachedResponse, Outcome, TierSnapshot
from sidecar.core.observer import RecordingObserver
from sidecar.engine.engine import Engine
from sidecar.observability.metrics import PrometheusObserver
from sidecar.tiers import deadline
from sidecar.tiers.base import TierSkippedError
from sidecar.tiers.breaker import CLOSED, OPEN, CircuitBreakerTier
from sidecar.tiers.codec import CorruptEntryError
from sidecar.tiers.memory import MemoryTier
from tests.support.entries import entry
from tests.support.fakes import CorruptingMemory, FakeTier

THRESHOLD = 3
HANG_S = 30.0  # an inner call this slow never finishes within a test
#: Generous bound for "answered within a 50 ms deadline" on a loaded machine.
BOUND_S = 1.0


def breaker_over(
    inner: FakeTier, obs: RecordingObserver | PrometheusObserver
) -> CircuitBreakerTier:
    return CircuitBreakerTier(
        inner, ManualClock(), failure_threshold=THRESHOLD, open_for_s=2.0, observer=obs
    )


# -- the breaker ---------------------------------------------------------------------------


async def test_a_call_is_bounded_by_the_callers_deadline_and_missing_it_is_a_failure() -> None:
    inner, obs = FakeTier(), RecordingObserver()
    breaker = breaker_over(inner, obs)
    inner.delay = HANG_S
    for _ in range(THRESHOLD):
        t0 = time.monotonic()
        with (
            deadline.until(deadline.now() + 0.02),
            pytest.raises(TierError, match="no answer within the caller's deadline"),
        ):
            await asyncio.wait_for(breaker.get(b"k"), BOUND_S)
        assert time.monotonic() - t0 < BOUND_S
    assert breaker.state == OPEN
    calls = inner.calls
    with pytest.raises(TierSkippedError, match=r"^fake: circuit open$") as caught:
        await breaker.get(b"k")
    assert caught.value.reason == "circuit_open"
    assert inner.calls == calls


async def test_calls_cancelled_while_in_the_tier_count_as_failures() -> None:
    """The client gave up first (its stream was cancelled): the tier still did not answer."""
    inner = FakeTier()
    breaker = CircuitBreakerTier(inner, SystemClock(), failure_threshold=THRESHOLD)
    inner.delay = HANG_S
    for _ in range(THRESHOLD):
        call = asyncio.create_task(breaker.get(b"k"))
        await asyncio.sleep(0.005)  # inside the tier now
        call.cancel()
        with pytest.raises(asyncio.CancelledError):
            await call
    assert breaker.state == OPEN


async def test_calls_failing_together_in_one_stall_count_once() -> None:
    """Calls in flight together when the tier stalls are one failure episode; a tier that
    stays dead fails each new call, and those trip the circuit."""
    inner = FakeTier()
    breaker = CircuitBreakerTier(inner, SystemClock(), failure_threshold=THRESHOLD)
    inner.delay, inner.fail = 0.02, True
    together = [breaker.get(b"k") for _ in range(3 * THRESHOLD)]
    results = await asyncio.gather(*together, return_exceptions=True)
    assert all(isinstance(r, TierError) for r in results)
    assert breaker.state == CLOSED
    for _ in range(THRESHOLD - 2):
        with pytest.raises(TierError, match="fake is down"):
            await breaker.get(b"k")
    assert breaker.state == CLOSED
    with pytest.raises(TierError, match="fake is down"):
        await breaker.get(b"k")
    assert breaker.state == OPEN


async def test_no_time_left_is_a_skip_not_a_failure_and_the_tier_is_not_asked() -> None:
    inner, obs = FakeTier(), RecordingObserver()
    breaker = breaker_over(inner, obs)
    with deadline.until(deadline.now() - 0.001):
        for _ in range(THRESHOLD + 2):
            with pytest.raises(TierSkippedError, match=r"^fake: deadline$") as caught:
                await breaker.get(b"k")
            assert caught.value.reason == "deadline"
    assert inner.calls == 0
    assert breaker.state == CLOSED
    engine = Engine([MemoryTier(1 << 20, ManualClock()), breaker], ManualClock(), observer=obs)
    assert (await engine.lookup(b"k", timeout_s=0.0)).outcome is Outcome.MISS
    assert inner.calls == 0
    assert obs.events[-2:] == [("tier_skipped", "fake", "deadline"), ("lookup", "miss", "")]


async def test_a_deadline_only_narrows_and_ends_with_its_block() -> None:
    assert deadline.current() is None
    start = deadline.now()
    with deadline.until(start + 1.0):
        with deadline.until(start + 5.0):
            assert deadline.current() == start + 1.0
        with deadline.until(start + 0.5):
            assert deadline.current() == start + 0.5
        with deadline.until(None):
            assert deadline.current() == start + 1.0
    assert deadline.current() is None


async def test_a_fast_call_under_a_deadline_succeeds_and_resets_the_count() -> None:
    inner = FakeTier()
    breaker = breaker_over(inner, RecordingObserver())
    inner.fail = True
    for _ in range(THRESHOLD - 1):
        with pytest.raises(TierError):
            await breaker.get(b"k")
    inner.fail = False
    with deadline.until(deadline.now() + BOUND_S):
        assert await breaker.get(b"k") is None
    inner.fail = True
    with pytest.raises(TierError):
        await breaker.get(b"k")
    assert breaker.state == CLOSED


# -- skips are counted apart from errors -----------------------------------------------------


async def test_calls_skipped_while_open_are_not_tier_errors() -> None:
    registry = CollectorRegistry()
    observer = PrometheusObserver(registry)
    inner = FakeTier()
    engine = Engine(
        [MemoryTier(1 << 20, ManualClock()), breaker_over(inner, observer)],
        ManualClock(),
        observer=observer,
    )

    def sample(name: str, **labels: str) -> float:
        return registry.get_sample_value(name, labels) or 0.0

    inner.fail = True
    for _ in range(THRESHOLD):
        assert (await engine.lookup(b"v1:r:k")).outcome is Outcome.MISS
    errors = sample("strata_tier_errors_total", tier="fake", operation="get")
    assert errors == THRESHOLD
    for i in range(50):
        await engine.lookup(b"v1:r:%d" % i)
        await engine.store(b"v1:r:%d" % i, entry(ManualClock()))
    assert sample("strata_tier_errors_total", tier="fake", operation="get") == errors
    assert sample("strata_tier_errors_total", tier="fake", operation="set") == 0
    assert sample("strata_tier_skipped_total", tier="fake", reason="circuit_open") == 100
    assert inner.calls == THRESHOLD


# -- the engine's lookup budget --------------------------------------------------------------


class SlowTier(FakeTier):
    """A FakeTier that holds `entries` (get answers them when not failing or slow)."""

    def __init__(self) -> None:
        super().__init__()
        self.entries: dict[bytes, CachedResponse] = {}

    async def get(self, key: bytes) -> CachedResponse | None:
        await self._go()
        return self.entries.get(key)


async def test_a_hung_tier_costs_a_lookup_its_budget_and_opens_after_the_threshold() -> None:
    """Before: the engine had no budget; a hung tier held every lookup as long as the tier's
    own timeout (here: forever), and the breaker never heard of it."""
    slow = SlowTier()
    slow.delay = HANG_S
    obs = RecordingObserver()
    breaker = breaker_over(slow, obs)
    engine = Engine([MemoryTier(1 << 20, ManualClock()), breaker], SystemClock(), observer=obs)
    results = await asyncio.wait_for(
        asyncio.gather(*(engine.lookup(b"v1:r:%d" % i) for i in range(8))), BOUND_S
    )
    assert all(r.outcome is Outcome.MISS for r in results)
    assert breaker.state == OPEN
    t0 = time.monotonic()
    assert (await engine.lookup(b"v1:r:x")).outcome is Outcome.MISS
    assert time.monotonic() - t0 < 0.02  # skipped, not waited for
    assert ("tier_skipped", "fake", "circuit_open") in obs.events


async def test_the_budget_is_the_smaller_of_the_engine_one_and_the_callers() -> None:
    slow = SlowTier()
    slow.delay = HANG_S
    engine = Engine(
        [MemoryTier(1 << 20, ManualClock()), breaker_over(slow, RecordingObserver())],
        SystemClock(),
        lookup_budget_ms=10_000,
    )
    t0 = time.monotonic()
    result = await asyncio.wait_for(engine.lookup(b"v1:r:k", timeout_s=0.02), BOUND_S)
    assert result.outcome is Outcome.MISS
    assert time.monotonic() - t0 < BOUND_S


async def test_no_budget_leaves_each_tier_its_own_timeout() -> None:
    slow = SlowTier()
    slow.delay = 0.1
    clock = SystemClock()
    slow.entries[b"plain"] = entry(clock)  # no route tag: read without a purge check
    engine = Engine(
        [MemoryTier(1 << 20, ManualClock()), breaker_over(slow, RecordingObserver())],
        clock,
        lookup_budget_ms=0,
    )
    assert (await engine.lookup(b"plain")).outcome is Outcome.HIT


async def test_a_coalesced_reader_is_not_cancelled_with_the_caller_reading_for_it() -> None:
    """Two lookups of one key share one read below memory; the one that started it is
    cancelled (its client gave up): the other gets a miss, not a CancelledError."""
    slow = SlowTier()
    slow.delay = HANG_S
    engine = Engine(
        [MemoryTier(1 << 20, ManualClock()), breaker_over(slow, RecordingObserver())],
        SystemClock(),
        lookup_budget_ms=0,
    )
    leader = asyncio.create_task(engine.lookup(b"v1:r:k"))
    await asyncio.sleep(0.01)
    follower = asyncio.create_task(engine.lookup(b"v1:r:k"))
    await asyncio.sleep(0.01)
    leader.cancel()
    result = await asyncio.wait_for(follower, BOUND_S)
    assert result.outcome is Outcome.MISS
    with pytest.raises(asyncio.CancelledError):
        await leader


# -- corrupt entries ---------------------------------------------------------------------------


async def test_a_corrupt_entry_is_a_miss_counted_logged_and_deleted(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = ManualClock()
    memory = CorruptingMemory(clock)
    obs = RecordingObserver()
    engine = Engine([memory], clock, observer=obs)
    await engine.store(b"v1:r:bad", entry(clock, b"bad"))
    await engine.store(b"v1:r:good", entry(clock, b"good"))
    memory.corrupt.add(b"v1:r:bad")
    caplog.set_level(logging.WARNING, logger="strata.sidecar.engine")
    assert (await engine.lookup(b"v1:r:bad")).outcome is Outcome.MISS
    assert b"v1:r:bad" not in memory
    assert ("evicted", "memory", "corrupt", 1) in obs.events
    assert [getattr(r, "event.action") for r in caplog.records] == ["corrupt_entry"]
    assert (await engine.lookup(b"v1:r:good")).outcome is Outcome.HIT
    assert await engine.store(b"v1:r:bad", entry(clock, b"new")) is not None
    hit = await engine.lookup(b"v1:r:bad")
    assert hit.outcome is Outcome.HIT and hit.entry is not None and hit.entry.body == b"new"


class CorruptBelow(SlowTier):
    """A lower tier whose every entry is unreadable (a tier that raises rather than
    answering the miss itself)."""

    async def get(self, key: bytes) -> CachedResponse | None:
        await self._go()
        if key in self.entries:
            raise CorruptEntryError("bad magic")
        return None

    async def delete(self, key: bytes) -> bool:
        await self._go()
        return self.entries.pop(key, None) is not None

    def snapshot(self) -> TierSnapshot:
        return TierSnapshot(name="fake", entries=len(self.entries), bytes=0, max_bytes=0)


async def test_a_corrupt_entry_below_memory_is_deleted_from_that_tier() -> None:
    clock = ManualClock()
    below = CorruptBelow()
    below.entries[b"plain"] = entry(clock)
    obs = RecordingObserver()
    engine = Engine([MemoryTier(1 << 20, clock), below], clock, observer=obs)
    assert (await engine.lookup(b"plain")).outcome is Outcome.MISS
    assert b"plain" not in below.entries
    assert ("evicted", "fake", "corrupt", 1) in obs.events
