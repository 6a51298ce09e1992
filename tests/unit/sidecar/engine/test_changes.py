"""What the engine tells watchers (the near-caches' feed): bounded queues that turn into a
flush when a watcher falls behind, batches, and the engine's hooks (stores, invalidations by
key, prefix, route and tag, soft purges, purges of everything, a full generation table)."""

from __future__ import annotations

import pytest

from sidecar.core.clock import ManualClock
from sidecar.engine.changes import ITEM_OVERHEAD_BYTES, Batch, Broadcaster, Watcher
from sidecar.engine.engine import Engine
from sidecar.engine.generations import LocalGenerations
from sidecar.tiers.memory import MemoryTier
from tests.support.entries import entry
from tests.support.fakes import DictTier


def drain(watcher: Watcher) -> list[Batch]:
    out = []
    while (batch := watcher.take(1 << 20)) is not None:
        out.append(batch)
    return out


def test_a_watcher_gets_what_was_published_after_it_subscribed_in_order() -> None:
    changes = Broadcaster()
    changes.changed_keys([b"before"])
    watcher = changes.subscribe()
    assert not watcher.ready.is_set()
    changes.changed_keys([b"k1", b"k2"])
    changes.changed_tags(["t"])
    changes.changed_prefixes([b"v2:r:"])
    assert watcher.ready.is_set()
    assert drain(watcher) == [Batch(keys=(b"k1", b"k2"), prefixes=(b"v2:r:",), tags=("t",))]
    assert not watcher.ready.is_set()
    changes.unsubscribe(watcher)
    changes.changed_keys([b"after"])
    assert watcher.take(1 << 20) is None


def test_a_batch_holds_at_most_about_max_bytes_but_always_one_item() -> None:
    watcher = Broadcaster().subscribe()
    for i in range(10):
        watcher.put(0, b"%03d" % i)
    assert watcher.take(7) == Batch(keys=(b"000", b"001"))
    assert watcher.take(1) == Batch(keys=(b"002",))
    assert len(drain(watcher)) == 1


def test_a_watcher_that_falls_behind_gets_one_flush_instead_of_its_queue() -> None:
    changes = Broadcaster()
    slow = changes.subscribe(max_bytes=10 * (ITEM_OVERHEAD_BYTES + 3), max_items=1000)
    fast = changes.subscribe()
    for i in range(11):
        changes.changed_keys([b"%03d" % i])
    assert slow.overflows == 1
    assert len(slow) == 0 and slow.queued_bytes == 0  # the queue was dropped, not kept
    changes.changed_keys([b"later"])  # covered by the flush already due
    assert drain(slow) == [Batch(flush="overflow")]
    assert len(drain(fast)[0].keys) == 12  # the others are not affected
    changes.changed_keys([b"again"])  # after the flush was taken, changes queue again
    assert drain(slow) == [Batch(keys=(b"again",))]


def test_a_queue_is_bounded_in_items_too() -> None:
    watcher = Broadcaster().subscribe(max_items=3)
    for i in range(4):
        watcher.put(0, b"k%d" % i)
    assert drain(watcher) == [Batch(flush="overflow")]


def test_memory_held_per_watcher_stays_under_its_bound_whatever_is_published() -> None:
    changes = Broadcaster()
    watcher = changes.subscribe(max_bytes=64 * 1024)
    for i in range(100_000):
        changes.changed_keys([b"x" * (i % 300)])
        assert watcher.queued_bytes <= 64 * 1024
    assert watcher.overflows > 0


def test_a_flush_replaces_the_queue_and_its_first_reason_is_kept() -> None:
    changes = Broadcaster()
    watcher = changes.subscribe()
    changes.changed_keys([b"k"])
    changes.flushed("purge_all")
    changes.flushed("epoch")
    assert drain(watcher) == [Batch(flush="purge_all")]


def test_instance_ids_differ_between_broadcasters() -> None:
    assert Broadcaster().instance_id != Broadcaster().instance_id


# -- the engine's hooks ---------------------------------------------------------------


@pytest.fixture
def engine(clock: ManualClock) -> Engine:
    memory = MemoryTier(1 << 20, clock, admission="always")
    return Engine([memory, DictTier("redis", clock)], clock, generations=LocalGenerations(clock))


@pytest.fixture
def watcher(engine: Engine) -> Watcher:
    return engine.changes.subscribe()


async def test_a_store_tells_its_key(engine: Engine, watcher: Watcher, clock: ManualClock) -> None:
    await engine.store(b"v2:r:/a", entry(clock), route="v2:r:")
    assert drain(watcher) == [Batch(keys=(b"v2:r:/a",))]


async def test_a_refused_store_tells_nothing(
    engine: Engine, watcher: Watcher, clock: ManualClock
) -> None:
    with pytest.raises(Exception, match="route"):
        await engine.store(b"v2:r:/a", entry(clock), route="v2:other:")
    assert drain(watcher) == []


async def test_invalidations_by_key_and_prefix_tell_them(engine: Engine, watcher: Watcher) -> None:
    await engine.invalidate_key(b"k")
    await engine.invalidate_key(b"k2", local_only=True)  # an event read from the bus
    await engine.invalidate_prefix(b"v2:r:")
    assert drain(watcher) == [Batch(keys=(b"k", b"k2"), prefixes=(b"v2:r:",))]


async def test_a_route_purge_tells_the_routes_tag_and_prefix(
    engine: Engine, watcher: Watcher
) -> None:
    await engine.invalidate_route("v2:r:")
    assert drain(watcher) == [Batch(prefixes=(b"v2:r:",), tags=("route:v2:r:",))]


async def test_tag_purges_hard_soft_and_repeated_ones_tell_their_tags(
    engine: Engine, watcher: Watcher
) -> None:
    await engine.invalidate_tag("a")
    await engine.purge_tags(["b", "c"], soft=True)
    await engine.purge_event(["d"], once="e1")
    await engine.purge_event(["d"], once="e1")  # applied already: this node's view is told
    assert drain(watcher) == [Batch(tags=("a", "b", "c", "d", "d"))]


async def test_a_purge_of_everything_is_a_flush(engine: Engine, watcher: Watcher) -> None:
    await engine.purge_all()
    assert drain(watcher) == [Batch(flush="purge_all")]
    await engine.purge_event(None, soft=True, once="e2")
    assert drain(watcher) == [Batch(flush="purge_all")]


async def test_a_full_generation_table_turning_a_purge_into_an_epoch_bump_is_a_flush(
    clock: ManualClock,
) -> None:
    memory = MemoryTier(1 << 20, clock, admission="always")
    engine = Engine([memory], clock, generations=LocalGenerations(clock, max_records=3))
    watcher = engine.changes.subscribe()
    for tag in ("a", "b", "c"):
        await engine.invalidate_tag(tag)
    assert drain(watcher) == [Batch(tags=("a", "b", "c"))]
    await engine.invalidate_tag("d")  # the table is full: every entry is purged
    assert drain(watcher) == [Batch(flush="epoch")]


async def test_without_watchers_nothing_is_queued_or_read(engine: Engine) -> None:
    await engine.invalidate_tag("a")
    assert engine.changes.watchers == 0
    assert engine.changes.published == 1
