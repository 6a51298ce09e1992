"""Tag and route purges through generation counters (fake tiers, manual clock)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from sidecar.core.clock import ManualClock
from sidecar.core.errors import InvalidRequestError
from sidecar.core.model import CachedResponse, Outcome
from sidecar.core.observer import RecordingObserver
from sidecar.engine.engine import Engine
from sidecar.engine.generations import LocalGenerations
from sidecar.engine.purge import route_tag
from sidecar.tiers import codec
from sidecar.tiers.memory import MemoryTier
from tests.support.entries import entry
from tests.support.fakes import DictTier


class CountingTier(DictTier):
    """A remote-like tier (no EAGER_PURGE) that records which deletes it was asked."""

    def __init__(self, name: str, clock: ManualClock) -> None:
        super().__init__(name, clock)
        self.calls: list[str] = []

    async def delete(self, key: bytes) -> bool:
        self.calls.append("delete")
        return await super().delete(key)

    async def delete_prefix(self, prefix: bytes) -> int:
        self.calls.append("delete_prefix")
        return await super().delete_prefix(prefix)

    async def delete_tag(self, tag: str) -> int:
        self.calls.append("delete_tag")
        return await super().delete_tag(tag)


@pytest.fixture
def remote(clock: ManualClock) -> CountingTier:
    return CountingTier("redis", clock)


@pytest.fixture
def gens(clock: ManualClock) -> LocalGenerations:
    return LocalGenerations(clock)


@pytest.fixture
def obs() -> RecordingObserver:
    return RecordingObserver()


@pytest.fixture
def engine(
    clock: ManualClock, remote: CountingTier, gens: LocalGenerations, obs: RecordingObserver
) -> Engine:
    memory = MemoryTier(1 << 20, clock, admission="always")
    return Engine([memory, remote], clock, observer=obs, generations=gens)


def test_route_tag_is_a_pure_function_of_the_route() -> None:
    """The plugin sends the route (its key prefix) with each store; nothing parses keys."""
    assert route_tag("v1:users:") == "route:v1:users:"
    assert route_tag("v2:users:") == "route:v2:users:"
    assert route_tag("anything") == "route:anything"


async def test_a_route_purge_bumps_only_its_own_tag(
    engine: Engine, clock: ManualClock, remote: CountingTier, gens: LocalGenerations
) -> None:
    await engine.store(b"v2:routeA:1", entry(clock), route="v2:routeA:")
    await engine.store(b"v1:routeA:1", entry(clock), route="v1:routeA:")
    await engine.tiers[0].delete_prefix(b"v")  # only the remote has them
    remote.calls.clear()
    before = await gens.current(["route:v2:routeA:", "route:v1:routeA:"])
    assert await engine.invalidate_route("v2:routeA:") == 0  # nothing in memory
    assert remote.calls == []  # a generation bump, not a walk
    after = await gens.current(["route:v2:routeA:", "route:v1:routeA:"])
    assert after[0] != before[0] and after[1:] == before[1:]
    assert (await engine.lookup(b"v2:routeA:1")).outcome is Outcome.MISS
    assert (await engine.lookup(b"v1:routeA:1")).outcome is Outcome.HIT


async def test_store_stamps_the_generations_of_tags_and_route(
    engine: Engine, remote: CountingTier, gens: LocalGenerations
) -> None:
    await engine.store(b"v1:r:1", entry(engine_clock(engine), tags=("a", "b")), route="v1:r:")
    assert remote.data[b"v1:r:1"].tags == ("a", "b", "route:v1:r:")
    stamp = remote.data[b"v1:r:1"].tag_generations
    # a, b, the route, then the namespace epoch (node-local: 0 until purged here)
    assert stamp == await gens.current(["a", "b", "route:v1:r:"]) == (0, 0, 0, 0)
    await gens.bump("a")
    assert (await gens.current(["a"]))[0] not in (0, stamp[0])
    await engine.store(b"v1:r:2", entry(engine_clock(engine), tags=("a", "b")), route="v1:r:")
    stamp = remote.data[b"v1:r:2"].tag_generations
    assert stamp[0] < 0 and stamp[1:] == (0, 0, 0)  # a purged tag's nonce
    await engine.store(b"plain", entry(engine_clock(engine)))
    assert remote.data[b"plain"].tag_generations == ()
    # a caller cannot smuggle in a stamp
    await engine.store(b"plain", entry(engine_clock(engine), tag_generations=(9,)))
    assert remote.data[b"plain"].tag_generations == ()


def engine_clock(engine: Engine) -> ManualClock:
    clock = engine._clock
    assert isinstance(clock, ManualClock)
    return clock


async def test_a_bump_makes_tagged_entries_miss_and_be_deleted(
    engine: Engine, clock: ManualClock, remote: CountingTier, obs: RecordingObserver
) -> None:
    await engine.store(b"v1:r:t", entry(clock, tags=("users",)))
    await engine.store(b"v1:r:other", entry(clock, tags=("orders",)))
    await engine.store(b"v1:r:none", entry(clock))
    await engine.store(b"bare", entry(clock, tags=("users", "x")))
    assert await engine.invalidate_tag("users") == 2  # eager in memory only
    assert "delete_tag" not in remote.calls  # the remote tier is never walked
    assert b"v1:r:t" in remote.data  # still there until read
    assert (await engine.lookup(b"v1:r:t")).outcome is Outcome.MISS
    assert (await engine.lookup(b"bare")).outcome is Outcome.MISS
    assert b"v1:r:t" not in remote.data and b"bare" not in remote.data  # lazily purged
    assert ("evicted", "redis", "purged", 1) in obs.events
    assert (await engine.lookup(b"v1:r:other")).outcome is Outcome.HIT
    assert (await engine.lookup(b"v1:r:none")).outcome is Outcome.HIT
    # storing again after the purge is served
    await engine.store(b"v1:r:t", entry(clock, tags=("users",)))
    assert (await engine.lookup(b"v1:r:t")).outcome is Outcome.HIT


async def test_a_purge_hides_entries_found_only_in_a_shared_tier(
    clock: ManualClock, remote: CountingTier, gens: LocalGenerations
) -> None:
    """Another node stored it (we never had it in memory); our bump still hides it."""
    other = Engine([MemoryTier(1 << 20, clock, admission="always"), remote], clock)
    await other.store(b"v1:r:x", entry(clock, tags=("t",)))  # stamped (0, 0)
    mine = Engine([MemoryTier(1 << 20, clock, admission="always"), remote], clock, generations=gens)
    assert await mine.invalidate_tag("t") == 0
    r = await mine.lookup(b"v1:r:x")
    assert r.outcome is Outcome.MISS
    assert b"v1:r:x" not in remote.data


async def test_a_route_purge_reaches_variants_without_walking_the_remote_tier(
    engine: Engine, clock: ManualClock, remote: CountingTier
) -> None:
    await engine.store(b"v1:routeA:1", entry(clock), route="v1:routeA:")
    varied = entry(clock, vary=("accept",))
    await engine.store(b"v1:routeA:2", varied, ((b"accept", b"x"),), route="v1:routeA:")
    await engine.store(b"v1:routeB:1", entry(clock), route="v1:routeB:")
    memory_copies = await engine.tiers[0].delete_prefix(b"v1:")  # only the remote has them
    assert memory_copies == 4  # (the varied key's marker and variant)
    remote.calls.clear()
    assert await engine.invalidate_route("v1:routeA:") == 0
    assert remote.calls == []  # O(1): no walk of the remote tier
    assert (await engine.lookup(b"v1:routeA:1")).outcome is Outcome.MISS
    assert (await engine.lookup(b"v1:routeA:2", ((b"accept", b"x"),))).outcome is Outcome.MISS
    assert (await engine.lookup(b"v1:routeB:1")).outcome is Outcome.HIT


async def test_a_prefix_purge_is_a_walk_that_bumps_nothing(
    engine: Engine, clock: ManualClock, remote: CountingTier, gens: LocalGenerations
) -> None:
    await engine.store(b"v1:routeA:1", entry(clock), route="v1:routeA:")
    await engine.store(b"v1:routeA:2", entry(clock), route="v1:routeA:")
    await engine.store(b"v1:routeB:1", entry(clock), route="v1:routeB:")
    await engine.store(b"v1:routeA:3", entry(clock))  # no route: a prefix reaches it too
    assert await engine.invalidate_prefix(b"v1:routeA:") == 6  # 3 in memory + 3 remote
    assert remote.calls == ["delete_prefix"]
    assert sorted(remote.data) == [b"v1:routeB:1"]
    assert gens.live() == 0  # a key prefix is never read as a route: no record
    assert await engine.invalidate_prefix(b"v1:route") == 2
    assert remote.data == {}
    assert gens.live() == 0


async def test_entries_stamped_by_an_older_build_are_a_miss(
    engine: Engine, clock: ManualClock, remote: CountingTier
) -> None:
    """Without a stamp, or with counters (>= 0) and no epoch, an entry cannot be proved
    unpurged: a purge of its tag may have left no record. It misses once, then refills."""
    old = entry(clock, tags=("users",))
    assert old.tag_generations == ()
    remote.data[b"v1:r:old"] = old  # as written before generations existed
    # the codec reads a 10-element meta block (written by an older build) too
    data = codec.encode(old)
    assert codec.decode(data).tag_generations == ()
    remote.data[b"v1:r:counted"] = replace(old, tag_generations=(0,))  # "users", no epoch
    assert (await engine.lookup(b"v1:r:old")).outcome is Outcome.MISS
    assert (await engine.lookup(b"v1:r:counted")).outcome is Outcome.MISS
    assert remote.data == {}  # dropped lazily
    await engine.store(b"v1:r:old", old)
    assert (await engine.lookup(b"v1:r:old")).outcome is Outcome.HIT


def test_codec_keeps_generations_and_old_values() -> None:
    e = CachedResponse(200, (), b"b", 1, 1000, tags=("a", "b"))
    plain = codec.encode(e)
    stamped = codec.encode(replace(e, tag_generations=(3, 4, 5)))
    assert codec.decode(stamped).tag_generations == (3, 4, 5)
    assert codec.decode(plain) == e
    assert len(stamped) > len(plain)


async def test_untagged_lookups_do_not_ask_the_generations(clock: ManualClock) -> None:
    class Exploding(LocalGenerations):
        async def current(self, tags: object) -> tuple[int, ...]:
            raise AssertionError("asked")

    eng = Engine([MemoryTier(1 << 20, clock, admission="always")], clock, generations=Exploding())
    await eng.store(b"k", entry(clock))
    assert (await eng.lookup(b"k")).outcome is Outcome.HIT


# -- routes sent with the store -------------------------------------------------------------


async def test_a_route_purge_reaches_a_shared_tier_that_cannot_delete_prefixes(
    clock: ManualClock, gens: LocalGenerations
) -> None:
    shared = DictTier("shared", clock, capabilities=frozenset())  # no PREFIX_DELETE
    memory = MemoryTier(1 << 20, clock, admission="always")
    engine = Engine([memory, shared], clock, generations=gens)
    await engine.store(b"v1:users:1", entry(clock), route="v1:users:")
    await engine.store(b"v1:orders:1", entry(clock), route="v1:orders:")
    assert b"v1:users:1" in shared.data
    assert await engine.invalidate_prefix(b"v1:users:") == 1  # the memory copy only
    found = await engine.lookup(b"v1:users:1")
    assert (found.outcome, found.tier) == (Outcome.HIT, "shared")  # a prefix cannot reach it
    assert await engine.invalidate_route("v1:users:") == 1  # the backfilled memory copy
    assert b"v1:users:1" in shared.data  # not walked: dropped when read
    assert (await engine.lookup(b"v1:users:1")).outcome is Outcome.MISS
    assert b"v1:users:1" not in shared.data
    assert (await engine.lookup(b"v1:orders:1")).outcome is Outcome.HIT


@pytest.mark.parametrize(
    ("key", "route", "reason"),
    [
        (b"v1:users:1", "v1:orders:", "route_not_prefix"),
        (b"v1:users:1", "v1:users:1:more", "route_not_prefix"),
        (b"v1:us ers:1", "v1:us ers:", "bad_route"),  # a tag has no spaces
        ("v1:\u00e9:1".encode(), "v1:\u00e9:", "bad_route"),  # nor non-ASCII
        (b"v1:" + b"r" * 300 + b":1", "v1:" + "r" * 300 + ":", "bad_route"),  # too long
    ],
)
async def test_a_store_with_a_route_its_key_does_not_start_with_is_refused(
    engine: Engine, clock: ManualClock, key: bytes, route: str, reason: str
) -> None:
    with pytest.raises(InvalidRequestError, match="route") as refused:
        await engine.store(key, entry(clock), route=route)
    assert refused.value.reason == reason
    assert engine.counters.rejected_by_reason == {reason: 1}
    assert engine.counters.stores == 0


async def test_a_flood_of_prefix_purges_stores_no_generation_record(
    engine: Engine, clock: ManualClock, gens: LocalGenerations
) -> None:
    await engine.store(b"v1:r:1", entry(clock), route="v1:r:")
    for i in range(1000):  # prefixes nobody stored under, and the route's own
        await engine.invalidate_prefix(b"uri:h/p/" + str(i).encode())
        await engine.invalidate_prefix(b"v1:r:")
    assert gens.live() == 0
    await engine.invalidate_route("v1:r:")
    assert gens.live() == 1  # the route's record, until its entries expire


class NoPrefixTier(CountingTier):
    """A shared tier that cannot delete by prefix (as Memcached): answers 0, drops nothing."""

    async def delete_prefix(self, prefix: bytes) -> int:
        self.calls.append("delete_prefix")
        return 0


async def test_a_route_purge_reaches_a_no_prefix_tier_after_a_restart(clock: ManualClock) -> None:
    """Node-local generations start empty after a restart; a route purge still reaches
    the route's copies in a tier without prefix deletes (one bump, no walk)."""
    shared = NoPrefixTier("memcached", clock)
    before = Engine(
        [MemoryTier(1 << 20, clock, admission="always"), shared],
        clock,
        generations=LocalGenerations(clock),
    )
    await before.store(b"v2:r:1", entry(clock), route="v2:r:")
    memory = MemoryTier(1 << 20, clock, admission="always")
    restarted = Engine([memory, shared], clock, generations=LocalGenerations(clock))
    shared.calls.clear()
    assert await restarted.invalidate_route("v2:r:") == 0  # nothing in its memory yet
    assert shared.calls == []  # no walk of the shared tier
    assert (await restarted.lookup(b"v2:r:1")).outcome is Outcome.MISS


@pytest.mark.parametrize("route", ["", "v2:a b:", "v2:\u00e9:", "v2:" + "r" * 300 + ":"])
async def test_a_route_purge_of_a_route_no_store_could_name_is_refused(
    engine: Engine, route: str
) -> None:
    with pytest.raises(InvalidRequestError) as caught:
        await engine.invalidate_route(route)
    assert caught.value.field == "route"
    assert caught.value.reason == "bad_route"


async def test_a_route_purge_drops_the_memory_copies_now_and_counts_them(
    engine: Engine, clock: ManualClock, remote: CountingTier, obs: RecordingObserver
) -> None:
    await engine.store(b"v2:r:1", entry(clock), route="v2:r:")
    await engine.store(b"v2:r:2", entry(clock), route="v2:r:")
    await engine.store(b"v2:s:1", entry(clock), route="v2:s:")
    remote.calls.clear()
    assert await engine.invalidate_route("v2:r:") == 2
    assert remote.calls == []
    assert (await engine.lookup(b"v2:r:2")).outcome is Outcome.MISS
    assert (await engine.lookup(b"v2:s:1")).outcome is Outcome.HIT
    assert ("invalidated", "route", 2) in obs.events


async def test_an_entry_read_back_with_its_route_tag_can_be_stored_again(
    engine: Engine, clock: ManualClock
) -> None:
    """A 304 refresh stores the entry it read, whose tags include the route's own tag:
    that tag does not count against max_tags, and the entry keeps it once."""
    tags = tuple(f"t{i}" for i in range(engine.limits.max_tags))
    await engine.store(b"v2:r:1", entry(clock, tags=tags), route="v2:r:")
    found = await engine.lookup(b"v2:r:1")
    assert found.entry is not None and found.entry.tags == (*tags, "route:v2:r:")
    await engine.store(b"v2:r:1", found.entry, route="v2:r:")
    again = await engine.lookup(b"v2:r:1")
    assert again.outcome is Outcome.HIT
    assert again.entry is not None and again.entry.tags == (*tags, "route:v2:r:")
