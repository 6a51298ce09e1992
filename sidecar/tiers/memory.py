"""L1: the in-process memory tier, bounded in bytes.

Entries live in a dict; which ones stay is decided by a W-TinyLFU policy
(`sidecar.policy`): a small LRU window admits everything, and what falls out of it must
prove (by the frequency sketch) to be requested more often than what it would displace.
With `admission="always"` the same structure admits every candidate (segmented LRU).

Bodies longer than `INLINE_BODY_BYTES` live apart from the entries' meta, in a
content-addressed `BodyPool` (`sidecar/tiers/bodies.py`): one copy per distinct body (SHA-256 of
the raw bytes), zstd-compressed with the codec's settings when that makes it smaller,
reference-counted, freed with its last key. A hit of a compressed body decompresses it
(microseconds; `python -m bench memory`). Shorter bodies stay with their entry, raw and not
deduplicated: the pool's record and digest (~300 bytes) would cost more than they save.

Headers are held packed, one `bytes` object per entry (`sidecar/tiers/packed_headers.py`):
six typical headers take ~260 heap bytes instead of ~1,150 as a tuple of (name, value)
tuples. Every read that returns the entry (`get`, `peek`) rebuilds the tuple of pairs, new
objects each time: a memory hit through `Engine.lookup` costs ~1-1.4 us more with six to
ten headers than when the tier kept the tuple (~11 us per hit on the engine's own).

Byte accounting: the budget is bytes of RAM. Each key is charged to the policy what it makes
the process hold (`memory_cost.meta_cost`): the entry's objects (key, packed headers, tags,
vary, generations), its share of the tier's structures (its slot in the entries dict and in the
policy's ordered dict, its expiry heap items, including a stale one and the key copy it
may keep alive until the heap is compacted, and, per tag, the tag index's dict slot, record
and set membership: `sidecar.tiers.tag_index`), each dict and set counted at its worst
load (just after it grew), plus
its body's heap cost as stored (a short body: its `bytes` object; a pooled one:
`BodyPool.charge`, the possibly compressed `bytes` object and the pool's record, as if it
held the body alone). Tag strings are interned through the tag
index (one object per distinct tag, whatever the entries carrying it), yet every entry is
charged its tags as if it alone held them. `snapshot().bytes` reports the real,
deduplicated estimate: every key's meta (and short body) plus every distinct pooled body
once. Since every live
body and tag has at least one live key charged for it, real <= charged <= max_bytes
always holds: the budget is conservative, and dedup saves RAM without buying room for more
entries under the same budget. What the charge does NOT cover: what the allocator keeps
beyond the objects (fragmentation of pymalloc's arenas and glibc's heap after churn), the
interpreter and its imports, the frequency sketch (not charged per entry: it starts sized
from the budget, `SKETCH_ENTRIES_PER_MIB`, and once the entries the policy holds outgrow
that it grows with them, `sidecar.policy.admission.SKETCH_KEYS_PER_ENTRY` keys per entry:
at most ~32 bytes per entry, 4 one-byte rows of a power-of-two width), requests in flight
(their decoded messages live until answered), and exactness (dict and heap slots are
charged at their worst load; `tests/unit/sidecar/tiers/test_memory_accounting.py` pins
real <= charged under churn with tracemalloc, and the RSS of a real sidecar filled with
many tags, many small entries or mid-size bodies stays within 1.5x the budget:
`tests/integration/test_sidecar_memory_fill.py`, `python -m bench memory
--churn-seconds`). Expired entries are dropped when read and by `sweep()`; the heap of
expiry times is compacted in place once stale items outnumber live ones, so it stays
bounded even without sweeps. Prefix deletes scan every key (O(n)); tag deletes use an
index (O(entries with the tag)). Not thread-safe: use it from one event loop.

For the cost report (`sidecar.cost`): `snapshot().footprint` is what the tier holds now by
stage of saving (every key's logical bytes and raw body, the distinct raw bodies, those as
stored), kept as running sums on store and removal (no per-hit work); each store is told
to `Observer.written` and each entry the admission filter refuses to
`Observer.admission_refused`.
"""

from __future__ import annotations

import dataclasses
import heapq
from collections.abc import Callable

from sidecar.core.clock import Clock
from sidecar.core.model import CachedResponse, Footprint, TierSnapshot, Written, logical_bytes
from sidecar.core.observer import NullObserver, Observer
from sidecar.policy import (
    AlwaysAdmit,
    EvictionCause,
    FrequencySketch,
    TinyLfuAdmitter,
    WindowTinyLfuPolicy,
)
from sidecar.tiers.base import EAGER_PURGE, NODE_LOCAL, PREFIX_DELETE, TAG_DELETE, SetStatus
from sidecar.tiers.bodies import BodyPool
from sidecar.tiers.memory_cost import bytes_cost, meta_cost
from sidecar.tiers.packed_headers import pack, payload_size, unpack
from sidecar.tiers.tag_index import TagIndex

#: The frequency sketch starts sized for this many keys per MiB of budget (about 4x the
#: resident entries at ~4 KiB each; a 256 MiB tier's sketch starts at 4 rows x 262144
#: one-byte counters = 1 MiB) and grows with the entries the policy holds, to
#: `sidecar.policy.admission.SKETCH_KEYS_PER_ENTRY` keys per entry, when they are smaller.
SKETCH_ENTRIES_PER_MIB = 1024

#: Bodies up to this many bytes are kept with their entry, not in the pool.
INLINE_BODY_BYTES = 256

#: Stale items the expiry heap may hold beyond the live entries before it is compacted
#: (`memory_cost.KEY_BOOKKEEPING_BYTES` charges every key one stale item).
EXPIRY_SLACK = 64


def make_policy(max_bytes: int, admission: str) -> WindowTinyLfuPolicy[bytes]:
    """The memory tier's eviction policy for `max_bytes` with `admission` (``always`` or
    ``tinylfu``, the sketch sized from the budget, then grown with the entries): what a
    tier without a sidecar's shared sketch runs, and what ``python -m bench hit-ratio``
    replays traces against."""
    if admission == "always":
        return WindowTinyLfuPolicy(max_bytes, AlwaysAdmit())
    if admission == "tinylfu":
        capacity = max(1024, max_bytes // (1024**2) * SKETCH_ENTRIES_PER_MIB)
        return WindowTinyLfuPolicy(max_bytes, TinyLfuAdmitter(FrequencySketch(capacity)))
    raise ValueError(f"unknown admission policy {admission!r}")


class _Slot:
    """What the tier holds for one key: the entry without its body and headers, its
    headers packed (`packed_headers.pack`), the body's digest in the pool (b"" for a body
    kept here, in `body`), and the bytes charged for all but a pooled body."""

    __slots__ = ("body", "digest", "entry", "headers", "meta_size")

    def __init__(
        self,
        entry: CachedResponse,
        headers: bytes,
        digest: bytes,
        body: bytes | None,
        meta_size: int,
    ) -> None:
        self.entry = entry
        self.headers = headers
        self.digest = digest
        self.body = body
        self.meta_size = meta_size


class MemoryTier:
    """The node-local tier. See the module docstring for what it does not guarantee."""

    def __init__(
        self,
        max_bytes: int,
        clock: Clock,
        admission: str = "tinylfu",
        observer: Observer | None = None,
        policy_factory: Callable[[int, str], WindowTinyLfuPolicy[bytes]] = make_policy,
    ) -> None:
        self._max_bytes = max_bytes
        self._clock = clock
        self._observer = observer or NullObserver()
        self._policy = policy_factory(max_bytes, admission)
        #: Entries without their bodies and headers (kept packed in the slot); the bodies
        #: longer than `INLINE_BODY_BYTES` are in `_pool`.
        self._entries: dict[bytes, _Slot] = {}
        self._meta_total = 0
        #: For `snapshot().footprint`: every key's `logical_bytes` and raw body, and the
        #: raw bodies kept with their entry (neither pooled nor compressed).
        self._logical = self._body = self._inline_body = 0
        self._pool = BodyPool()
        self._tags = TagIndex()
        self._expiry: list[tuple[int, bytes]] = []
        self._hits = 0
        self._misses = 0
        self._evictions = 0
        self._rejections = 0

    @property
    def name(self) -> str:
        return "memory"

    @property
    def capabilities(self) -> frozenset[str]:
        return frozenset({PREFIX_DELETE, TAG_DELETE, EAGER_PURGE, NODE_LOCAL})

    async def open(self) -> None:
        """Nothing to connect to."""

    async def get(self, key: bytes) -> CachedResponse | None:
        return self.get_now(key)

    def get_now(self, key: bytes) -> CachedResponse | None:
        """Synchronous `get` (the memory tier never waits)."""
        self._policy.record(key)
        slot = self._entries.get(key)
        if slot is None:
            self._misses += 1
            return None
        entry = slot.entry
        if entry.expires_at_ms <= self._clock.now_ms():
            self._drop(key, EvictionCause.EXPIRED)
            self._misses += 1
            return None
        self._policy.on_hit(key)
        self._hits += 1
        return CachedResponse(  # 2x faster than dataclasses.replace, on every hit
            entry.status,
            unpack(slot.headers),
            slot.body if slot.body is not None else self._pool.read(slot.digest),
            entry.stored_at_ms,
            entry.ttl_ms,
            entry.stale_while_revalidate_ms,
            entry.stale_if_error_ms,
            entry.tags,
            entry.vary,
            entry.storage_ttl_ms,
            entry.format_version,
            entry.tag_generations,
        )

    async def peek(self, key: bytes) -> CachedResponse | None:
        """`get` without side effects (no recency or frequency update, no hit/miss count,
        no drop of an expired entry), for read-only looks (`sidecar.engine.peek`)."""
        slot = self._entries.get(key)
        if slot is None or slot.entry.expires_at_ms <= self._clock.now_ms():
            return None
        body = slot.body if slot.body is not None else self._pool.read(slot.digest)
        return dataclasses.replace(slot.entry, headers=unpack(slot.headers), body=body)

    async def set(self, key: bytes, entry: CachedResponse) -> SetStatus:
        headers = pack(entry.headers)
        meta_size = meta_cost(key, entry)
        body: bytes | None = entry.body
        raw_before, stored_before = self._pool.raw_bytes, self._pool.stored_bytes
        if len(entry.body) <= INLINE_BODY_BYTES:
            digest = b""
            meta_size += bytes_cost(len(entry.body))
            size = meta_size
        else:
            body = None
            digest, stored_len = self._pool.acquire(entry.body)
            size = meta_size + BodyPool.charge(stored_len)
        if size > self._max_bytes:
            if digest:
                self._pool.release(digest)
            if key in self._entries:
                self._drop(key, EvictionCause.REPLACED)
            self._rejections += 1
            self._observer.evicted(self.name, EvictionCause.REJECTED.value, 1)
            return SetStatus.TOO_LARGE
        old = self._entries.get(key)
        if old is not None:
            self._untally(key, old)
            self._tags.remove(key, old.entry.tags)
            if old.digest:
                self._pool.release(old.digest)
            self._meta_total -= old.meta_size
        tags = self._tags.intern(entry.tags)
        meta = dataclasses.replace(entry, headers=(), body=b"", tags=tags)
        self._entries[key] = _Slot(meta, headers, digest, body, meta_size)
        self._meta_total += meta_size
        logical, raw = logical_bytes(key, entry), len(entry.body)
        self._logical += logical
        self._body += raw
        if digest:
            new_raw = self._pool.raw_bytes - raw_before
            new_stored = self._pool.stored_bytes - stored_before
            added = meta_size + (BodyPool.charge(stored_len) if new_raw else 0)
        else:
            self._inline_body += raw
            new_raw = new_stored = raw
            added = meta_size
        self._observer.written(self.name, Written(logical, raw, new_raw, new_stored, added))
        policy = self._policy
        dropped = policy.update(key, size) if old is not None else policy.add(key, size)
        self._index(key, meta)
        status = SetStatus.STORED
        for victim, cause in dropped:
            if victim == key:
                status = SetStatus.NOT_ADMITTED
            self._forget(victim, cause)
        return status

    async def delete(self, key: bytes) -> bool:
        if key not in self._entries:
            return False
        self._drop(key, EvictionCause.EXPLICIT)
        return True

    async def delete_prefix(self, prefix: bytes) -> int:
        victims = [k for k in self._entries if k.startswith(prefix)]
        for k in victims:
            self._drop(k, EvictionCause.EXPLICIT)
        return len(victims)

    async def delete_tag(self, tag: str) -> int:
        victims = self._tags.keys(tag)
        for k in victims:
            self._drop(k, EvictionCause.EXPLICIT)
        return len(victims)

    async def sweep(self) -> int:
        return self.sweep_now()

    def sweep_now(self) -> int:
        """Drop every entry whose storage lifetime has ended."""
        now = self._clock.now_ms()
        dropped = 0
        heap = self._expiry
        while heap and heap[0][0] <= now:
            expires_at, key = heapq.heappop(heap)
            slot = self._entries.get(key)
            if slot is not None and slot.entry.expires_at_ms == expires_at:
                self._drop(key, EvictionCause.EXPIRED)
                dropped += 1
        self._compact_expiry()
        return dropped

    async def usage(self) -> None:
        """Not `MEASURABLE` (its budget is enforced as it stores, see `snapshot`): None."""
        return None

    def snapshot(self) -> TierSnapshot:
        return TierSnapshot(
            name=self.name,
            entries=len(self._entries),
            bytes=self._meta_total + self._pool.held_bytes,
            max_bytes=self._max_bytes,
            hits=self._hits,
            misses=self._misses,
            evictions=self._evictions,
            admission_rejections=self._rejections,
            footprint=Footprint(
                logical=self._logical,
                body=self._body,
                body_distinct=self._inline_body + self._pool.raw_bytes,
                body_stored=self._inline_body + self._pool.stored_bytes,
            ),
        )

    @property
    def charged_bytes(self) -> int:
        """What the policy is charged: every key as if it held its body alone (>= the real
        `snapshot().bytes`, <= `max_bytes`)."""
        return self._policy.used_bytes

    @property
    def body_pool(self) -> BodyPool:
        """The distinct pooled bodies, those longer than `INLINE_BODY_BYTES` (read-only
        use: tests and reports)."""
        return self._pool

    def tag_count(self) -> int:
        """Distinct tags in the tag index (for tests and reports)."""
        return len(self._tags)

    async def close(self) -> None:
        self._entries.clear()
        self._meta_total = 0
        self._logical = self._body = self._inline_body = 0
        self._pool.clear()
        self._tags.clear()
        self._expiry.clear()

    def __contains__(self, key: bytes) -> bool:
        return key in self._entries

    # -- bookkeeping -------------------------------------------------------------------

    def _index(self, key: bytes, entry: CachedResponse) -> None:
        heapq.heappush(self._expiry, (entry.expires_at_ms, key))
        self._compact_expiry()
        self._tags.add(key, entry.tags)

    def _compact_expiry(self) -> None:
        """Compact the expiry heap once stale items (of evicted, replaced or deleted keys)
        outnumber the live ones: the heap (and the key copies its stale items keep alive)
        stays within about twice the entries whether or not `sweep()` runs; the live items
        are kept as they are (no new objects); amortised O(1) per store."""
        heap = self._expiry
        if len(heap) > 2 * len(self._entries) + EXPIRY_SLACK:
            entries = self._entries
            live = [
                item
                for item in heap
                if (slot := entries.get(item[1])) is not None
                and slot.entry.expires_at_ms == item[0]
            ]
            heapq.heapify(live)
            self._expiry = live

    def _drop(self, key: bytes, cause: EvictionCause) -> None:
        """Remove a present key from the dict, the indexes and the policy."""
        self._policy.remove(key)
        self._forget(key, cause)

    def _forget(self, key: bytes, cause: EvictionCause) -> None:
        """Remove a key the policy already let go of."""
        slot = self._entries.pop(key, None)
        if slot is None:
            return
        logical = self._untally(key, slot)
        if slot.digest:
            self._pool.release(slot.digest)
        self._meta_total -= slot.meta_size
        self._tags.remove(key, slot.entry.tags)
        if cause in (EvictionCause.SIZE, EvictionCause.REJECTED):
            self._evictions += 1
            if cause is EvictionCause.REJECTED:
                self._rejections += 1
                self._observer.admission_refused(self.name, logical)
        self._observer.evicted(self.name, cause.value, 1)

    def _untally(self, key: bytes, slot: _Slot) -> int:
        """Take a leaving key out of the footprint (before its body is released); returns
        its `logical_bytes`."""
        raw = len(slot.body) if slot.body is not None else self._pool.raw_len(slot.digest)
        # the slot's entry has no body and no headers
        logical = logical_bytes(key, slot.entry) + raw + payload_size(slot.headers)
        self._logical -= logical
        self._body -= raw
        if slot.body is not None:
            self._inline_body -= raw
        return logical
