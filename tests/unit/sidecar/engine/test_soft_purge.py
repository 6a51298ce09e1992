"""Soft purges (entries answered stale, their windows starting at the purge) and purges
applied once per event id, with node-local generations (fake remote tier, manual clock)."""

from __future__ import annotations

import pytest

from sidecar.core.clock import ManualClock
from sidecar.core.errors import InvalidRequestError
from sidecar.core.model import Outcome
from sidecar.core.observer import RecordingObserver
from sidecar.engine.engine import Engine
from sidecar.engine.generations import LocalGenerations
from sidecar.engine.purge import soft_stale
from sidecar.tiers.memory import MemoryTier
from tests.support.entries import entry
from tests.support.fakes import DictTier

SWR = 30_000


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


async def test_a_soft_purge_answers_stale_with_the_ttl_cut_at_the_purge(
    engine: Engine, clock: ManualClock, memory: MemoryTier, remote: DictTier
) -> None:
    await engine.store(b"k", entry(clock, tags=("t",), stale_while_revalidate_ms=SWR))
    clock.advance(5_000)
    assert await engine.purge_tags(["t"], soft=True) == 0
    assert b"k" in memory and b"k" in remote.data  # nothing deleted
    clock.advance(1_000)
    found = await engine.lookup(b"k")
    assert found.outcome is Outcome.STALE
    assert found.entry is not None
    assert found.entry.ttl_ms == 5_000  # expired at the purge
    assert found.age_ms == 6_000  # one second into its stale window
    assert found.fill_lease  # the first caller refreshes it
    assert remote.data[b"k"].ttl_ms == 60_000  # the stored entry is untouched
    clock.advance(SWR)  # the window, counted from the purge, is over
    assert (await engine.lookup(b"k")).outcome is Outcome.MISS
    assert b"k" not in remote.data


async def test_a_soft_purged_entry_without_stale_windows_is_a_miss(
    engine: Engine, clock: ManualClock, remote: DictTier
) -> None:
    await engine.store(b"k", entry(clock, tags=("t",)))
    await engine.purge_tags(["t"], soft=True)
    assert (await engine.lookup(b"k")).outcome is Outcome.MISS
    assert b"k" not in remote.data


async def test_stale_if_error_alone_is_a_window_too(engine: Engine, clock: ManualClock) -> None:
    await engine.store(b"k", entry(clock, tags=("t",), stale_if_error_ms=10_000))
    await engine.purge_tags(["t"], soft=True)
    assert (await engine.lookup(b"k")).outcome is Outcome.STALE


async def test_a_store_after_a_soft_purge_is_fresh(engine: Engine, clock: ManualClock) -> None:
    await engine.store(b"k", entry(clock, tags=("t",), stale_while_revalidate_ms=SWR))
    await engine.purge_tags(["t"], soft=True)
    clock.advance(10)
    await engine.store(b"k", entry(clock, body=b"new", tags=("t",), stale_while_revalidate_ms=SWR))
    found = await engine.lookup(b"k")
    assert found.outcome is Outcome.HIT
    assert found.entry is not None and found.entry.body == b"new"


async def test_a_hard_purge_after_a_soft_one_wins(
    engine: Engine, clock: ManualClock, memory: MemoryTier, remote: DictTier
) -> None:
    await engine.store(b"k", entry(clock, tags=("t",), stale_while_revalidate_ms=SWR))
    await engine.purge_tags(["t"], soft=True)
    assert await engine.purge_tags(["t"]) == 1  # memory's copy, eagerly
    await memory.set(b"k", remote.data[b"k"])  # as if another node backfilled it
    assert (await engine.lookup(b"k")).outcome is Outcome.MISS


async def test_two_soft_purges_in_a_row_keep_the_first_instant(
    engine: Engine, clock: ManualClock
) -> None:
    await engine.store(b"k", entry(clock, tags=("t", "u"), stale_while_revalidate_ms=SWR))
    clock.advance(2_000)
    await engine.purge_tags(["t"], soft=True)
    clock.advance(3_000)
    await engine.purge_tags(["t", "u"], soft=True)
    found = await engine.lookup(b"k")
    assert found.outcome is Outcome.STALE
    assert found.entry is not None and found.entry.ttl_ms == 2_000


async def test_a_soft_purge_of_everything(
    engine: Engine, clock: ManualClock, memory: MemoryTier
) -> None:
    await engine.store(b"a", entry(clock, tags=("t",), stale_while_revalidate_ms=SWR))
    await engine.store(b"b", entry(clock, tags=("u",), stale_while_revalidate_ms=SWR))
    assert await engine.purge_all(soft=True) == 0
    assert b"a" in memory and b"b" in memory
    for key in (b"a", b"b"):
        assert (await engine.lookup(key)).outcome is Outcome.STALE
    await engine.store(b"a", entry(clock, tags=("t",), stale_while_revalidate_ms=SWR))
    assert (await engine.lookup(b"a")).outcome is Outcome.HIT
    assert await engine.purge_all() == 2  # hard: memory emptied
    assert (await engine.lookup(b"b")).outcome is Outcome.MISS


async def test_an_entry_stale_before_the_soft_purge_keeps_its_own_windows() -> None:
    clock = ManualClock()
    stored = entry(clock, ttl_ms=1_000, stale_while_revalidate_ms=SWR)
    clock.advance(5_000)
    assert soft_stale(stored, clock.now_ms(), clock.now_ms()) is stored


def test_a_purge_instant_ahead_of_this_clock_still_makes_the_entry_stale_now() -> None:
    clock = ManualClock()
    stored = entry(clock, stale_while_revalidate_ms=SWR)
    clock.advance(1_000)
    seen = soft_stale(stored, clock.now_ms() + 500, clock.now_ms())
    assert seen is not None and seen.ttl_ms == 1_000


async def test_once_applies_a_purge_once_per_id(
    engine: Engine, clock: ManualClock, remote: DictTier
) -> None:
    await engine.store(b"old", entry(clock, tags=("t",)))
    assert await engine.purge_tags(["t"], once="e1") == 1
    await engine.store(b"new", entry(clock, tags=("t",)))
    assert await engine.purge_tags(["t"], once="e1") == 0  # replayed: nothing bumped
    assert (await engine.lookup(b"new")).outcome is Outcome.HIT
    assert (await engine.lookup(b"old")).outcome is Outcome.MISS
    assert await engine.purge_tags(["t"], once="e2") == 1  # another event
    assert (await engine.lookup(b"new")).outcome is Outcome.MISS


async def test_once_applies_purge_all_once_per_id(engine: Engine, clock: ManualClock) -> None:
    await engine.purge_all(once="e1")
    await engine.store(b"k", entry(clock, tags=("t",)))
    assert await engine.purge_all(once="e1") == 0
    assert (await engine.lookup(b"k")).outcome is Outcome.HIT


async def test_local_generations_remember_a_bounded_number_of_ids(clock: ManualClock) -> None:
    gens = LocalGenerations(clock, max_recent_ids=2)
    assert await gens.purge(["t"], once="a")
    assert await gens.purge(["t"], once="b")
    assert not await gens.purge(["t"], once="b")
    assert await gens.purge(["t"], once="c")  # forgets "a"
    assert await gens.purge(["t"], once="a")  # applied again: one extra miss, never stale


async def test_invalidate_tag_is_purge_tags_of_one(engine: Engine, clock: ManualClock) -> None:
    await engine.store(b"k", entry(clock, tags=("t",)))
    assert await engine.invalidate_tag("t") == 1
    assert (await engine.lookup(b"k")).outcome is Outcome.MISS


@pytest.mark.parametrize(
    ("tags", "once", "reason"),
    [
        (["ok", "has space"], "", "bad_tag"),
        ([""], "", "bad_tag"),
        ("tag", "", "bad_tag"),
        (["ok"], "has space", "bad_once"),
        (["ok"], "x" * 257, "bad_once"),
    ],
)
async def test_bad_purges_are_refused_and_counted(
    engine: Engine, tags: list[str], once: str, reason: str
) -> None:
    with pytest.raises(InvalidRequestError) as err:
        await engine.purge_tags(tags, once=once)
    assert err.value.reason == reason
    assert engine.counters.rejected_by_reason[reason] == 1


async def test_no_tags_purges_nothing(engine: Engine, clock: ManualClock) -> None:
    await engine.store(b"k", entry(clock, tags=("t",)))
    assert await engine.purge_tags([]) == 0
    assert (await engine.lookup(b"k")).outcome is Outcome.HIT
