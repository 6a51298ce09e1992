"""Generations expire with the entries that depend on them, and an entry purged once is
never served again, whatever happens to its generation record (fake clock, no servers)."""

from __future__ import annotations

from sidecar.core.clock import ManualClock
from sidecar.core.model import Outcome
from sidecar.engine.engine import Engine
from sidecar.engine.generation_table import GenerationTable, Record
from sidecar.engine.generations import LocalGenerations
from sidecar.tiers.memory import MemoryTier
from tests.support.entries import entry
from tests.support.fakes import DictTier


def engine_with(clock: ManualClock, remote: DictTier, gens: LocalGenerations) -> Engine:
    return Engine([MemoryTier(1 << 20, clock, admission="always"), remote], clock, generations=gens)


async def test_purge_records_of_tags_no_entry_carries_expire(clock: ManualClock) -> None:
    gens = LocalGenerations(clock)
    remote = DictTier("redis", clock)
    engine = engine_with(clock, remote, gens)
    await engine.store(b"v1:r:x", entry(clock, ttl_ms=60_000, tags=("t",)))
    for i in range(100_000):
        await gens.bump(f"uri:host/path/{i}")
    assert gens.live() == 100_000
    clock.advance(60_001)  # past every entry seen: nothing they could purge is left
    assert gens.live() == 0


async def test_records_go_once_every_entry_stamped_from_them_has_expired(
    clock: ManualClock,
) -> None:
    gens = LocalGenerations(clock)
    remote = DictTier("redis", clock)
    engine = engine_with(clock, remote, gens)
    for i in range(2_000):
        await engine.store(f"v1:r:{i}".encode(), entry(clock, ttl_ms=60_000, tags=(f"t{i}",)))
        await engine.invalidate_tag(f"t{i}")
    # one record per purged tag (a tag nobody purged needs none)
    assert gens.live() == 2_000
    clock.advance(59_000)
    assert gens.live() == 2_000
    clock.advance(1_001)
    assert gens.live() == 0


async def test_a_later_longer_lived_entry_keeps_its_record_alive(clock: ManualClock) -> None:
    gens = LocalGenerations(clock)
    remote = DictTier("redis", clock)
    engine = engine_with(clock, remote, gens)
    await engine.store(b"v1:r:short", entry(clock, ttl_ms=10_000, tags=("t",)))
    await engine.invalidate_tag("t")
    await engine.store(b"v1:r:long", entry(clock, ttl_ms=100_000, tags=("t",)))
    clock.advance(50_000)
    await engine.tiers[0].delete_prefix(b"")  # only the shared tier has it now
    assert (await engine.lookup(b"v1:r:long")).outcome is Outcome.HIT
    await engine.invalidate_tag("t")
    assert (await engine.lookup(b"v1:r:long")).outcome is Outcome.MISS


async def test_local_generations_keep_shared_entries_across_a_restart_and_nodes(
    clock: ManualClock,
) -> None:
    """Without Redis there is no shared record: an entry another sidecar (or this one before
    a restart) stored in a shared tier is current unless purged here since the start."""
    remote = DictTier("postgres", clock)
    before = engine_with(clock, remote, LocalGenerations(clock))
    await before.store(b"v1:r:a", entry(clock, tags=("users",)))
    restarted = engine_with(clock, remote, LocalGenerations(clock))
    assert (await restarted.lookup(b"v1:r:a")).outcome is Outcome.HIT
    await restarted.invalidate_tag("users")
    await restarted.tiers[0].delete_prefix(b"")
    assert (await restarted.lookup(b"v1:r:a")).outcome is Outcome.MISS
    # stored again after the purge: current again, purged again
    await restarted.store(b"v1:r:a", entry(clock, tags=("users",)))
    await restarted.tiers[0].delete_prefix(b"")
    assert (await restarted.lookup(b"v1:r:a")).outcome is Outcome.HIT
    await restarted.invalidate_tag("users")
    await restarted.tiers[0].delete_prefix(b"")
    assert (await restarted.lookup(b"v1:r:a")).outcome is Outcome.MISS


async def test_a_purge_record_outlives_every_entry_it_was_read_with(clock: ManualClock) -> None:
    remote = DictTier("postgres", clock)
    other = engine_with(clock, remote, LocalGenerations(clock))
    await other.store(b"v1:r:long", entry(clock, ttl_ms=600_000, tags=("t",)))
    gens = LocalGenerations(clock)
    here = engine_with(clock, remote, gens)
    await here.store(b"v1:r:short", entry(clock, ttl_ms=1_000, tags=("t",)))
    assert (await here.lookup(b"v1:r:long")).outcome is Outcome.HIT  # read: observed
    await here.tiers[0].delete_prefix(b"")
    await here.invalidate_tag("t")
    clock.advance(300_000)  # the short entry is long gone; the long one is not
    assert gens.live() == 1
    assert (await here.lookup(b"v1:r:long")).outcome is Outcome.MISS


async def test_a_full_table_purges_everything_instead_of_forgetting_a_purge(
    clock: ManualClock,
) -> None:
    gens = LocalGenerations(clock, max_records=10)
    remote = DictTier("redis", clock)
    engine = engine_with(clock, remote, gens)
    await engine.store(b"v1:r:x", entry(clock, tags=("t",)))
    await engine.invalidate_tag("t")
    await engine.store(b"v1:r:kept", entry(clock, ttl_ms=600_000, tags=("k",)))
    for i in range(20):  # more purged tags than the table holds
        await engine.invalidate_tag(f"o{i}")
    assert gens.live() <= 10
    await engine.tiers[0].delete_prefix(b"")
    assert (await engine.lookup(b"v1:r:x")).outcome is Outcome.MISS
    assert (await engine.lookup(b"v1:r:kept")).outcome is Outcome.MISS  # the epoch moved


def test_the_table_drops_by_expiry_and_by_cap() -> None:
    table = GenerationTable(max_records=3)
    table.put("a", Record(-1, 100))
    table.put("b", Record(-2, 50))
    table.put("c", Record(-3, 200))
    record = table.get("b", 0)
    assert record is not None
    table.extend("b", record, 300)
    table.put("d", Record(-4, 400))  # over the cap: "a" expires first now
    assert table.get("a", 0) is None and len(table) == 3
    assert table.prune(250) == 1  # "c"
    assert table.get("b", 250) is not None
    assert table.get("b", 300) is None
    for i in range(5_000):  # the heap is rebuilt, never grows without bound
        rec = table.get("d", 0)
        assert rec is not None
        table.extend("d", rec, 400 + i + 1)
    assert len(table._heap) <= 2 * len(table) + 1024 + 1
