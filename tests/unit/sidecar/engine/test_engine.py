"""Engine behaviour with fake tiers and a manual clock (no servers)."""

from __future__ import annotations

import asyncio

import pytest

from sidecar.core.clock import ManualClock
from sidecar.core.errors import InvalidRequestError
from sidecar.core.limits import Limits
from sidecar.core.model import CachedResponse, Outcome, StoreStatus
from sidecar.core.observer import RecordingObserver
from sidecar.engine.coalesce import LocalLeases
from sidecar.engine.engine import Engine
from sidecar.tiers.memory import MemoryTier
from tests.support.entries import entry
from tests.support.fakes import DictTier


@pytest.fixture
def engine(clock: ManualClock) -> Engine:
    return Engine([MemoryTier(1 << 20, clock, admission="always")], clock)


async def test_miss_is_a_value_not_an_error(engine: Engine) -> None:
    r = await engine.lookup(b"v1:r:nothing")
    assert r.outcome is Outcome.MISS
    assert r.entry is None
    assert r.tier == ""
    assert engine.counters.misses == 1


async def test_store_then_hit_returns_the_same_response(engine: Engine, clock: ManualClock) -> None:
    e = entry(clock)
    assert (await engine.store(b"k", e)).status is StoreStatus.STORED
    clock.advance(1500)
    r = await engine.lookup(b"k")
    assert r.outcome is Outcome.HIT
    assert r.entry == e
    assert r.entry is not None and r.entry.headers == e.headers  # order and repeats kept
    assert r.age_ms == 1500
    assert r.tier == "memory"


async def test_stale_inside_windows_then_miss(engine: Engine, clock: ManualClock) -> None:
    await engine.store(
        b"k", entry(clock, ttl_ms=1000, stale_while_revalidate_ms=2000, stale_if_error_ms=5000)
    )
    clock.advance(999)
    assert (await engine.lookup(b"k")).outcome is Outcome.HIT
    clock.advance(1)
    assert (await engine.lookup(b"k")).outcome is Outcome.STALE
    clock.advance(4999)  # 5999 ms old: inside stale-if-error (1000 + 5000)
    assert (await engine.lookup(b"k")).outcome is Outcome.STALE
    clock.advance(1)
    assert (await engine.lookup(b"k")).outcome is Outcome.MISS


async def test_storage_ttl_keeps_stale_data(engine: Engine, clock: ManualClock) -> None:
    await engine.store(b"k", entry(clock, ttl_ms=1000, storage_ttl_ms=60_000))
    clock.advance(30_000)
    assert (await engine.lookup(b"k")).outcome is Outcome.STALE


async def test_stored_at_zero_means_now(engine: Engine, clock: ManualClock) -> None:
    e = CachedResponse(200, (), b"x", stored_at_ms=0, ttl_ms=1000)
    await engine.store(b"k", e)
    r = await engine.lookup(b"k")
    assert r.entry is not None and r.entry.stored_at_ms == clock.now_ms()


async def test_already_expired_store_is_refused_as_expired(
    engine: Engine, clock: ManualClock
) -> None:
    e = entry(clock, ttl_ms=1000)
    clock.advance(5000)
    assert (await engine.store(b"k", e)).status is StoreStatus.EXPIRED
    assert (await engine.lookup(b"k")).outcome is Outcome.MISS


@pytest.mark.parametrize(
    ("key", "reason"),
    [
        (b"", "empty_key"),
        (b"x" * 3000, "key_too_long"),
        (b"\xff\xfe", "key_not_utf8"),
        (b"a\nb", "key_control_chars"),
    ],
)
async def test_bad_keys_are_refused_and_counted(engine: Engine, key: bytes, reason: str) -> None:
    with pytest.raises(InvalidRequestError) as info:
        await engine.lookup(key)
    assert info.value.field == "key"
    assert info.value.reason == reason
    assert engine.counters.rejected_requests == 1
    assert engine.counters.rejected_by_reason == {reason: 1}
    # the engine keeps serving
    assert (await engine.lookup(b"fine")).outcome is Outcome.MISS


@pytest.mark.parametrize(
    ("change", "field", "reason"),
    [
        ({"ttl_ms": -1}, "entry.ttl_ms", "negative_ttl"),
        ({"stale_if_error_ms": -5}, "entry.stale_if_error_ms", "negative_ttl"),
        ({"status": 42}, "entry.status", "bad_status"),
        ({"body": b"x" * 101}, "entry.body", "body_too_large"),
        ({"headers": ((b"bad name", b"v"),)}, "entry.headers[0].name", "bad_header_name"),
        ({"headers": ((b"ok", b"a\r\nb"),)}, "entry.headers[0].value", "bad_header_value"),
        ({"tags": ("has space",)}, "entry.tags[0]", "bad_tag"),
        ({"vary": ("Accept",)}, "entry.vary[0]", "bad_vary"),
        ({"format_version": 9}, "entry.format_version", "bad_format_version"),
    ],
)
async def test_bad_entries_are_refused_naming_the_field(
    clock: ManualClock, change: dict[str, object], field: str, reason: str
) -> None:
    eng = Engine([MemoryTier(1 << 20, clock)], clock, Limits(max_body_bytes=100))
    base = entry(clock, body=b"ok")
    bad = CachedResponse(**{**{s: getattr(base, s) for s in base.__slots__}, **change})
    with pytest.raises(InvalidRequestError) as info:
        await eng.store(b"k", bad)
    assert info.value.field == field
    assert info.value.reason == reason
    assert field in str(info.value)
    assert (await eng.lookup(b"k")).outcome is Outcome.MISS


async def test_read_falls_through_and_backfills_faster_tiers(clock: ManualClock) -> None:
    l1, l2 = DictTier("l1", clock), DictTier("l2", clock)
    eng = Engine([l1, l2], clock)
    e = entry(clock)
    l2.data[b"k"] = e
    r = await eng.lookup(b"k")
    assert r.outcome is Outcome.HIT and r.tier == "l2"
    assert l1.data[b"k"] == e  # backfilled
    r = await eng.lookup(b"k")
    assert r.tier == "l1"


async def test_a_broken_tier_is_skipped_never_an_error(clock: ManualClock) -> None:
    l1, l2 = DictTier("l1", clock), DictTier("l2", clock)
    obs = RecordingObserver()
    eng = Engine([l1, l2], clock, observer=obs)
    l2.data[b"k"] = entry(clock)
    l1.broken = True
    r = await eng.lookup(b"k")
    assert r.outcome is Outcome.HIT and r.tier == "l2"
    assert ("tier_error", "l1", "get") in obs.events
    # stores still reach the healthy tier
    assert (await eng.store(b"k2", entry(clock))).status is StoreStatus.STORED
    assert b"k2" in l2.data
    l2.broken = True
    assert (await eng.lookup(b"k")).outcome is Outcome.MISS


async def test_entry_of_unknown_format_is_a_miss_and_is_purged(clock: ManualClock) -> None:
    l1 = DictTier("l1", clock)
    eng = Engine([l1], clock)
    l1.data[b"k"] = entry(clock, format_version=99)
    assert (await eng.lookup(b"k")).outcome is Outcome.MISS
    assert b"k" not in l1.data


async def test_concurrent_reads_below_l1_share_one_tier_read(clock: ManualClock) -> None:
    l1, l2 = DictTier("l1", clock), DictTier("l2", clock, delay=0.01)
    eng = Engine([l1, l2], clock)
    l2.data[b"k"] = entry(clock)
    results = await asyncio.gather(*(eng.lookup(b"k") for _ in range(20)))
    assert all(r.outcome is Outcome.HIT for r in results)
    assert l2.gets == 1


async def test_coalescing_one_fill_for_concurrent_misses(
    engine: Engine, clock: ManualClock
) -> None:
    first = await engine.lookup(b"k", coalesce_wait_ms=2000)
    assert first.outcome is Outcome.MISS and first.fill_lease
    waiters = [asyncio.create_task(engine.lookup(b"k", coalesce_wait_ms=2000)) for _ in range(5)]
    await asyncio.sleep(0.01)
    stored = await engine.store(b"k", entry(clock))
    assert stored.waiters_released == 5
    results = await asyncio.gather(*waiters)
    assert all(r.outcome is Outcome.HIT and r.coalesced and not r.fill_lease for r in results)
    assert engine.counters.coalesced == 5


async def test_coalesced_waiters_give_up_after_their_wait(engine: Engine) -> None:
    first = await engine.lookup(b"k", coalesce_wait_ms=1000)
    assert first.fill_lease
    r = await engine.lookup(b"k", coalesce_wait_ms=20)
    assert r.outcome is Outcome.MISS and not r.fill_lease and not r.coalesced


async def test_release_wakes_waiters_with_a_miss(engine: Engine) -> None:
    await engine.lookup(b"k", coalesce_wait_ms=1000)
    waiter = asyncio.create_task(engine.lookup(b"k", coalesce_wait_ms=5000))
    await asyncio.sleep(0.01)
    assert await engine.release(b"k") == 1
    r = await asyncio.wait_for(waiter, 1)
    assert r.outcome is Outcome.MISS
    # the lease is free again: the next miss gets it
    assert (await engine.lookup(b"k", coalesce_wait_ms=10)).fill_lease


async def test_a_drain_wakes_coalesced_waiters_at_once(engine: Engine) -> None:
    await engine.lookup(b"k", coalesce_wait_ms=1000)  # the fill lease, never filled
    waiters = [asyncio.create_task(engine.lookup(b"k", coalesce_wait_ms=5000)) for _ in range(3)]
    await asyncio.sleep(0.01)
    assert engine.wake_waiters() == 3
    results = await asyncio.wait_for(asyncio.gather(*waiters), 1)
    assert all(r.outcome is Outcome.MISS and not r.fill_lease for r in results)


async def test_stale_entry_one_revalidates_others_get_stale(
    engine: Engine, clock: ManualClock
) -> None:
    await engine.store(b"k", entry(clock, ttl_ms=1000, stale_while_revalidate_ms=60_000))
    clock.advance(2000)
    a = await engine.lookup(b"k", coalesce_wait_ms=500)
    b = await engine.lookup(b"k", coalesce_wait_ms=500)
    assert a.outcome is Outcome.STALE and a.fill_lease
    assert b.outcome is Outcome.STALE and not b.fill_lease


async def test_lease_expires_when_the_holder_vanishes(clock: ManualClock) -> None:
    eng = Engine([MemoryTier(1 << 20, clock)], clock, lease_ttl_ms=1000)
    assert (await eng.lookup(b"k", coalesce_wait_ms=10)).fill_lease
    assert not (await eng.lookup(b"k", coalesce_wait_ms=10)).fill_lease
    clock.advance(1001)
    assert (await eng.lookup(b"k", coalesce_wait_ms=10)).fill_lease


async def test_vary_selects_the_variant_by_request_headers(
    engine: Engine, clock: ManualClock
) -> None:
    gz = entry(clock, body=b"gzip body", vary=("accept-encoding",))
    br = entry(clock, body=b"br body", vary=("accept-encoding",))
    await engine.store(b"k", gz, ((b"Accept-Encoding", b"gzip"),))
    await engine.store(b"k", br, ((b"accept-encoding", b"br"),))
    r1 = await engine.lookup(b"k", ((b"ACCEPT-ENCODING", b"gzip"),))
    r2 = await engine.lookup(b"k", ((b"accept-encoding", b"br"),))
    r3 = await engine.lookup(b"k", ((b"accept-encoding", b"zstd"),))
    r4 = await engine.lookup(b"k")
    assert r1.entry is not None and r1.entry.body == b"gzip body"
    assert r2.entry is not None and r2.entry.body == b"br body"
    assert r3.outcome is Outcome.MISS
    assert r4.outcome is Outcome.MISS


async def test_invalidating_a_varied_key_hides_every_variant(
    engine: Engine, clock: ManualClock
) -> None:
    await engine.store(b"k", entry(clock, vary=("accept",)), ((b"accept", b"a"),))
    assert await engine.invalidate_key(b"k") == 1
    assert (await engine.lookup(b"k", ((b"accept", b"a"),))).outcome is Outcome.MISS
    # storing again does not resurrect the old variant for other header values
    await engine.store(b"k", entry(clock, body=b"new", vary=("accept",)), ((b"accept", b"b"),))
    assert (await engine.lookup(b"k", ((b"accept", b"a"),))).outcome is Outcome.MISS


async def test_invalidate_by_prefix_and_tag(engine: Engine, clock: ManualClock) -> None:
    await engine.store(b"v1:routeA:1", entry(clock, tags=("users",)))
    await engine.store(b"v1:routeA:2", entry(clock))
    await engine.store(b"v1:routeB:1", entry(clock, tags=("users", "u-7")))
    assert await engine.invalidate_tag("u-7") == 1
    assert (await engine.lookup(b"v1:routeB:1")).outcome is Outcome.MISS
    assert await engine.invalidate_prefix(b"v1:routeA:") == 2
    assert (await engine.lookup(b"v1:routeA:1")).outcome is Outcome.MISS
    with pytest.raises(InvalidRequestError):
        await engine.invalidate_tag("")


async def test_observer_sees_lookups_and_stores(clock: ManualClock) -> None:
    obs = RecordingObserver()
    eng = Engine([MemoryTier(1 << 20, clock)], clock, observer=obs)
    await eng.lookup(b"k")
    await eng.store(b"k", entry(clock))
    await eng.lookup(b"k")
    assert obs.events == [
        ("lookup", "miss", ""),
        ("store", "stored"),
        ("lookup", "hit", "memory"),
    ]


async def test_stale_lease_is_handed_out_without_coalescing(
    engine: Engine, clock: ManualClock
) -> None:
    await engine.store(b"k", entry(clock, ttl_ms=1000, stale_while_revalidate_ms=60_000))
    clock.advance(2000)
    first = await engine.lookup(b"k")
    second = await engine.lookup(b"k")
    assert first.outcome is Outcome.STALE and first.fill_lease
    assert second.outcome is Outcome.STALE and not second.fill_lease
    # a miss without coalescing never takes a lease
    assert not (await engine.lookup(b"other")).fill_lease


class FakeLeases:
    """Injected `Leases`: records every call; the answers are set by the test."""

    def __init__(self, acquire: bool = True, filled: bool = False) -> None:
        self.acquire = acquire
        self.filled = filled
        self.calls: list[tuple[object, ...]] = []

    async def try_acquire(self, key: bytes) -> bool:
        self.calls.append(("try_acquire", key))
        return self.acquire

    async def wait(self, key: bytes, timeout_s: float) -> bool:
        self.calls.append(("wait", key, timeout_s))
        return self.filled

    async def release(self, key: bytes) -> int:
        self.calls.append(("release", key))
        return 7

    async def sweep(self) -> int:
        self.calls.append(("sweep",))
        return 0

    def wake_all(self) -> int:
        self.calls.append(("wake_all",))
        return 0


async def test_injected_leases_replace_the_local_ones(clock: ManualClock) -> None:
    leases = FakeLeases(acquire=False)
    eng = Engine([MemoryTier(1 << 20, clock)], clock, lease_ttl_ms=1, leases=leases)
    r = await eng.lookup(b"k", coalesce_wait_ms=250)
    assert r.outcome is Outcome.MISS and not r.fill_lease and not r.coalesced
    assert (await eng.store(b"k", entry(clock))).waiters_released == 7
    assert await eng.release(b"k") == 7
    await eng.sweep()
    assert (await eng.lookup(b"plain")).outcome is Outcome.MISS  # no coalescing: no lease
    assert leases.calls == [
        ("try_acquire", b"k"),
        ("wait", b"k", 0.25),
        ("release", b"k"),
        ("release", b"k"),
        ("sweep",),
    ]


async def test_injected_lease_filled_elsewhere_gives_a_coalesced_hit(clock: ManualClock) -> None:
    shared = DictTier("shared", clock)
    leases = FakeLeases(acquire=False, filled=True)
    eng = Engine([MemoryTier(1 << 20, clock), shared], clock, leases=leases)

    async def filled_by_another_sidecar(key: bytes, timeout_s: float) -> bool:
        shared.data[key] = entry(clock)
        return True

    leases.wait = filled_by_another_sidecar  # type: ignore[method-assign]
    r = await eng.lookup(b"k", coalesce_wait_ms=100)
    assert r.outcome is Outcome.HIT and r.coalesced and r.tier == "shared"
    assert eng.counters.coalesced == 1
    # a stale entry with the lease held elsewhere is served stale at once, no wait
    leases.calls.clear()
    await eng.store(b"s", entry(clock, ttl_ms=1000, stale_while_revalidate_ms=60_000))
    clock.advance(2000)
    s = await eng.lookup(b"s", coalesce_wait_ms=100)
    assert s.outcome is Outcome.STALE and not s.fill_lease
    assert leases.calls == [("release", b"s"), ("try_acquire", b"s")]


async def test_an_injected_empty_local_table_is_the_one_used(clock: ManualClock) -> None:
    leases = LocalLeases(clock, ttl_ms=1000)  # empty, hence falsy: must still be used
    eng = Engine([MemoryTier(1 << 20, clock)], clock, lease_ttl_ms=5, leases=leases)
    assert (await eng.lookup(b"k", coalesce_wait_ms=10)).fill_lease
    assert leases.is_held(b"k") and len(leases) == 1
    clock.advance(500)  # inside the injected table's TTL, far past lease_ttl_ms
    assert not (await eng.lookup(b"k", coalesce_wait_ms=10)).fill_lease


async def test_a_stale_memory_copy_gives_way_to_a_newer_one_another_node_stored(
    clock: ManualClock,
) -> None:
    l1, l2 = DictTier("memory", clock), DictTier("redis", clock)
    eng = Engine([l1, l2], clock)
    old = entry(clock, b"old", ttl_ms=1000, stale_while_revalidate_ms=60_000)
    l1.data[b"k"] = l2.data[b"k"] = old
    clock.advance(1500)
    refreshed = entry(clock, b"new", ttl_ms=60_000)
    l2.data[b"k"] = refreshed  # another node's refresh reached the shared tier
    r = await eng.lookup(b"k")
    assert (r.outcome, r.tier, r.fill_lease) == (Outcome.HIT, "redis", False)
    assert r.entry is not None and r.entry.body == b"new"
    assert l1.data[b"k"] == refreshed  # this node's memory copy replaced
    assert (await eng.lookup(b"k")).tier == "memory"  # fresh again; the lease given back
    # nothing newer below: the stale memory copy answers with the refresh lease; the shared
    # tier is read once, for the lookup handed the lease, not for every stale lookup
    clock.advance(61_000)
    l1.data[b"k2"] = l2.data[b"k2"] = entry(clock, ttl_ms=1000, stale_while_revalidate_ms=9000)
    clock.advance(1500)
    before = l2.gets
    r = await eng.lookup(b"k2")
    assert (r.outcome, r.tier, r.fill_lease) == (Outcome.STALE, "memory", True)
    for _ in range(20):
        r = await eng.lookup(b"k2")
        assert (r.outcome, r.tier, r.fill_lease) == (Outcome.STALE, "memory", False)
    assert l2.gets - before == 1


async def test_a_memory_copy_from_before_a_purge_leaves_the_copy_stored_since_below(
    clock: ManualClock,
) -> None:
    l1, l2 = DictTier("memory", clock), DictTier("redis", clock)
    eng = Engine([l1, l2], clock)
    await eng.store(b"k", entry(clock, b"v1", tags=("sku-1",)))
    old = l1.data[b"k"]
    await eng.purge_tags(["sku-1"])
    clock.advance(10)
    await eng.store(b"k", entry(clock, b"v2", tags=("sku-1",)))  # refetched since
    l1.data[b"k"] = old  # this node's memory still holds the copy from before the purge
    r = await eng.lookup(b"k")
    assert (r.outcome, r.tier) == (Outcome.HIT, "redis")
    assert r.entry is not None and r.entry.body == b"v2"
    assert l2.data[b"k"].body == b"v2"  # not deleted with the purged memory copy
    assert l1.data[b"k"].body == b"v2"  # backfilled
    # no copy stored since: the purged one is gone from every tier
    await eng.purge_tags(["sku-1"])
    assert (await eng.lookup(b"k")).outcome is Outcome.MISS
    assert b"k" not in l1.data and b"k" not in l2.data
