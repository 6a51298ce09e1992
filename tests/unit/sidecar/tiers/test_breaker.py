"""The circuit breaker tier with a fake inner tier and a manual clock (no servers)."""

from __future__ import annotations

import asyncio
import logging

import pytest
from prometheus_client import CollectorRegistry

from sidecar.core.clock import ManualClock
from sidecar.core.errors import TierError
from sidecar.core.model import CachedResponse, Outcome
from sidecar.core.observer import RecordingObserver
from sidecar.engine.engine import Engine
from sidecar.observability.metrics import PrometheusObserver
from sidecar.tiers.base import PREFIX_DELETE, SetStatus
from sidecar.tiers.breaker import CLOSED, HALF_OPEN, OPEN, CircuitBreakerTier
from tests.support.fakes import FakeTier

ENTRY = CachedResponse(status=200, headers=(), body=b"x", stored_at_ms=1, ttl_ms=60_000)
OPEN_MS = 2000


@pytest.fixture
def inner() -> FakeTier:
    return FakeTier()


@pytest.fixture
def obs() -> RecordingObserver:
    return RecordingObserver()


@pytest.fixture
def breaker(inner: FakeTier, clock: ManualClock, obs: RecordingObserver) -> CircuitBreakerTier:
    return CircuitBreakerTier(
        inner, clock, failure_threshold=3, open_for_s=OPEN_MS / 1000, observer=obs
    )


async def fail_times(breaker: CircuitBreakerTier, n: int) -> None:
    for _ in range(n):
        with pytest.raises(TierError, match="fake is down"):
            await breaker.get(b"k")


async def trip(breaker: CircuitBreakerTier, inner: FakeTier) -> None:
    inner.fail = True
    await fail_times(breaker, 3)
    assert breaker.state == OPEN


async def test_delegates_name_capabilities_snapshot_and_close(
    breaker: CircuitBreakerTier, inner: FakeTier
) -> None:
    assert breaker.name == "fake"
    assert breaker.capabilities == frozenset({PREFIX_DELETE})
    await trip(breaker, inner)
    calls = inner.calls
    assert breaker.snapshot().entries == 7
    await breaker.close()  # even while open
    assert inner.closed == 1
    assert inner.calls == calls


async def test_every_operation_passes_through_while_closed(
    breaker: CircuitBreakerTier, inner: FakeTier
) -> None:
    await breaker.open()
    assert await breaker.get(b"k") is None
    assert await breaker.set(b"k", ENTRY) is SetStatus.STORED
    assert await breaker.delete(b"k") is False
    assert await breaker.delete_prefix(b"k") == 0
    assert await breaker.delete_tag("t") == 0
    assert await breaker.sweep() == 0
    assert inner.calls == 7
    assert breaker.state == CLOSED


async def test_opens_after_threshold_consecutive_failures_of_any_operation_not_before(
    breaker: CircuitBreakerTier, inner: FakeTier
) -> None:
    inner.fail = True
    with pytest.raises(TierError):
        await breaker.set(b"k", ENTRY)
    with pytest.raises(TierError):
        await breaker.delete_tag("t")
    assert breaker.state == CLOSED
    with pytest.raises(TierError, match="fake is down"):
        await breaker.sweep()
    assert breaker.state == OPEN
    assert inner.calls == 3


async def test_a_success_resets_the_count(breaker: CircuitBreakerTier, inner: FakeTier) -> None:
    inner.fail = True
    await fail_times(breaker, 2)
    inner.fail = False
    await breaker.get(b"k")
    inner.fail = True
    await fail_times(breaker, 2)
    assert breaker.state == CLOSED
    await fail_times(breaker, 1)
    assert breaker.state == OPEN


async def test_open_fails_fast_without_touching_inner(
    breaker: CircuitBreakerTier, inner: FakeTier, clock: ManualClock
) -> None:
    await trip(breaker, inner)
    inner.fail, inner.delay = False, 30.0  # would hang if reached
    calls = inner.calls
    ops = [
        breaker.get(b"k"),
        breaker.set(b"k", ENTRY),
        breaker.delete(b"k"),
        breaker.delete_prefix(b"k"),
        breaker.delete_tag("t"),
        breaker.sweep(),
    ]
    for op in ops:
        with pytest.raises(TierError, match=r"^fake: circuit open$"):
            await asyncio.wait_for(op, 1.0)
    clock.advance(OPEN_MS - 1)
    with pytest.raises(TierError, match="circuit open"):
        await breaker.get(b"k")
    assert inner.calls == calls
    assert breaker.state == OPEN


async def test_half_open_lets_exactly_one_concurrent_probe_through(
    breaker: CircuitBreakerTier, inner: FakeTier, clock: ManualClock
) -> None:
    await trip(breaker, inner)
    clock.advance(OPEN_MS)
    inner.fail, inner.delay = False, 0.05
    calls = inner.calls
    results = await asyncio.gather(*(breaker.get(b"k") for _ in range(10)), return_exceptions=True)
    assert inner.calls == calls + 1
    errors = [r for r in results if isinstance(r, TierError)]
    assert len(errors) == 9
    assert all(str(e) == "fake: circuit open" for e in errors)
    assert results.count(None) == 1
    assert breaker.state == CLOSED


async def test_calls_during_the_probe_fail_fast_then_probe_success_closes(
    breaker: CircuitBreakerTier, inner: FakeTier, clock: ManualClock, obs: RecordingObserver
) -> None:
    await trip(breaker, inner)
    clock.advance(OPEN_MS)
    inner.fail, inner.delay = False, 0.05
    probe = asyncio.create_task(breaker.get(b"k"))
    await asyncio.sleep(0)  # the probe is now inside the slow inner call
    assert breaker.state == HALF_OPEN
    for _ in range(3):
        with pytest.raises(TierError, match="circuit open"):
            await breaker.set(b"k", ENTRY)
    assert await probe is None
    assert breaker.state == CLOSED
    inner.delay = 0.0
    await breaker.get(b"k")
    assert [e for e in obs.events if e[0] == "circuit"] == [
        ("circuit", "fake", CLOSED),
        ("circuit", "fake", OPEN),
        ("circuit", "fake", HALF_OPEN),
        ("circuit", "fake", CLOSED),
    ]


async def test_probe_failure_opens_again_for_the_full_period(
    breaker: CircuitBreakerTier, inner: FakeTier, clock: ManualClock, obs: RecordingObserver
) -> None:
    await trip(breaker, inner)
    clock.advance(OPEN_MS + 500)
    await fail_times(breaker, 1)  # the probe
    assert breaker.state == OPEN
    calls = inner.calls
    clock.advance(OPEN_MS - 1)
    with pytest.raises(TierError, match="circuit open"):
        await breaker.get(b"k")
    assert inner.calls == calls
    clock.advance(1)
    inner.fail = False
    await breaker.get(b"k")
    assert breaker.state == CLOSED
    states = [e[2] for e in obs.events if e[0] == "circuit"]
    assert states == [CLOSED, OPEN, HALF_OPEN, OPEN, HALF_OPEN, CLOSED]


async def test_after_closing_the_threshold_counts_from_zero(
    breaker: CircuitBreakerTier, inner: FakeTier, clock: ManualClock
) -> None:
    await trip(breaker, inner)
    clock.advance(OPEN_MS)
    inner.fail = False
    await breaker.get(b"k")
    inner.fail = True
    await fail_times(breaker, 2)
    assert breaker.state == CLOSED


async def test_a_cancelled_probe_is_a_failed_probe(
    breaker: CircuitBreakerTier, inner: FakeTier, clock: ManualClock
) -> None:
    """Its caller gave up before the tier answered: the tier did not answer in time."""
    await trip(breaker, inner)
    clock.advance(OPEN_MS)
    inner.fail, inner.delay = False, 30.0
    probe = asyncio.create_task(breaker.get(b"k"))
    await asyncio.sleep(0)
    probe.cancel()
    with pytest.raises(asyncio.CancelledError):
        await probe
    assert breaker.state == OPEN
    calls = inner.calls
    with pytest.raises(TierError, match="circuit open"):
        await breaker.get(b"k")
    assert inner.calls == calls
    clock.advance(OPEN_MS)
    inner.delay = 0.0
    assert await breaker.get(b"k") is None
    assert breaker.state == CLOSED


async def test_results_of_calls_started_before_a_state_change_do_not_count(
    breaker: CircuitBreakerTier, inner: FakeTier
) -> None:
    inner.delay = 0.05
    slow_success = asyncio.create_task(breaker.get(b"k"))
    await asyncio.sleep(0)
    inner.delay = 0.0
    await trip(breaker, inner)
    assert await slow_success is None
    assert breaker.state == OPEN  # a success from before the trip does not close it


async def test_open_always_reaches_inner_and_counts(
    breaker: CircuitBreakerTier, inner: FakeTier
) -> None:
    inner.fail = True
    await fail_times(breaker, 2)
    with pytest.raises(TierError, match="fake is down"):
        await breaker.open()
    assert breaker.state == OPEN
    calls = inner.calls
    with pytest.raises(TierError, match="fake is down"):
        await breaker.open()  # not short-circuited
    assert inner.calls == calls + 1
    inner.fail = False
    await breaker.open()
    assert breaker.state == CLOSED


async def test_prometheus_gauge_and_opened_counter(inner: FakeTier, clock: ManualClock) -> None:
    registry = CollectorRegistry()
    breaker = CircuitBreakerTier(
        inner, clock, failure_threshold=3, open_for_s=2.0, observer=PrometheusObserver(registry)
    )

    def state() -> float | None:
        return registry.get_sample_value("strata_tier_circuit_state", {"tier": "fake"})

    def opened() -> float | None:
        return registry.get_sample_value("strata_tier_circuit_opened_total", {"tier": "fake"})

    assert (state(), opened()) == (0.0, 0.0)  # both series exist from construction
    await trip(breaker, inner)
    assert (state(), opened()) == (1.0, 1.0)
    inner.delay = 0.05
    clock.advance(OPEN_MS)
    probe = asyncio.create_task(breaker.get(b"k"))
    await asyncio.sleep(0)
    assert state() == 2.0
    with pytest.raises(TierError):
        await probe
    assert (state(), opened()) == (1.0, 2.0)
    clock.advance(OPEN_MS)
    inner.fail, inner.delay = False, 0.0
    await breaker.get(b"k")
    assert (state(), opened()) == (0.0, 2.0)


async def test_logs_a_warning_on_trip_an_info_on_close_and_nothing_per_call(
    breaker: CircuitBreakerTier,
    inner: FakeTier,
    clock: ManualClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="strata.sidecar.breaker")
    await trip(breaker, inner)
    for _ in range(20):
        with pytest.raises(TierError):
            await breaker.get(b"k")
    clock.advance(OPEN_MS)
    inner.fail = False
    await breaker.get(b"k")
    for _ in range(5):
        await breaker.get(b"k")
    records = [r for r in caplog.records if r.name == "strata.sidecar.breaker"]
    assert [(r.levelno, getattr(r, "event.action")) for r in records] == [
        (logging.WARNING, "circuit_open"),
        (logging.INFO, "circuit_close"),
    ]
    assert all(getattr(r, "strata.tier") == "fake" for r in records)
    assert getattr(records[0], "error.message") == "fake is down"


def test_rejects_bad_settings(inner: FakeTier, clock: ManualClock) -> None:
    with pytest.raises(ValueError, match="failure_threshold"):
        CircuitBreakerTier(inner, clock, failure_threshold=0)
    with pytest.raises(ValueError, match="open_for_s"):
        CircuitBreakerTier(inner, clock, open_for_s=-1.0)


async def test_engine_skips_an_open_circuit_and_counts_it_as_skipped_not_failed(
    breaker: CircuitBreakerTier, inner: FakeTier, obs: RecordingObserver
) -> None:
    engine = Engine([breaker], ManualClock(), observer=obs)
    await trip(breaker, inner)
    calls = inner.calls
    assert (await engine.lookup(b"k")).outcome is Outcome.MISS
    assert inner.calls == calls
    assert ("tier_skipped", "fake", "circuit_open") in obs.events
    assert not any(e[0] == "tier_error" for e in obs.events[-3:])
