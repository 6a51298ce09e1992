"""Where the memory tier's bytes go, per cached response, for `python -m bench memory`.

The corpus is stored into a `MemoryTier` (large budget, default admission) the way the
sidecar receives it: each entry serialised to a ``strata.v1.Entry`` and parsed back, so
every entry has header objects of its own, as gRPC-decoded entries do. The Python heap's
growth is measured with tracemalloc, and the tier's structures are walked object by object
(``sys.getsizeof`` of each object reachable from them, rounded as the allocator hands it out,
`memory_cost.allocated`), one component at a time in the order of `COMPONENTS`; an object
shared by several components (a key held by the entries dict, the policy and the expiry
heap) is counted once, in the first. The frequency sketch (sized at start-up, grown with
the entries the policy holds) is reported apart, not per response.

This reads the tier's private fields (a diagnostic of its internals): a renamed field fails
loudly (AttributeError), it never silently reports less. Not guaranteed: exactness
(``getsizeof`` and the rounding model CPython's allocators, not the allocator itself: what
glibc keeps around a freed or split chunk and pymalloc's partly used pools are not objects,
and only RSS sees them, `bench.memory_paid`).
"""

from __future__ import annotations

import asyncio
import gc
import sys
import tracemalloc
from collections.abc import Iterable, Sequence
from typing import Any

from bench.memory_corpus import Item
from sidecar.core.clock import SystemClock
from sidecar.policy import FrequencySketch
from sidecar.tiers.memory import MemoryTier
from sidecar.tiers.memory_cost import allocated

#: The tier's budget: far above any corpus (no eviction).
BUDGET = 1 << 30

#: Components in the order they are walked (an object shared is counted in the first).
COMPONENTS = (
    "bodies",  # the pooled (compressed) bodies' bytes objects, short inline bodies
    "keys",  # the cache keys' bytes objects
    "headers",  # every entry's packed headers (one bytes object, `packed_headers`)
    "entry_objects",  # the body-less CachedResponse of each key and its other fields
    "slots",  # the tier's per-key record, the digest it holds, its charged size
    "entries_dict",  # the tier's dict table
    "body_pool",  # the pool's dict table, records, digests and lengths
    "policy",  # W-TinyLFU's ordered dicts (nodes, sizes); the sketch apart
    "expiry_heap",  # the heap list, its (expires_at, key) tuples and ints
    "tag_index",  # the tag index (empty without tags)
)


def deep_size(
    roots: Iterable[object],
    seen: set[int],
    skip: tuple[type, ...] = (),
    skipped: list[object] | None = None,
) -> int:
    """Allocated bytes of every object reachable from `roots` not already in `seen` (which
    it extends); classes and modules excluded, instances of `skip` too (not entered, but
    appended to `skipped` when given)."""
    total = 0
    stack = list(roots)
    while stack:
        obj = stack.pop()
        if id(obj) in seen or isinstance(obj, type | type(sys)):
            continue
        if skip and isinstance(obj, skip):
            if skipped is not None:
                seen.add(id(obj))
                skipped.append(obj)
            continue
        seen.add(id(obj))
        total += allocated(sys.getsizeof(obj))
        stack.extend(gc.get_referents(obj))
    return total


def _as_received(corpus: Sequence[Item]) -> list[tuple[bytes, bytes]]:
    """(key, serialised Entry) per item: what the sidecar receives."""
    from strata.v1 import cache_pb2 as pb  # noqa: PLC0415

    from sidecar.rpc.convert import entry_to_proto  # noqa: PLC0415

    out = []
    for item in corpus:
        entry = pb.Entry()
        entry_to_proto(item.entry, entry)
        out.append((item.key, entry.SerializeToString()))
    return out


async def _store(tier: MemoryTier, wire: list[tuple[bytes, bytes]]) -> None:
    from strata.v1 import cache_pb2 as pb  # noqa: PLC0415

    from sidecar.rpc.convert import entry_from_proto  # noqa: PLC0415

    for key, raw in wire:
        entry = pb.Entry()
        entry.ParseFromString(raw)
        await tier.set(bytes(bytearray(key)), entry_from_proto(entry))


def walk(tier: MemoryTier) -> dict[str, int]:
    """Allocated bytes of each of `COMPONENTS` in `tier`, plus ``sketch``."""
    slots = list(tier._entries.values())
    pool = tier.body_pool._bodies
    seen: set[int] = {id(tier), id(tier.__dict__), id(slots)}
    inline = [s.body for s in slots if s.body is not None]
    sketches: list[object] = []
    return {
        "bodies": deep_size([r.data for r in pool.values()] + inline, seen),
        "keys": deep_size(tier._entries.keys(), seen),
        "headers": deep_size((s.headers for s in slots), seen),
        "entry_objects": deep_size((s.entry for s in slots), seen),
        "slots": deep_size(slots, seen),
        "entries_dict": deep_size([tier._entries], seen),
        "body_pool": deep_size([tier.body_pool], seen),
        "policy": deep_size([tier._policy], seen, (FrequencySketch,), sketches),
        "expiry_heap": deep_size([tier._expiry], seen),
        "tag_index": deep_size([tier._tags], seen),
        "sketch": deep_size(sketches, set()),
    }


def breakdown(corpus: Sequence[Item]) -> dict[str, Any]:
    """Store `corpus` into a fresh tier (see the module docstring); the heap per response,
    by component, against what the tier counts and charges."""
    wire = _as_received(corpus)
    tier = MemoryTier(BUDGET, SystemClock())
    gc.collect()
    tracemalloc.start()
    try:
        before, _ = tracemalloc.get_traced_memory()
        asyncio.run(_store(tier, wire))
        gc.collect()
        after, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    parts = walk(tier)
    n = len(corpus)
    if tier.snapshot().entries != n:
        raise RuntimeError(f"the tier holds {tier.snapshot().entries} of {n} entries")
    per = {name: round(parts[name] / n, 1) for name in COMPONENTS}
    return {
        "responses": n,
        "heap_bytes_per_response": round((after - before) / n, 1),
        "walked_bytes_per_response": round(sum(parts[c] for c in COMPONENTS) / n, 1),
        "counted_bytes_per_response": round(tier.snapshot().bytes / n, 1),
        "charged_bytes_per_response": round(tier.charged_bytes / n, 1),
        "components_bytes_per_response": per,
        "sketch_bytes": parts["sketch"],
    }
