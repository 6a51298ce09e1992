"""Purges that cannot reach a shared tier are kept and applied before it serves again;
too many kept become one namespace-wide bump (fake tiers, manual clock)."""

from __future__ import annotations

import asyncio

import pytest

from sidecar.core.clock import ManualClock
from sidecar.core.errors import TierError
from sidecar.core.model import Outcome
from sidecar.core.observer import RecordingObserver
from sidecar.engine.engine import Engine
from sidecar.engine.generations import LocalGenerations
from sidecar.tiers.memory import MemoryTier
from sidecar.tiers.replaying import ReplayingTier
from tests.support.entries import entry
from tests.support.fakes import DictTier


async def test_key_and_prefix_purges_made_while_a_tier_is_down_apply_when_it_returns(
    clock: ManualClock,
) -> None:
    remote = DictTier("redis", clock)
    obs = RecordingObserver()
    engine = Engine([MemoryTier(1 << 20, clock, admission="always"), remote], clock, observer=obs)
    for key in (b"v1:r:a", b"v1:r:b", b"other:1", b"other:2", b"v1:r:keep"):
        await engine.store(key, entry(clock))
    remote.broken = True
    await engine.invalidate_key(b"v1:r:a")
    await engine.invalidate_prefix(b"other:")
    assert ("deferred_purges", "redis", "kept", 1) in obs.events
    assert ("pending_purges", "redis", 2) in obs.events
    assert b"v1:r:a" in remote.data  # not applied yet
    await engine.tiers[0].delete_prefix(b"")  # this node's memory is gone too
    assert (await engine.lookup(b"v1:r:a")).outcome is Outcome.MISS
    remote.broken = False
    # the next call to the tier replays first: the purged entries never come back
    assert (await engine.lookup(b"v1:r:a")).outcome is Outcome.MISS
    assert (await engine.lookup(b"other:1")).outcome is Outcome.MISS
    assert set(remote.data) == {b"v1:r:b", b"v1:r:keep"}
    assert ("deferred_purges", "redis", "replayed", 2) in obs.events
    assert obs.events[-1] != ("pending_purges", "redis", 2)
    assert (await engine.lookup(b"v1:r:b")).outcome is Outcome.HIT
    await engine.close()


async def test_an_idle_sidecar_replays_in_the_background(clock: ManualClock) -> None:
    remote = DictTier("memcached", clock)
    tier = ReplayingTier(remote, clock, LocalGenerations(clock).bump_all, retry_s=0.01)
    await tier.set(b"k", entry(clock))
    remote.broken = True
    with pytest.raises(TierError):  # the engine counts it as a tier error
        await tier.delete(b"k")
    assert tier.pending() == 1
    remote.broken = False
    for _ in range(200):
        if tier.pending() == 0:
            break
        await asyncio.sleep(0.01)
    assert tier.pending() == 0 and remote.data == {}
    await tier.close()


async def test_too_many_kept_purges_become_a_namespace_wide_bump(clock: ManualClock) -> None:
    remote = DictTier("postgres", clock)
    gens = LocalGenerations(clock)
    obs = RecordingObserver()
    engine = Engine(
        [MemoryTier(1 << 20, clock, admission="always"), remote],
        clock,
        observer=obs,
        generations=gens,
    )
    tier = engine.tiers[1]
    assert isinstance(tier, ReplayingTier)
    tier._pending._max = 3  # a small cap for the test
    for i in range(5):
        await engine.store(f"v1:r:{i}".encode(), entry(clock, tags=("t",)))
    remote.broken = True
    for i in range(4):
        await engine.invalidate_key(f"v1:r:{i}".encode())
    assert ("deferred_purges", "postgres", "overflow", 4) in obs.events
    assert tier.pending() == 0  # replaced by the epoch bump
    remote.broken = False
    await engine.tiers[0].delete_prefix(b"")
    for i in range(5):  # even the one never purged: stored before the bump
        assert (await engine.lookup(f"v1:r:{i}".encode())).outcome is Outcome.MISS
    await engine.store(b"v1:r:0", entry(clock, tags=("t",)))
    assert (await engine.lookup(b"v1:r:0")).outcome is Outcome.HIT
    await engine.close()
