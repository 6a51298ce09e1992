"""The memory tier: byte bound, admission, expiry, tags."""

from __future__ import annotations

import os

from sidecar.core.clock import ManualClock
from sidecar.core.model import CachedResponse
from sidecar.core.observer import RecordingObserver
from sidecar.tiers.base import SetStatus
from sidecar.tiers.memory import MemoryTier


def mk(
    clock: ManualClock, size: int = 1000, ttl_ms: int = 60_000, tags: tuple[str, ...] = ()
) -> CachedResponse:
    # Random bytes: incompressible and distinct, so the body pool (compression, dedup)
    # does not change what these tests measure.
    return CachedResponse(200, (), os.urandom(size), clock.now_ms(), ttl_ms, tags=tags)


async def test_never_holds_more_bytes_than_its_budget(clock: ManualClock) -> None:
    tier = MemoryTier(50_000, clock, admission="always")
    for i in range(200):
        await tier.set(f"k{i}".encode(), mk(clock))
        assert tier.snapshot().bytes <= 50_000
    snap = tier.snapshot()
    assert 0 < snap.entries < 200
    assert snap.evictions == 200 - snap.entries


async def test_entry_larger_than_budget_is_too_large(clock: ManualClock) -> None:
    tier = MemoryTier(10_000, clock)
    assert await tier.set(b"big", mk(clock, size=20_000)) is SetStatus.TOO_LARGE
    assert await tier.get(b"big") is None


async def test_replacing_a_key_updates_bytes(clock: ManualClock) -> None:
    tier = MemoryTier(1 << 20, clock)
    await tier.set(b"k", mk(clock, size=1000))
    before = tier.snapshot().bytes
    await tier.set(b"k", mk(clock, size=5000))
    assert tier.snapshot().bytes == before + 4000
    assert tier.snapshot().entries == 1


async def test_expired_entries_are_not_returned_and_are_swept(clock: ManualClock) -> None:
    obs = RecordingObserver()
    tier = MemoryTier(1 << 20, clock, observer=obs)
    await tier.set(b"a", mk(clock, ttl_ms=1000))
    await tier.set(b"b", mk(clock, ttl_ms=5000))
    clock.advance(1000)
    assert await tier.get(b"a") is None
    assert ("evicted", "memory", "expired", 1) in obs.events
    clock.advance(4000)
    assert await tier.sweep() == 1
    assert tier.snapshot().entries == 0
    assert tier.snapshot().bytes == 0


async def test_tinylfu_keeps_a_hot_key_through_a_scan(clock: ManualClock) -> None:
    tier = MemoryTier(40_000, clock, admission="tinylfu")
    hot = b"hot"
    await tier.set(hot, mk(clock))
    for _ in range(20):
        assert await tier.get(hot) is not None
    for i in range(500):  # one-hit wonders
        await tier.get(f"scan{i}".encode())
        await tier.set(f"scan{i}".encode(), mk(clock))
    assert await tier.get(hot) is not None
    assert tier.snapshot().admission_rejections > 0


async def test_always_admit_takes_every_newcomer(clock: ManualClock) -> None:
    tier = MemoryTier(40_000, clock, admission="always")
    for i in range(500):
        await tier.set(f"scan{i}".encode(), mk(clock))
    assert tier.snapshot().admission_rejections == 0
    # the most recent newcomers displaced older ones
    assert all(f"scan{i}".encode() in tier for i in range(495, 500))
    assert b"scan0" not in tier


async def test_delete_by_tag_and_prefix(clock: ManualClock) -> None:
    tier = MemoryTier(1 << 20, clock)
    await tier.set(b"p:1", mk(clock, tags=("t1",)))
    await tier.set(b"p:2", mk(clock, tags=("t1", "t2")))
    await tier.set(b"q:1", mk(clock, tags=("t2",)))
    assert await tier.delete_tag("t1") == 2
    assert await tier.delete_tag("t1") == 0
    assert await tier.delete_prefix(b"q:") == 1
    assert tier.snapshot().entries == 0
    assert tier.snapshot().bytes == 0
    # replacing an entry moves it between tags
    await tier.set(b"r", mk(clock, tags=("old",)))
    await tier.set(b"r", mk(clock, tags=("new",)))
    assert await tier.delete_tag("old") == 0
    assert await tier.delete_tag("new") == 1
