"""Per-tier byte budgets: placement skips over-budget shared tiers (pure table), `Budgets`
sampling, the engine with fake tiers and a fake usage sampler, settings and metrics."""

from __future__ import annotations

import logging

import pytest
from prometheus_client import CollectorRegistry

from sidecar.app import budgets_from, build_engine
from sidecar.config import SidecarConfig, load_config
from sidecar.core.clock import ManualClock
from sidecar.core.errors import ConfigError, TierError
from sidecar.core.model import TierSnapshot
from sidecar.core.observer import NullObserver, RecordingObserver
from sidecar.engine.budgets import LOG_EVERY_S, NO_BUDGETS, Budgets
from sidecar.engine.engine import Engine
from sidecar.engine.placement import PlacementPolicy
from sidecar.observability.metrics import PrometheusObserver
from sidecar.tiers.base import MEASURABLE
from sidecar.tiers.breaker import CircuitBreakerTier
from tests.support.entries import entry
from tests.support.fakes import DictTier
from tests.support.tier_roles import described, role_tier

ALL = ("memory", "redis", "memcached", "postgres")
KIB = 1024
POLICY = PlacementPolicy()


@pytest.mark.parametrize(
    ("size", "frequency", "available", "over", "expected"),
    [
        # no tier over budget: as before
        (100, 2, ALL, set(), {"memory", "redis", "postgres"}),
        # Redis over budget: a small hot entry goes to Memcached instead
        (100, 2, ALL, {"redis"}, {"memory", "memcached", "postgres"}),
        # Memcached over budget: a large hot entry goes to Redis (alone it takes both ranges)
        (100 * KIB, 2, ALL, {"memcached"}, {"memory", "redis", "postgres"}),
        # both shared RAM tiers over budget: memory and PostgreSQL only
        (100, 2, ALL, {"redis", "memcached"}, {"memory", "postgres"}),
        # Redis alone and over budget
        (100, 2, ("memory", "redis", "postgres"), {"redis"}, {"memory", "postgres"}),
        # PostgreSQL over budget: nothing new goes there
        (100, 0, ALL, {"postgres"}, {"memory"}),
        (100, 2, ALL, {"postgres"}, {"memory", "redis"}),
        # memory and unknown tiers are never skipped
        (100, 0, ("memory", "l2"), {"memory", "l2"}, {"memory", "l2"}),
        # a cold entry is unaffected by a shared RAM budget
        (100, 1, ALL, {"redis"}, {"memory", "postgres"}),
    ],
)
def test_policy_skips_over_budget_tiers(
    size: int, frequency: int, available: tuple[str, ...], over: set[str], expected: set[str]
) -> None:
    got = POLICY.tiers_for(size, frequency, described(available), over_budget=frozenset(over))
    assert got == frozenset(expected)


# -- Budgets -----------------------------------------------------------------------------


class FakeUsage:
    """A usage reader whose value (or failure) the test sets."""

    def __init__(self, value: int | None = 0) -> None:
        self.value = value
        self.fail = False
        self.reads = 0

    async def __call__(self) -> int | None:
        self.reads += 1
        if self.fail:
            raise TierError("down")
        return self.value


async def test_over_budget_at_or_above_the_budget(clock: ManualClock) -> None:
    redis = FakeUsage(99)
    budgets = Budgets({"redis": 100}, {"redis": redis}, clock)
    assert budgets.over_budget() == frozenset()  # never sampled: within budget
    await budgets.sample()
    assert budgets.over_budget() == frozenset()
    redis.value = 100
    await budgets.sample()
    assert budgets.over_budget() == {"redis"}
    redis.value = 10
    await budgets.sample()
    assert budgets.over_budget() == frozenset()


async def test_a_tier_without_a_budget_is_sampled_for_its_bytes_but_never_over_budget(
    clock: ManualClock,
) -> None:
    redis, pg = FakeUsage(10**9), FakeUsage(10**9)
    budgets = Budgets({"redis": 0, "memcached": 5}, {"redis": redis, "postgres": pg}, clock)
    assert budgets  # something to sample
    assert budgets.max_bytes == {}  # memcached's budget has no reader: nothing to check
    await budgets.sample()
    assert redis.reads == pg.reads == 1
    assert budgets.over_budget() == frozenset()
    snap = TierSnapshot("redis", 0, 0, 0, hits=3)
    assert budgets.annotate(snap) == TierSnapshot("redis", 0, 10**9, 0, hits=3)
    assert budgets.annotate(TierSnapshot("memcached", 0, 0, 0)).bytes == 0
    assert not Budgets({"redis": 100}, {}, clock)


async def test_failed_sample_keeps_the_last_one_and_logs_once_a_minute(
    clock: ManualClock, caplog: pytest.LogCaptureFixture
) -> None:
    redis = FakeUsage(200)
    budgets = Budgets({"redis": 100}, {"redis": redis}, clock)
    await budgets.sample()
    redis.fail = True
    with caplog.at_level(logging.WARNING, logger="strata.sidecar.budgets"):
        await budgets.sample()
        await budgets.sample()
        clock.advance(int(LOG_EVERY_S * 1000) - 1)
        await budgets.sample()
        assert len(caplog.records) == 1
        clock.advance(1)  # ms: now a full minute since the last log
        await budgets.sample()
        assert len(caplog.records) == 2
    assert budgets.over_budget() == {"redis"}
    assert budgets.usage("redis") == 200


async def test_annotate_reports_budget_and_last_sample(clock: ManualClock) -> None:
    budgets = Budgets({"redis": 100}, {"redis": FakeUsage(42)}, clock)
    snap = TierSnapshot("redis", 0, 0, 0, hits=3)
    assert budgets.annotate(snap) == TierSnapshot("redis", 0, 0, 100, hits=3)
    await budgets.sample()
    assert budgets.annotate(snap) == TierSnapshot("redis", 0, 42, 100, hits=3)
    other = TierSnapshot("memory", 1, 2, 3)
    assert budgets.annotate(other) is other


# -- the engine --------------------------------------------------------------------------


def holders(tiers: dict[str, DictTier], key: bytes) -> set[str]:
    return {name for name, tier in tiers.items() if key in tier.data}


async def test_engine_skips_an_over_budget_tier_and_counts_it(clock: ManualClock) -> None:
    tiers = {name: role_tier(name, clock) for name in ALL}
    usage = FakeUsage(0)
    budgets = Budgets({"redis": 1000}, {"redis": usage}, clock)
    obs = RecordingObserver()
    engine = Engine(list(tiers.values()), clock, observer=obs, placement=POLICY, budgets=budgets)
    for key in (b"a", b"b"):
        await engine.lookup(key)
        await engine.lookup(key)
    await budgets.sample()
    await engine.store(b"a", entry(clock))
    assert holders(tiers, b"a") == {"memory", "redis", "postgres"}
    assert not [e for e in obs.events if e[0] == "placement_skipped"]

    usage.value = 1000
    await budgets.sample()
    await engine.store(b"b", entry(clock))
    assert holders(tiers, b"b") == {"memory", "memcached", "postgres"}
    # a new version of a key already in Redis is deleted there (no stale shadow)
    await engine.store(b"a", entry(clock, body=b"new"))
    assert holders(tiers, b"a") == {"memory", "memcached", "postgres"}
    skipped = [e for e in obs.events if e[0] == "placement_skipped"]
    assert skipped == [("placement_skipped", "redis", "budget")] * 2

    snap = {s.name: s for s in engine.snapshot()}
    assert (snap["redis"].bytes, snap["redis"].max_bytes) == (1000, 1000)
    assert snap["memcached"].max_bytes == 0


async def test_backfill_skips_an_over_budget_tier(clock: ManualClock) -> None:
    tiers = {name: role_tier(name, clock) for name in ("memory", "redis", "postgres")}
    budgets = Budgets({"redis": 1}, {"redis": FakeUsage(5)}, clock)
    engine = Engine(list(tiers.values()), clock, placement=POLICY, budgets=budgets)
    await budgets.sample()
    tiers["postgres"].data[b"k"] = entry(clock)
    for _ in range(3):
        tiers["memory"].data.clear()
        await engine.lookup(b"k")
    assert holders(tiers, b"k") == {"memory", "postgres"}


# -- wiring ------------------------------------------------------------------------------


def test_settings_parse_and_check() -> None:
    config = SidecarConfig()
    assert (config.redis_max_bytes, config.memcached_max_bytes, config.postgres_max_bytes) == (
        0,
        0,
        0,
    )
    assert config.budget_sample_seconds == 5.0
    config = load_config(
        {
            "STRATA_REDIS_MAX_BYTES": "64MiB",
            "STRATA_MEMCACHED_MAX_BYTES": "1g",
            "STRATA_POSTGRES_MAX_BYTES": "10",
            "STRATA_BUDGET_SAMPLE_SECONDS": "0.5",
        }
    )
    assert config.redis_max_bytes == 64 * KIB * KIB
    assert config.memcached_max_bytes == KIB**3
    assert config.postgres_max_bytes == 10
    assert config.budget_sample_seconds == 0.5
    with pytest.raises(ConfigError, match="redis_max_bytes"):
        load_config({"STRATA_REDIS_MAX_BYTES": "-1"})
    with pytest.raises(ConfigError, match="budget_sample_seconds"):
        load_config({"STRATA_BUDGET_SAMPLE_SECONDS": "0"})


async def test_budgets_from_config_reads_usage_through_the_breaker(clock: ManualClock) -> None:
    class UsageTier(DictTier):
        @property
        def capabilities(self) -> frozenset[str]:
            return super().capabilities | {MEASURABLE}

        async def usage(self) -> int:
            return 7

    tiers = [
        DictTier("memory", clock),
        CircuitBreakerTier(UsageTier("redis", clock), clock),
        CircuitBreakerTier(DictTier("postgres", clock), clock),  # inner has no usage()
    ]
    unbudgeted = budgets_from(SidecarConfig(), tiers, clock)  # type: ignore[arg-type]
    assert unbudgeted is not None and unbudgeted.max_bytes == {}
    await unbudgeted.sample()  # occupancy reported without a budget
    assert unbudgeted.annotate(TierSnapshot("redis", 0, 0, 0)).bytes == 7
    assert unbudgeted.over_budget() == frozenset()
    assert budgets_from(SidecarConfig(), [DictTier("memory", clock)], clock) is None
    config = SidecarConfig(redis_max_bytes=7, postgres_max_bytes=1)
    budgets = budgets_from(config, tiers, clock)  # type: ignore[arg-type]
    assert budgets is not None
    assert budgets.max_bytes == {"redis": 7, "postgres": 1}
    await budgets.sample()
    assert budgets.over_budget() == {"redis"}  # postgres: usage None, never over
    assert budgets.usage("postgres") is None


def test_engine_without_shared_tiers_has_no_budgets() -> None:
    config = SidecarConfig(redis_max_bytes=1)
    assert build_engine(config, ManualClock(), NullObserver()).budgets is NO_BUDGETS


def test_prometheus_counts_skipped_placements() -> None:
    registry = CollectorRegistry()
    PrometheusObserver(registry).placement_skipped("redis", "budget")
    value = registry.get_sample_value(
        "strata_placement_skipped_total", {"tier": "redis", "reason": "budget"}
    )
    assert value == 1.0


# -- room: shared admission relaxes while a tier has room ---------------------------------


@pytest.mark.parametrize(
    ("size", "frequency", "roomy", "expected"),
    [
        # a first lookup's store: to Redis while Redis has room
        (100, 1, {"redis"}, {"memory", "redis", "postgres"}),
        # room in Memcached does not send a small entry there: its band is Redis'
        (100, 1, {"memcached"}, {"memory", "postgres"}),
        # a large entry to Memcached while Memcached has room
        (100 * KIB, 1, {"memcached"}, {"memory", "memcached", "postgres"}),
        (100 * KIB, 1, {"redis"}, {"memory", "postgres"}),
        # a store with no lookup before it (frequency 0) is not shared
        (100, 0, {"redis"}, {"memory", "postgres"}),
        # no room anywhere: strict, as before
        (100, 1, set(), {"memory", "postgres"}),
        (100, 2, set(), {"memory", "redis", "postgres"}),
    ],
)
def test_a_first_lookup_s_entry_goes_to_the_shared_tier_its_size_picks_while_it_has_room(
    size: int, frequency: int, roomy: set[str], expected: set[str]
) -> None:
    got = POLICY.tiers_for(size, frequency, described(ALL), roomy=frozenset(roomy))
    assert got == frozenset(expected)


async def test_room_is_below_the_fraction_of_the_smaller_of_budget_and_server_limit(
    clock: ManualClock,
) -> None:
    usage = {n: FakeUsage(700) for n in ("redis", "memcached", "postgres", "nolimit")}
    limits = {
        "redis": lambda: 1000,  # server limit only: 700 < 0.8 x 1000
        "memcached": lambda: 1000,  # budget 800 is smaller: 700 >= 0.8 x 800
        "postgres": lambda: None,  # budget only: 700 < 0.8 x 10000
        "nolimit": lambda: None,  # neither: never roomy (unbounded growth)
    }
    budgets = Budgets(
        {"memcached": 800, "postgres": 10_000}, usage, clock, limits, room_fraction=0.8
    )
    assert budgets.roomy() == frozenset()  # nothing sampled yet
    await budgets.sample()
    assert budgets.roomy() == {"redis", "postgres"}
    usage["redis"].value = 800  # at the fraction: no more room
    await budgets.sample()
    assert budgets.roomy() == {"postgres"}
    off = Budgets({}, {"redis": FakeUsage(1)}, clock, {"redis": lambda: 1000}, room_fraction=0)
    await off.sample()
    assert off.roomy() == frozenset()
    with pytest.raises(ValueError, match="room_fraction"):
        Budgets({}, {}, clock, room_fraction=1.5)


async def test_the_engine_shares_a_first_store_while_redis_has_room_and_stops_when_full(
    clock: ManualClock,
) -> None:
    tiers = {name: role_tier(name, clock) for name in ALL}
    redis_used = FakeUsage(10)
    budgets = Budgets(
        {"redis": 1000}, {"redis": redis_used}, clock, {"redis": lambda: None}, room_fraction=0.8
    )
    engine = Engine(list(tiers.values()), clock, placement=PlacementPolicy(), budgets=budgets)
    await budgets.sample()
    await engine.lookup(b"a")
    await engine.store(b"a", entry(clock))
    assert b"a" in tiers["redis"].data
    redis_used.value = 900
    await budgets.sample()
    await engine.lookup(b"b")
    await engine.store(b"b", entry(clock))
    assert b"b" not in tiers["redis"].data


def test_room_fraction_setting_is_a_share_and_a_nan_is_refused() -> None:
    assert SidecarConfig().shared_room_fraction == 0.8
    assert load_config({"STRATA_SHARED_ROOM_FRACTION": "0"}).shared_room_fraction == 0.0
    for bad in ("1.5", "-0.1", "nan", "lots"):
        with pytest.raises(ConfigError, match="shared_room_fraction"):
            load_config({"STRATA_SHARED_ROOM_FRACTION": bad})


async def test_what_this_node_places_between_samples_uses_up_the_room(
    clock: ManualClock,
) -> None:
    """A fast fill stops the room rule before the next sample shows it (the reviewer's
    Redis went from 40 % to 100 % of maxmemory within one 5 s sample interval)."""
    used = FakeUsage(500)
    budgets = Budgets({"redis": 1000}, {"redis": used}, clock, room_fraction=0.8)
    await budgets.sample()
    assert budgets.roomy() == {"redis"}  # 300 bytes of room left
    budgets.note_placed("redis", 200)
    assert budgets.roomy() == {"redis"}
    budgets.note_placed("redis", 100)
    assert budgets.roomy() == frozenset()
    budgets.note_placed("memcached", 10)  # not roomy, not sampled: nothing happens
    await budgets.sample()  # the server freed memory meanwhile: room again
    assert budgets.roomy() == {"redis"}


async def test_the_engine_counts_its_shared_stores_against_the_room(clock: ManualClock) -> None:
    tiers = {name: role_tier(name, clock) for name in ALL}
    budgets = Budgets({"redis": 10_000}, {"redis": FakeUsage(0)}, clock, room_fraction=0.5)
    engine = Engine(list(tiers.values()), clock, placement=PlacementPolicy(), budgets=budgets)
    await budgets.sample()  # 5,000 bytes of room
    stored = []
    for i in range(20):
        key = b"k%d" % i
        await engine.lookup(key)
        await engine.store(key, entry(clock, body=b"x" * 1000))
        stored.append(key in tiers["redis"].data)
    assert stored[:4] == [True] * 4 and not any(stored[5:])
