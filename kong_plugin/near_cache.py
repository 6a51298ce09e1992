"""The near-cache: the hottest fresh entries kept in the plugin server's own memory and
answered without a call to the sidecar, kept coherent by what the sidecar pushes
(`kong_plugin.near_feed`), as Redis client-side caching keeps its clients' copies.

Use, per request (one `NearCache` per sidecar address per process)::

    ticket = near.ticket()                      # before the sidecar lookup
    found = near.get(key, lines)                # None: ask the sidecar
    ...answer = client.lookup(key, lines); found = wire.found_from_pb(answer)
    near.offer(key, lines, found, ticket)       # after a HIT (anything else is refused)

What it holds. Only answers the sidecar gave as HIT (fresh) without a fill lease, at most
`max_entry_bytes` each, and only once the key was asked for at least `MIN_FREQUENCY` times
recently (a frequency sketch as in the sidecar's memory tier: `sidecar.policy.sketch`; a
one-hit wonder never gets in). When full, the least recently used entries go, but only if
the newcomer was asked for more often than the first of them (TinyLFU, as the sidecar's
admission). Bounded in bytes (`max_bytes`): each entry is charged its body, its key, header
and tag characters, and measured per-object overheads (`ENTRY_OVERHEAD_BYTES`,
`LINE_OVERHEAD_BYTES`, `TAG_OVERHEAD_BYTES`; CPython 3.11, 64-bit, tracemalloc). The sketch
(`sketch_bytes`) and the invalidation marks (`MAX_MARKS`) are fixed on top.

What it answers. `get` returns the entry with the age the sidecar gave plus the time since
the ticket of the lookup that fetched it, and only while (a) the feed is connected (an
entry is never answered while invalidations could have been missed: a disconnection, a
reconnection and a new sidecar process flush everything), (b) it is younger in the
near-cache than `max_age_s` (a hard cap, whatever the feed says), (c) it is still fresh by
that age (`kong_plugin.freshness.is_fresh`; a stale entry is the sidecar's to answer, with
its refresh lease).

Vary: entries are filed under (key, the request's values of the entry's Vary fields),
computed exactly as the sidecar selects a variant (`variant_of`: the lines
`kong_plugin.vary.sidecar_lines` makes, compared byte for byte as
``sidecar/engine/variants.py`` does), so a request is answered only the variant the sidecar
would have selected for it. `request_lines` must be the lines sent with the lookup. A key
has one Vary list at a time: an entry with another one drops the key's other variants.

Races. `ticket()` (taken before the sidecar lookup) numbers the invalidations applied so
far. `offer` drops an answer when any invalidation that could touch it (its key, a prefix
of its key, one of its tags, a flush, a (re)connection) was applied since its ticket, so an
answer given by the sidecar before an invalidation and offered after it never gets in.
Marks of recent invalidations are bounded (`MAX_MARKS`); forgetting one makes every older
ticket void (safe: one offer less).

Not guaranteed: that an invalidation reaches the near-cache sooner than the feed delivers
it (the sidecar sends it once its own tiers apply it; the delay is measured in the README);
that purges the sidecar only learns lazily (another node's purge read from Redis
generations without the bus) reach it before `max_age_s`; thread-safety beyond one lock
around every method (a `get` waits for an invalidation being applied); exact byte counts
(allocator overheads, the `Found` objects handed out, interned strings).
"""

from __future__ import annotations

import threading
import time
import weakref
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from kong_plugin.freshness import is_fresh
from kong_plugin.stored import Found, StoredEntry
from kong_plugin.vary import sidecar_lines
from sidecar.policy.admission import TinyLfuAdmitter
from sidecar.policy.sketch import FrequencySketch

__all__ = [
    "ENTRY_OVERHEAD_BYTES",
    "LINE_OVERHEAD_BYTES",
    "MAX_AGE_S",
    "MAX_BYTES",
    "MAX_ENTRY_BYTES",
    "MAX_MARKS",
    "MIN_FREQUENCY",
    "TAG_OVERHEAD_BYTES",
    "NearCache",
    "NearStats",
    "Ticket",
    "entry_charge",
    "live_caches",
    "variant_of",
]

#: Defaults (see the README's near-cache section for why).
MAX_BYTES = 16 * 1024 * 1024
MAX_ENTRY_BYTES = 256 * 1024
MAX_AGE_S = 1.0
#: Lookups of a key (near-cache misses and hits) before an answer for it is admitted.
MIN_FREQUENCY = 2
#: Invalidation marks kept for `offer`'s race check (keys, tags and prefixes together).
MAX_MARKS = 4096
#: Measured (tracemalloc, CPython 3.11, 64-bit) heap bytes of one entry beyond the
#: characters counted: the entry, `Headers` and timing objects, the item, the LRU slot and
#: the per-key record, the body's and key's object headers; rounded up.
ENTRY_OVERHEAD_BYTES = 1000
#: ... of one header line beyond its name and value characters (value str, tuple slot,
#: dict slot of a new name); rounded up.
LINE_OVERHEAD_BYTES = 210
#: ... of one tag beyond its characters (str, tuple slot, tag index set and dict slot).
TAG_OVERHEAD_BYTES = 380
_ABSENT = b"\x00"
#: Marks: what an invalidation named (the kind is part of the mark's key).
_KEY, _TAG, _PREFIX = 0, 1, 2

Variant = tuple[bytes, ...]
HeaderLines = Sequence[tuple[bytes, bytes]]


@dataclass(frozen=True, slots=True)
class Ticket:
    """Taken before a sidecar lookup (`NearCache.ticket`): how many invalidations had been
    applied (`seq`) and when (`at`, the near-cache's clock: the answer is dated from it)."""

    seq: int
    at: float


@dataclass(frozen=True, slots=True)
class NearStats:
    """Counters since start (metrics): `hits`/`misses` of `get` (a miss includes entries
    found too old, `expired`); `admissions`/`rejections` of offers (refused by the sketch,
    by size or not fresh), `races` (offers dropped because an invalidation came after their
    ticket, or while disconnected); `evictions` (room made), `invalidations` (entries
    dropped by invalidations and flushes), `flushes`; `entries` and `bytes` held now."""

    hits: int
    misses: int
    expired: int
    admissions: int
    rejections: int
    races: int
    evictions: int
    invalidations: int
    flushes: int
    entries: int
    bytes: int
    connected: bool


def variant_of(vary: Sequence[str], request_lines: HeaderLines) -> Variant:
    """The request's value of each of `vary` (lower-case names), as the sidecar selects a
    variant by them: over the lines `sidecar_lines` sends, each line's whitespace runs
    (ASCII, bytes) collapsed to one space, lines of one name joined with ``", "``, an
    absent field distinct from an empty one."""
    wanted = {name.encode("ascii", "replace"): i for i, name in enumerate(vary)}
    parts: list[list[bytes]] = [[] for _ in vary]
    for name, value in sidecar_lines(list(request_lines)):
        i = wanted.get(name.lower())
        if i is not None:
            parts[i].append(b" ".join(value.split()))
    return tuple(b", ".join(p) if p else _ABSENT for p in parts)


def entry_charge(key: str, entry: StoredEntry) -> int:
    """Bytes `entry` under `key` is charged (see the module doc)."""
    lines = 0
    size = len(entry.body) + len(key) + ENTRY_OVERHEAD_BYTES
    for name, value in entry.headers.lines():
        lines += 1
        size += len(name) + len(value)
    size += lines * LINE_OVERHEAD_BYTES
    size += sum(len(t) + TAG_OVERHEAD_BYTES for t in entry.tags)
    return size + sum(len(v) for v in entry.vary)


class _Item:
    __slots__ = ("age_s", "charge", "entry", "fetched_at", "key", "variant")

    def __init__(
        self,
        key: str,
        variant: Variant,
        entry: StoredEntry,
        age_s: float,
        fetched_at: float,
        charge: int,
    ) -> None:
        self.key = key
        self.variant = variant
        self.entry = entry
        self.age_s = age_s
        self.fetched_at = fetched_at
        self.charge = charge


def live_caches() -> list[NearCache]:
    """The near-caches of this process still referenced somewhere (for the metrics,
    `kong_plugin.plugin_metrics`, which read their `NearCache.stats`)."""
    return list(_live)


class NearCache:
    """See the module doc. Thread-safe (one lock)."""

    def __init__(
        self,
        max_bytes: int = MAX_BYTES,
        max_entry_bytes: int = MAX_ENTRY_BYTES,
        max_age_s: float = MAX_AGE_S,
        clock: Callable[[], float] = time.monotonic,
        *,
        sketch_capacity: int | None = None,
        min_frequency: int = MIN_FREQUENCY,
    ) -> None:
        """`sketch_capacity`: distinct keys the frequency sketch is sized for (default:
        one per KiB of `max_bytes`, at least 1024; 4 bytes each)."""
        if max_bytes <= 0 or max_entry_bytes <= 0 or max_entry_bytes > max_bytes:
            raise ValueError("need 0 < max_entry_bytes <= max_bytes")
        if not max_age_s > 0:
            raise ValueError("max_age_s must be positive")
        self.max_bytes = max_bytes
        self.max_entry_bytes = max_entry_bytes
        self.max_age_s = max_age_s
        self.min_frequency = min_frequency
        self._clock = clock
        self._lock = threading.Lock()
        capacity = sketch_capacity if sketch_capacity is not None else max(1024, max_bytes >> 10)
        self._admitter = TinyLfuAdmitter(FrequencySketch(capacity))
        self._sketch = self._admitter.sketch
        self._items: OrderedDict[tuple[str, Variant], _Item] = OrderedDict()  # LRU first
        self._vary: dict[str, tuple[tuple[str, ...], set[Variant]]] = {}
        self._by_tag: dict[str, set[tuple[str, Variant]]] = {}
        self._bytes = 0
        self._connected = False
        self._seq = 0  # invalidations applied (and (re)connections, flushes)
        self._floor = 0  # tickets below it are void (a flush, a forgotten mark)
        self._marks: OrderedDict[tuple[int, str], int] = OrderedDict()
        self._prefix_marks: dict[str, int] = {}
        self._hits = self._misses = self._expired = 0
        self._admissions = self._rejections = self._races = 0
        self._evictions = self._invalidations = self._flushes = 0
        _live.add(self)

    @property
    def sketch_bytes(self) -> int:
        return self._sketch.memory_bytes

    @property
    def connected(self) -> bool:
        return self._connected

    # -- reads ---------------------------------------------------------------------------

    def ticket(self) -> Ticket:
        """Take before the sidecar lookup whose answer may be offered."""
        return Ticket(self._seq, self._clock())

    def get(self, key: str, request_lines: HeaderLines) -> Found | None:
        """The fresh entry held for `key` and the variant `request_lines` select (with
        `fill_lease` False and its age now), or None. Counts the key's lookup either way."""
        with self._lock:
            self._sketch.increment(key)
            found = self._get(key, request_lines) if self._connected else None
            if found is None:
                self._misses += 1
            else:
                self._hits += 1
            return found

    def _get(self, key: str, request_lines: HeaderLines) -> Found | None:
        known = self._vary.get(key)
        if known is None:
            return None
        vary = known[0]
        slot = (key, variant_of(vary, request_lines) if vary else ())
        item = self._items.get(slot)
        if item is None:
            return None
        elapsed = self._clock() - item.fetched_at
        age = item.age_s + max(0.0, elapsed)
        if elapsed > self.max_age_s or not is_fresh(item.entry.timing, age):
            self._expired += 1
            self._drop(item)
            return None
        self._items.move_to_end(slot)
        return Found(item.entry, age, False)

    # -- offers --------------------------------------------------------------------------

    def offer(self, key: str, request_lines: HeaderLines, found: Found, ticket: Ticket) -> bool:
        """Keep the sidecar's answer `found` for `key` (looked up with `request_lines` after
        `ticket`) if it is a fresh hit without a fill lease, small enough, asked for often
        enough and not overtaken by an invalidation. Whether it was kept."""
        entry = found.entry
        if entry is None or found.fill_lease:
            return False
        charge = entry_charge(key, entry)
        with self._lock:
            if not self._connected or self._overtaken(key, entry, ticket):
                self._races += 1
                return False
            now = self._clock()
            if (
                charge > self.max_entry_bytes
                or now - ticket.at > self.max_age_s
                or not is_fresh(entry.timing, found.age_s + max(0.0, now - ticket.at))
                or self._sketch.frequency(key) < self.min_frequency
            ):
                self._rejections += 1
                return False
            slot = (key, variant_of(entry.vary, request_lines) if entry.vary else ())
            known = self._vary.get(key)
            if known is not None and known[0] != entry.vary:
                self._drop_key(key)  # another Vary list: the other variants are gone
            elif (old := self._items.get(slot)) is not None:
                self._drop(old)
            if not self._make_room(key, charge):
                self._rejections += 1
                return False
            self._insert(_Item(key, slot[1], entry, found.age_s, ticket.at, charge))
            self._admissions += 1
            return True

    def _overtaken(self, key: str, entry: StoredEntry, ticket: Ticket) -> bool:
        """An invalidation touching `key` (or everything) was applied since `ticket`."""
        seq = ticket.seq
        if seq == self._seq:
            return False
        if seq < self._floor:
            return True
        marks = self._marks
        if marks.get((_KEY, key), 0) > seq:
            return True
        if any(marks.get((_TAG, tag), 0) > seq for tag in entry.tags):
            return True
        return any(at > seq and key.startswith(prefix) for prefix, at in self._prefix_marks.items())

    def _make_room(self, key: str, charge: int) -> bool:
        """Evict least recently used entries until `charge` fits, if `key` is more popular
        than the first of them."""
        if self._bytes + charge <= self.max_bytes:
            return True
        first = next(iter(self._items.values()))
        if not self._admitter.admit(key, first.key):
            return False
        while self._bytes + charge > self.max_bytes:
            self._drop(next(iter(self._items.values())))
            self._evictions += 1
        return True

    def _insert(self, item: _Item) -> None:
        slot = (item.key, item.variant)
        self._items[slot] = item
        self._bytes += item.charge
        known = self._vary.get(item.key)
        if known is None:
            self._vary[item.key] = (item.entry.vary, {item.variant})
        else:
            known[1].add(item.variant)
        for tag in item.entry.tags:
            self._by_tag.setdefault(tag, set()).add(slot)

    def _drop(self, item: _Item) -> None:
        slot = (item.key, item.variant)
        if self._items.pop(slot, None) is None:
            return
        self._bytes -= item.charge
        known = self._vary.get(item.key)
        if known is not None:
            known[1].discard(item.variant)
            if not known[1]:
                del self._vary[item.key]
        for tag in item.entry.tags:
            slots = self._by_tag.get(tag)
            if slots is not None:
                slots.discard(slot)
                if not slots:
                    del self._by_tag[tag]

    def _drop_key(self, key: str) -> int:
        known = self._vary.get(key)
        if known is None:
            return 0
        dropped = 0
        for variant in tuple(known[1]):
            item = self._items.get((key, variant))
            if item is not None:
                self._drop(item)
                dropped += 1
        self._vary.pop(key, None)
        return dropped

    # -- invalidations -------------------------------------------------------------------

    def invalidate(
        self,
        keys: Iterable[str] = (),
        prefixes: Iterable[str] = (),
        tags: Iterable[str] = (),
    ) -> int:
        """Drop the entries of `keys` (every variant), of keys starting with one of
        `prefixes`, and carrying one of `tags`; offers ticketed before are refused for
        them. Returns the entries dropped."""
        with self._lock:
            self._seq += 1
            seq = self._seq
            dropped = 0
            for key in keys:
                self._mark((_KEY, key), seq)
                dropped += self._drop_key(key)
            for tag in tags:
                self._mark((_TAG, tag), seq)
                for slot in tuple(self._by_tag.get(tag, ())):
                    item = self._items.get(slot)
                    if item is not None:
                        self._drop(item)
                        dropped += 1
            for prefix in prefixes:
                self._mark((_PREFIX, prefix), seq)
                for item in [i for i in self._items.values() if i.key.startswith(prefix)]:
                    self._drop(item)
                    dropped += 1
            self._invalidations += dropped
            return dropped

    def invalidate_key(self, key: str) -> int:
        return self.invalidate(keys=(key,))

    def invalidate_all(self) -> int:
        """Drop everything; every ticket taken before is void."""
        with self._lock:
            return self._flush()

    def set_connected(self, connected: bool) -> None:
        """The feed is (dis)connected: either way everything is dropped and every ticket
        taken before is void (events may have been missed); `get` answers nothing while
        disconnected."""
        with self._lock:
            self._connected = connected
            self._flush()

    def _flush(self) -> int:
        self._seq += 1
        self._floor = self._seq
        self._marks.clear()
        self._prefix_marks.clear()
        dropped = len(self._items)
        self._items.clear()
        self._vary.clear()
        self._by_tag.clear()
        self._bytes = 0
        self._invalidations += dropped
        self._flushes += 1
        return dropped

    def _mark(self, what: tuple[int, str], seq: int) -> None:
        marks = self._marks
        marks.pop(what, None)
        marks[what] = seq
        if what[0] == _PREFIX:
            self._prefix_marks[what[1]] = seq
        while len(marks) > MAX_MARKS:
            (kind, name), at = marks.popitem(last=False)
            if kind == _PREFIX:
                self._prefix_marks.pop(name, None)
            self._floor = max(self._floor, at)

    # -- metrics -------------------------------------------------------------------------

    def stats(self) -> NearStats:
        with self._lock:
            return NearStats(
                hits=self._hits,
                misses=self._misses,
                expired=self._expired,
                admissions=self._admissions,
                rejections=self._rejections,
                races=self._races,
                evictions=self._evictions,
                invalidations=self._invalidations,
                flushes=self._flushes,
                entries=len(self._items),
                bytes=self._bytes,
                connected=self._connected,
            )


#: Every near-cache of this process (`live_caches`); one that nothing references leaves it.
_live: weakref.WeakSet[NearCache] = weakref.WeakSet()
