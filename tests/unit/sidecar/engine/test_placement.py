"""Placement: the policy table (pure) and the engine writing/backfilling by it (fake tiers)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from sidecar.app import placement_from
from sidecar.config import SidecarConfig, load_config
from sidecar.core.clock import ManualClock
from sidecar.core.errors import ConfigError
from sidecar.core.model import CachedResponse, Outcome
from sidecar.core.observer import RecordingObserver
from sidecar.engine.engine import Engine
from sidecar.engine.placement import (
    EVERY_TIER,
    NoFrequencies,
    PlacementPolicy,
    SharedBand,
    entry_size,
)
from sidecar.engine.promotion import MAX_PENDING
from sidecar.tiers.base import SHARED_RAM, SetStatus
from tests.support.entries import entry
from tests.support.fakes import DictTier
from tests.support.tier_roles import Described, described, role_tier

ALL = ("memory", "redis", "memcached", "postgres")
KIB = 1024
POLICY = PlacementPolicy()


@pytest.mark.parametrize(
    ("size", "frequency", "available", "expected"),
    [
        # cold (below shared_min_hits): memory + durable only, whatever the size
        (100, 0, ALL, {"memory", "postgres"}),
        (100, 1, ALL, {"memory", "postgres"}),
        (500 * KIB, 1, ALL, {"memory", "postgres"}),
        # hot and small: Redis
        (100, 2, ALL, {"memory", "redis", "postgres"}),
        (64 * KIB, 15, ALL, {"memory", "redis", "postgres"}),
        # hot and large: Memcached, up to its limit
        (64 * KIB + 1, 2, ALL, {"memory", "memcached", "postgres"}),
        (1024 * KIB - 1024, 2, ALL, {"memory", "memcached", "postgres"}),
        (1024 * KIB - 1023, 2, ALL, {"memory", "postgres"}),
        # Redis alone takes the large ones too, up to memcached_max_entry_bytes
        (500 * KIB, 2, ("memory", "redis", "postgres"), {"memory", "redis", "postgres"}),
        (2048 * KIB, 2, ("memory", "redis", "postgres"), {"memory", "postgres"}),
        # Memcached alone takes the small ones too
        (100, 2, ("memory", "memcached"), {"memory", "memcached"}),
        (100, 1, ("memory", "memcached"), {"memory"}),
        # nothing but memory configured
        (100, 9, ("memory",), {"memory"}),
        # tiers the policy does not know are always written
        (100, 0, ("l1", "l2"), {"l1", "l2"}),
    ],
)
def test_policy_table(
    size: int, frequency: int, available: tuple[str, ...], expected: set[str]
) -> None:
    assert POLICY.tiers_for(size, frequency, described(available)) == frozenset(expected)


def test_not_durable_keeps_postgres_out() -> None:
    policy = PlacementPolicy(durable=False)
    assert policy.tiers_for(100, 0, described(ALL)) == {"memory"}
    assert policy.tiers_for(100, 5, described(ALL)) == {"memory", "redis"}


def test_shared_min_hits_zero_puts_every_entry_in_shared_ram() -> None:
    policy = PlacementPolicy(shared_min_hits=0)
    assert policy.tiers_for(10, 0, described(ALL)) == set(ALL) - {"memcached"}


@pytest.mark.parametrize("hits", [-1, 16])
def test_shared_min_hits_out_of_range_is_refused(hits: int) -> None:
    with pytest.raises(ValueError, match="shared_min_hits"):
        PlacementPolicy(shared_min_hits=hits)


def test_entry_size_is_raw_body_plus_headers(clock: ManualClock) -> None:
    assert entry_size(entry(clock, body=b"x" * 100)) == 100 + 30


def test_settings_build_the_policy() -> None:
    assert placement_from(SidecarConfig()) == PlacementPolicy()
    config = load_config(
        {
            "STRATA_SHARED_MIN_HITS": "3",
            "STRATA_REDIS_MAX_ENTRY_BYTES": "16k",
            "STRATA_MEMCACHED_MAX_ENTRY_BYTES": "512KiB",
            "STRATA_DURABLE_TIER": "false",
        }
    )
    bands = (SharedBand("redis", 16 * KIB), SharedBand("memcached", 512 * KIB))
    assert placement_from(config) == PlacementPolicy(3, bands, False)
    with pytest.raises(ConfigError, match="shared_min_hits"):
        load_config({"STRATA_SHARED_MIN_HITS": "16"})
    with pytest.raises(ConfigError, match="durable_tier"):
        load_config({"STRATA_DURABLE_TIER": "maybe"})


def test_durable_tier_accepts_a_toml_boolean(tmp_path: Path) -> None:
    path = tmp_path / "s.toml"
    path.write_text("durable_tier = false\n", encoding="utf-8")
    assert load_config({}, config_file=path).durable_tier is False
    path.write_text("durable_tier = 1\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="durable_tier"):
        load_config({}, config_file=path)


# -- the engine --------------------------------------------------------------------------


@pytest.fixture
def tiers(clock: ManualClock) -> dict[str, DictTier]:
    return {name: role_tier(name, clock) for name in ALL}


@pytest.fixture
def engine(clock: ManualClock, tiers: dict[str, DictTier]) -> Engine:
    return Engine(list(tiers.values()), clock, placement=PlacementPolicy())


def holders(tiers: dict[str, DictTier], key: bytes) -> set[str]:
    return {name for name, tier in tiers.items() if key in tier.data}


async def test_a_one_hit_key_goes_to_memory_and_postgres_only(
    engine: Engine, tiers: dict[str, DictTier], clock: ManualClock
) -> None:
    assert (await engine.lookup(b"k")).outcome is Outcome.MISS
    await engine.store(b"k", entry(clock))
    assert holders(tiers, b"k") == {"memory", "postgres"}


async def test_after_two_lookups_it_goes_to_redis_too(
    engine: Engine, tiers: dict[str, DictTier], clock: ManualClock
) -> None:
    await engine.lookup(b"k")
    await engine.lookup(b"k")
    assert engine.frequency(b"k") >= 2
    await engine.store(b"k", entry(clock))
    assert holders(tiers, b"k") == {"memory", "redis", "postgres"}


async def test_a_large_hot_entry_goes_to_memcached_not_redis(
    engine: Engine, tiers: dict[str, DictTier], clock: ManualClock
) -> None:
    await engine.lookup(b"big")
    await engine.lookup(b"big")
    await engine.store(b"big", entry(clock, body=b"x" * (100 * KIB)))
    assert holders(tiers, b"big") == {"memory", "memcached", "postgres"}


async def test_a_store_deletes_older_copies_from_tiers_it_skips(
    engine: Engine, tiers: dict[str, DictTier], clock: ManualClock
) -> None:
    await engine.lookup(b"k")
    await engine.lookup(b"k")
    await engine.store(b"k", entry(clock))
    assert "redis" in holders(tiers, b"k")
    await engine.store(b"k", entry(clock, body=b"y" * (100 * KIB)))  # now large
    assert holders(tiers, b"k") == {"memory", "memcached", "postgres"}
    del tiers["memory"].data[b"k"]
    hit = await engine.lookup(b"k")
    assert hit.tier == "memcached" and hit.entry is not None
    assert hit.entry.body == b"y" * (100 * KIB)  # never the old Redis copy


async def test_backfill_from_postgres_goes_to_memory_only_for_a_cold_key(
    engine: Engine, tiers: dict[str, DictTier], clock: ManualClock
) -> None:
    tiers["postgres"].data[b"k"] = entry(clock)
    hit = await engine.lookup(b"k")
    assert hit.outcome is Outcome.HIT and hit.tier == "postgres"
    assert holders(tiers, b"k") == {"memory", "postgres"}


async def test_backfill_from_postgres_goes_to_redis_for_a_hot_key(
    engine: Engine, tiers: dict[str, DictTier], clock: ManualClock
) -> None:
    tiers["postgres"].data[b"k"] = entry(clock)
    await engine.lookup(b"k")  # cold: memory only
    del tiers["memory"].data[b"k"]  # e.g. evicted
    hit = await engine.lookup(b"k")  # second lookup: hot
    assert hit.tier == "postgres"
    assert holders(tiers, b"k") == {"memory", "redis", "postgres"}


async def test_a_hot_large_backfill_goes_to_memcached(
    engine: Engine, tiers: dict[str, DictTier], clock: ManualClock
) -> None:
    tiers["postgres"].data[b"k"] = entry(clock, body=b"z" * (200 * KIB))
    await engine.lookup(b"k")
    del tiers["memory"].data[b"k"]
    await engine.lookup(b"k")
    assert holders(tiers, b"k") == {"memory", "memcached", "postgres"}


async def test_variants_are_placed_by_the_primary_key_frequency(
    engine: Engine, tiers: dict[str, DictTier], clock: ManualClock
) -> None:
    req = ((b"accept", b"json"),)
    await engine.store(b"v", entry(clock, vary=("accept",)), req)
    assert holders(tiers, b"v") == {"memory", "postgres"}  # the marker, cold
    await engine.lookup(b"v", req)
    await engine.lookup(b"v", req)
    await engine.store(b"v", entry(clock, vary=("accept",), body=b"hot"), req)
    redis_keys = set(tiers["redis"].data)
    assert b"v" in redis_keys and len(redis_keys) == 2  # marker and variant
    hit = await engine.lookup(b"v", req)
    assert hit.outcome is Outcome.HIT and hit.entry is not None and hit.entry.body == b"hot"


async def test_without_a_policy_every_tier_is_written(
    clock: ManualClock, tiers: dict[str, DictTier]
) -> None:
    engine = Engine(list(tiers.values()), clock)
    await engine.store(b"k", entry(clock))
    assert holders(tiers, b"k") == set(ALL)
    assert engine.frequency(b"k") == 0


# -- placement by capability ---------------------------------------------------------------


def test_a_redis_limit_above_memcacheds_keeps_redis_first() -> None:
    """Bands are tried in the order listed (not sorted by size), as the two settings always
    were: Redis takes what fits its limit, Memcached only what is larger and fits its own."""
    policy = PlacementPolicy(bands=(SharedBand("redis", 100 * KIB), SharedBand("memcached", KIB)))
    both = described(ALL)
    assert policy.tiers_for(10, 2, both) == {"memory", "redis", "postgres"}
    assert policy.tiers_for(100 * KIB, 2, both) == {"memory", "redis", "postgres"}
    assert policy.tiers_for(100 * KIB + 1, 2, both) == {"memory", "postgres"}
    alone = described(("memory", "memcached"))
    assert policy.tiers_for(KIB, 2, alone) == {"memory", "memcached"}
    assert policy.tiers_for(KIB + 1, 2, alone) == {"memory"}  # the cap is Memcached's band
    assert policy.tiers_for(100 * KIB, 2, described(("memory", "redis"))) == {"memory", "redis"}


@pytest.mark.parametrize(
    ("over", "size", "expected"),
    [
        ({"redis"}, 100, {"memory", "memcached", "postgres"}),
        ({"memcached"}, 500 * KIB, {"memory", "redis", "postgres"}),
        ({"postgres"}, 100, {"memory", "redis"}),
        ({"memory", "l1"}, 100, {"memory", "redis", "postgres", "l1"}),  # never left out
        ({"redis", "memcached"}, 100, {"memory", "postgres"}),
    ],
)
def test_tiers_over_budget_are_left_out_by_capability(
    over: set[str], size: int, expected: set[str]
) -> None:
    available = (*ALL, "l1") if "l1" in over else ALL
    wanted = expected | ({"l1"} if "l1" in over else set())
    assert POLICY.tiers_for(size, 2, described(available), frozenset(over)) == wanted


def test_a_shared_tier_with_no_band_takes_up_to_the_cap() -> None:
    shared = Described("other")
    shared.capabilities = frozenset({SHARED_RAM})
    tiers = [Described("memory"), shared]
    assert POLICY.tiers_for(500 * KIB, 2, tiers) == {"memory", "other"}
    assert POLICY.tiers_for(2048 * KIB, 2, tiers) == {"memory"}


def test_every_tier_is_the_default_and_needs_no_frequencies() -> None:
    assert EVERY_TIER.tiers_for(1, 0, described(ALL), frozenset({"redis"})) == set(ALL)
    assert not EVERY_TIER.needs_frequencies
    assert POLICY.needs_frequencies
    engine = Engine([DictTier("memory", ManualClock())], ManualClock())
    assert engine.placement is EVERY_TIER
    assert isinstance(engine.frequencies, NoFrequencies)


# -- promotion: a key that turns hot while served from memory --------------------------


async def test_a_key_served_from_memory_goes_to_shared_ram_when_it_turns_hot(
    engine: Engine, tiers: dict[str, DictTier], clock: ManualClock
) -> None:
    """Its only store followed its first miss (cold: memory and PostgreSQL); the memory hit
    that brings its count to shared_min_hits writes the same entry to Redis, so another
    node finds it there instead of going to the origin."""
    assert (await engine.lookup(b"k")).outcome is Outcome.MISS
    stored = entry(clock, tags=("t",))
    await engine.store(b"k", stored)
    assert holders(tiers, b"k") == {"memory", "postgres"}
    hit = await engine.lookup(b"k")
    assert hit.outcome is Outcome.HIT and hit.tier == "memory"
    await engine._reads.promoter.drain()
    assert holders(tiers, b"k") == {"memory", "redis", "postgres"}
    promoted = tiers["redis"].data[b"k"]
    assert (promoted.body, promoted.stored_at_ms) == (
        b"hello",
        tiers["memory"].data[b"k"].stored_at_ms,
    )
    writes = len(tiers["redis"].data)
    for _ in range(5):  # hotter still: no more writes
        await engine.lookup(b"k")
    await engine._reads.promoter.drain()
    assert len(tiers["redis"].data) == writes and engine._reads.promoter.pending == 0


async def test_a_large_entry_turning_hot_goes_to_memcached_and_a_stale_hit_is_not_promoted(
    engine: Engine, tiers: dict[str, DictTier], clock: ManualClock
) -> None:
    await engine.lookup(b"big")
    await engine.store(b"big", entry(clock, body=b"x" * (100 * KIB)))
    await engine.lookup(b"big")
    await engine._reads.promoter.drain()
    assert holders(tiers, b"big") == {"memory", "memcached", "postgres"}
    await engine.lookup(b"old")
    await engine.store(b"old", entry(clock, ttl_ms=1000, stale_while_revalidate_ms=60_000))
    clock.advance(2000)
    stale = await engine.lookup(b"old")
    assert stale.outcome is Outcome.STALE
    await engine._reads.promoter.drain()
    assert holders(tiers, b"old") == {"memory", "postgres"}


async def test_a_failing_shared_tier_costs_the_hit_nothing(
    engine: Engine, tiers: dict[str, DictTier], clock: ManualClock
) -> None:
    await engine.lookup(b"k")
    await engine.store(b"k", entry(clock))
    tiers["redis"].broken = True
    hit = await engine.lookup(b"k")
    assert hit.outcome is Outcome.HIT and hit.entry is not None
    await engine._reads.promoter.drain()
    assert holders(tiers, b"k") == {"memory", "postgres"}


async def test_no_promotion_without_shared_ram_or_when_every_store_shares(
    clock: ManualClock,
) -> None:
    alone = Engine(
        [role_tier("memory", clock), role_tier("postgres", clock)],
        clock,
        placement=PlacementPolicy(),
    )
    assert not alone._reads.promoter.enabled
    eager = Engine(
        [role_tier(n, clock) for n in ALL], clock, placement=PlacementPolicy(shared_min_hits=1)
    )
    assert not eager._reads.promoter.enabled  # the first store already shares
    assert not Engine([role_tier(n, clock) for n in ALL], clock)._reads.promoter.enabled


async def test_promotions_in_flight_are_bounded_and_the_rest_counted_as_dropped(
    clock: ManualClock,
) -> None:
    observer = RecordingObserver()
    tiers = {name: role_tier(name, clock) for name in ALL}
    tiers["redis"].delay = 0.05
    engine = Engine(list(tiers.values()), clock, observer=observer, placement=PlacementPolicy())
    keys = [b"k%d" % i for i in range(MAX_PENDING + 10)]
    for key in keys:
        await engine.lookup(key)
        await engine.store(key, entry(clock))
    for key in keys:
        await engine.lookup(key)
    assert engine._reads.promoter.pending == MAX_PENDING
    await engine._reads.promoter.drain()
    results = [e[2] for e in observer.events if e[0] == "promoted"]
    assert results.count("stored") == MAX_PENDING and results.count("dropped") == 10
    await engine.close()


# -- promotion never brings back what a key or prefix purge deleted ----------------------


class GatedTier(DictTier):
    """A shared tier whose writes wait for `gate` (a promotion in flight)."""

    def __init__(self, name: str, clock: ManualClock) -> None:
        super().__init__(name, clock, capabilities=role_tier(name, clock).capabilities)
        self.gate = asyncio.Event()
        self.gate.set()

    async def set(self, key: bytes, entry: CachedResponse) -> SetStatus:
        await self.gate.wait()
        return await super().set(key, entry)


def _two_nodes(clock: ManualClock) -> tuple[Engine, Engine, GatedTier, RecordingObserver]:
    redis = GatedTier("redis", clock)
    observer = RecordingObserver()
    a = Engine(
        [role_tier("memory", clock), redis], clock, observer=observer, placement=PlacementPolicy()
    )
    b = Engine([role_tier("memory", clock), redis], clock, placement=PlacementPolicy())
    return a, b, redis, observer


async def test_a_purge_from_another_node_deletes_what_a_promotion_wrote_back(
    clock: ManualClock,
) -> None:
    """B purges k (deleting the shared copy: there is none yet); A, which has not heard of
    the purge yet, serves k from memory and promotes it: the old entry is in Redis again.
    When A applies the purge event (local_only), it deletes that copy too, so B misses."""
    a, b, redis, _ = _two_nodes(clock)
    await a.lookup(b"k")
    await a.store(b"k", entry(clock, body=b"old"))
    await b.invalidate_key(b"k")
    assert (await a.lookup(b"k")).outcome is Outcome.HIT  # the event is not here yet
    await a._reads.promoter.drain()
    assert redis.data[b"k"].body == b"old"  # the window: until A applies the event
    await a.invalidate_key(b"k", local_only=True)
    assert b"k" not in redis.data
    assert (await b.lookup(b"k")).outcome is Outcome.MISS


async def test_a_purge_while_a_promotion_writes_is_not_undone(clock: ManualClock) -> None:
    a, _, redis, observer = _two_nodes(clock)
    await a.lookup(b"k")
    await a.store(b"k", entry(clock, body=b"old"))
    redis.gate.clear()
    await a.lookup(b"k")  # turns hot: the promotion waits on the gate
    await asyncio.sleep(0)
    assert a._reads.promoter.pending == 1
    await a.invalidate_key(b"k")
    redis.gate.set()
    await a._reads.promoter.drain()
    assert b"k" not in redis.data
    assert ("promoted", "redis", "undone") in observer.events


async def test_a_promotion_started_before_a_purge_writes_nothing(clock: ManualClock) -> None:
    a, _, redis, observer = _two_nodes(clock)
    await a.lookup(b"k")
    await a.store(b"k", entry(clock, body=b"old"))
    await a.lookup(b"k")  # the promotion is queued, not started
    await a.invalidate_key(b"k")
    await a._reads.promoter.drain()
    assert b"k" not in redis.data
    assert ("promoted", "redis", "purged") in observer.events


async def test_a_prefix_purge_deletes_the_keys_promoted_under_it(clock: ManualClock) -> None:
    a, _, redis, _ = _two_nodes(clock)
    for key in (b"/p/1", b"/p/2", b"/q/1"):
        await a.lookup(key)
        await a.store(key, entry(clock))
        await a.lookup(key)
        await a._reads.promoter.drain()
    assert set(redis.data) == {b"/p/1", b"/p/2", b"/q/1"}
    redis.data[b"/p/1"] = entry(clock, body=b"written again")  # as after another node's purge
    await a.invalidate_prefix(b"/p/", local_only=True)
    assert set(redis.data) == {b"/q/1"}


async def test_a_node_that_read_a_key_from_shared_ram_does_not_promote_it_again(
    clock: ManualClock,
) -> None:
    redis = GatedTier("redis", clock)
    seen = RecordingObserver()
    a = Engine([role_tier("memory", clock), redis], clock, placement=PlacementPolicy())
    b = Engine(
        [role_tier("memory", clock), redis], clock, observer=seen, placement=PlacementPolicy()
    )
    await a.lookup(b"k")
    await a.store(b"k", entry(clock))
    await a.lookup(b"k")
    await a._reads.promoter.drain()
    assert (await b.lookup(b"k")).tier == "redis"  # backfilled into B's memory
    assert (await b.lookup(b"k")).tier == "memory"  # count 2 on B: hot, but Redis has it
    await b._reads.promoter.drain()
    assert not [e for e in seen.events if e[0] == "promoted"]
