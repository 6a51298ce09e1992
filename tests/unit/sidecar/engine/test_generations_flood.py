"""A flood of purges of distinct tags costs bounded memory, and what it costs goes away.

Before: without Redis every purge of a tag kept a ~300-byte record, up to a million of them
(~300 MiB), for a year when no entry had been seen yet, or until whatever expiry an entry
read from a shared tier claimed (a stored_at in the future could make that forever).
"""

from __future__ import annotations

import gc
import tracemalloc

from sidecar.core.clock import ManualClock
from sidecar.core.model import Outcome
from sidecar.engine.engine import Engine
from sidecar.engine.generations import MAX_RECORDS, LocalGenerations
from sidecar.tiers.memory import MemoryTier
from tests.support.entries import entry
from tests.support.fakes import DictTier

FLOOD = 200_000
LIFETIME_MS = 3_600_000
#: What one record may cost at most (tag string, nonce, expiry, dict slot, heap item).
RECORD_BYTES = 400


async def test_200k_distinct_tag_purges_hold_bounded_memory_then_expire() -> None:
    clock = ManualClock()
    gens = LocalGenerations(clock, max_lifetime_ms=LIFETIME_MS)
    remote = DictTier("postgres", clock)
    engine = Engine([MemoryTier(1 << 22, clock), remote], clock, generations=gens)
    await engine.store(b"v1:r:kept", entry(clock, ttl_ms=600_000, tags=("kept",)))
    gc.collect()
    tracemalloc.start()
    try:
        before, _ = tracemalloc.get_traced_memory()
        for i in range(FLOOD):
            await engine.invalidate_tag(f"uri:flood.example/{i:08x}/{i * 7919:x}")
        gc.collect()
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert gens.live() <= MAX_RECORDS < FLOOD
    assert held <= MAX_RECORDS * RECORD_BYTES, f"{held >> 20} MiB held by the flood"
    clock.advance(LIFETIME_MS)  # past every entry seen (and the longest lifetime)
    assert gens.live() == 0


async def test_a_purge_record_lives_no_longer_than_the_longest_lifetime() -> None:
    clock = ManualClock()
    gens = LocalGenerations(clock, max_lifetime_ms=LIFETIME_MS)
    # an entry read from a shared tier claims to live ten years (stored by an older build)
    gens.observe(clock.now_ms() + 10 * 365 * 24 * LIFETIME_MS)
    await gens.bump("t")
    assert gens.live() == 1
    clock.advance(LIFETIME_MS)
    assert gens.live() == 0


async def test_a_purge_still_reaches_entries_stored_before_it() -> None:
    clock = ManualClock()
    gens = LocalGenerations(clock, max_lifetime_ms=LIFETIME_MS)
    remote = DictTier("postgres", clock)
    engine = Engine([MemoryTier(1 << 22, clock), remote], clock, generations=gens)
    await engine.store(b"v1:r:a", entry(clock, ttl_ms=600_000, tags=("t",)))
    for i in range(1000):
        await engine.invalidate_tag(f"other-{i}")
    await engine.invalidate_tag("t")
    await engine.tiers[0].delete_prefix(b"")  # only the shared tier has it now
    assert (await engine.lookup(b"v1:r:a")).outcome is Outcome.MISS
