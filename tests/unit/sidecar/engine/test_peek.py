"""`Engine.peek`: what a lookup would find, without a lookup's side effects."""

from __future__ import annotations

import pytest

from sidecar.core.clock import ManualClock
from sidecar.core.model import Outcome
from sidecar.core.observer import RecordingObserver
from sidecar.engine.engine import Engine
from sidecar.engine.generations import LocalGenerations
from sidecar.tiers.memory import MemoryTier
from tests.support.entries import entry
from tests.support.fakes import DictTier


@pytest.fixture
def remote(clock: ManualClock) -> DictTier:
    return DictTier("redis", clock)


@pytest.fixture
def memory(clock: ManualClock) -> MemoryTier:
    return MemoryTier(1 << 20, clock, admission="always")


@pytest.fixture
def obs() -> RecordingObserver:
    return RecordingObserver()


@pytest.fixture
def engine(
    clock: ManualClock, memory: MemoryTier, remote: DictTier, obs: RecordingObserver
) -> Engine:
    return Engine([memory, remote], clock, observer=obs, generations=LocalGenerations(clock))


async def test_peek_reports_tier_entry_and_state_without_side_effects(
    engine: Engine, clock: ManualClock, memory: MemoryTier, remote: DictTier, obs: RecordingObserver
) -> None:
    await engine.store(b"k", entry(clock, tags=("t",), ttl_ms=1_000, stale_if_error_ms=9_000))
    await memory.delete(b"k")  # only the remote has it
    obs.events.clear()
    before = (engine.counters.lookups, engine.frequency(b"k"), memory.snapshot())
    seen = await engine.peek(b"k")
    assert seen is not None
    assert (seen.tier, seen.state, seen.entry.body) == ("redis", "fresh", b"hello")
    assert b"k" not in memory  # no backfill
    assert (engine.counters.lookups, engine.frequency(b"k"), memory.snapshot()) == before
    assert obs.events == []
    clock.advance(2_000)
    seen = await engine.peek(b"k")
    assert seen is not None and seen.state == "stale"
    assert seen.stored_ttl_ms is None  # not cut by a soft purge: entry.ttl_ms is as stored
    found = await engine.lookup(b"k")  # the peek took no fill lease
    assert found.outcome is Outcome.STALE and found.fill_lease


async def test_peek_of_a_soft_purged_entry_and_of_a_purged_one(
    engine: Engine, clock: ManualClock, remote: DictTier
) -> None:
    await engine.store(b"k", entry(clock, tags=("t",), stale_while_revalidate_ms=5_000))
    clock.advance(1_000)
    await engine.purge_tags(["t"], soft=True)
    seen = await engine.peek(b"k")
    assert seen is not None and seen.state == "soft_purged" and seen.entry.ttl_ms == 1_000
    assert seen.stored_ttl_ms == 60_000  # as stored (the default), beside the cut one
    await engine.purge_tags(["t"])
    assert await engine.peek(b"k") is None
    assert b"k" in remote.data  # no lazy delete


async def test_peek_follows_variants_and_answers_none_for_a_miss(
    engine: Engine, clock: ManualClock
) -> None:
    assert await engine.peek(b"absent") is None
    await engine.store(b"v", entry(clock, body=b"gz", vary=("accept-encoding",)),
                       ((b"accept-encoding", b"gzip"),))  # fmt: skip
    seen = await engine.peek(b"v", ((b"accept-encoding", b"gzip"),))
    assert seen is not None and seen.entry.body == b"gz"
    assert await engine.peek(b"v", ((b"accept-encoding", b"br"),)) is None


async def test_peek_passes_over_a_failing_tier(
    engine: Engine, clock: ManualClock, memory: MemoryTier, remote: DictTier
) -> None:
    await engine.store(b"k", entry(clock))
    await memory.delete(b"k")
    remote.broken = True
    assert await engine.peek(b"k") is None
