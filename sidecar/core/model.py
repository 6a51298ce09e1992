"""Plain value types the engine and the tiers share. No transport types here.

`CachedResponse.size_bytes` is an estimate of the memory an entry holds in this process
(payload plus a fixed overhead); it is what byte budgets are charged, not an exact
measurement of the Python heap.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

#: The entry format this build writes and understands. Anything else is a miss.
FORMAT_VERSION = 1

#: Flat per-entry overhead charged against byte budgets (object headers, dict slots, policy
#: bookkeeping). Measured roughly with tracemalloc on CPython 3.11; an estimate.
ENTRY_OVERHEAD_BYTES = 256
HEADER_OVERHEAD_BYTES = 80

Headers = tuple[tuple[bytes, bytes], ...]


@dataclass(frozen=True, slots=True)
class CachedResponse:
    """One stored HTTP response with the facts needed to judge its freshness."""

    status: int
    headers: Headers
    body: bytes
    stored_at_ms: int
    ttl_ms: int
    stale_while_revalidate_ms: int = 0
    stale_if_error_ms: int = 0
    tags: tuple[str, ...] = ()
    vary: tuple[str, ...] = ()
    storage_ttl_ms: int = 0
    format_version: int = FORMAT_VERSION
    #: The purge generation of each of `tags` when the entry was stored (stamped by the
    #: engine, `sidecar.engine.generations`), followed by that of the key's implicit route tag
    #: when the key has one; empty for an entry stored without generations.
    tag_generations: tuple[int, ...] = ()

    @property
    def fresh_until_ms(self) -> int:
        """The instant the entry stops being fresh."""
        return self.stored_at_ms + self.ttl_ms

    @property
    def expires_at_ms(self) -> int:
        """The instant after which no tier needs to keep the entry."""
        if self.storage_ttl_ms > 0:
            return self.stored_at_ms + self.storage_ttl_ms
        return (
            self.stored_at_ms
            + self.ttl_ms
            + max(self.stale_while_revalidate_ms, self.stale_if_error_ms)
        )

    def size_bytes(self, key_len: int) -> int:
        """Estimated bytes this entry costs in the memory tier under a key of `key_len`."""
        header_bytes = sum(len(n) + len(v) + HEADER_OVERHEAD_BYTES for n, v in self.headers)
        tag_bytes = sum(len(t) + 50 for t in self.tags) + sum(len(v) + 50 for v in self.vary)
        return ENTRY_OVERHEAD_BYTES + key_len + len(self.body) + header_bytes + tag_bytes


class Outcome(enum.Enum):
    """What a lookup found."""

    HIT = "hit"
    STALE = "stale"
    MISS = "miss"


@dataclass(frozen=True, slots=True)
class LookupResult:
    """The answer to a lookup. A miss is a value: `entry` is None and `outcome` MISS."""

    outcome: Outcome
    entry: CachedResponse | None = None
    age_ms: int = 0
    tier: str = ""
    fill_lease: bool = False
    coalesced: bool = False
    now_ms: int = 0


@dataclass(frozen=True, slots=True)
class Peeked:
    """What a lookup of a key would find, seen without side effects (`Engine.peek`): the
    tier it was read from, the entry as a lookup would answer it (a soft-purged entry with
    its freshness cut at the purge), and its `state`: ``"fresh"``, ``"stale"`` (past its
    freshness lifetime, inside a stale window) or ``"soft_purged"`` (stale because of a
    soft purge, inside a stale window that started at the purge). `stored_ttl_ms`: the
    freshness lifetime the entry was stored with when a soft purge cut the one in `entry`;
    None when `entry` is as stored."""

    tier: str
    entry: CachedResponse
    state: str
    stored_ttl_ms: int | None = None


class StoreStatus(enum.Enum):
    """What became of a store."""

    STORED = "stored"
    NOT_ADMITTED = "not_admitted"
    TOO_LARGE = "too_large"
    EXPIRED = "expired"


@dataclass(frozen=True, slots=True)
class StoreResult:
    status: StoreStatus
    waiters_released: int = 0


def logical_bytes(key: bytes, entry: CachedResponse) -> int:
    """What one copy of `entry` under `key` takes stored the naive way (as Kong's
    proxy-cache keeps it): key, header names and values and the raw body, uncompressed and
    not shared with other keys. Its serialisation and bookkeeping are not counted (an
    underestimate of the naive copy, never an overestimate)."""
    return len(key) + len(entry.body) + sum(len(n) + len(v) for n, v in entry.headers)


@dataclass(frozen=True, slots=True)
class Written:
    """The bytes one write put into a tier, by stage of saving (`Observer.written`):
    `logical` (`logical_bytes`), `body` (the raw body), `body_new` (the raw body if the
    tier did not hold it already, else 0: what deduplication leaves), `body_stored` (what
    that new body takes as stored: after compression) and `stored` (everything the write
    added: key, encoded value and a new body; the memory tier: the bytes charged)."""

    logical: int
    body: int
    body_new: int
    body_stored: int
    stored: int


@dataclass(frozen=True, slots=True)
class Footprint:
    """What a tier that can know it exactly (the memory tier) holds now, by stage of
    saving: `logical` (every key's `logical_bytes`), `body` (every key's raw body),
    `body_distinct` (each distinct raw body once) and `body_stored` (the distinct bodies
    as stored, compressed where that was smaller)."""

    logical: int
    body: int
    body_distinct: int
    body_stored: int


@dataclass(frozen=True, slots=True)
class TierSnapshot:
    """Occupancy and counters of one tier at one instant. `footprint`: None when the tier
    cannot know what it holds without I/O (the shared tiers)."""

    name: str
    entries: int
    bytes: int
    max_bytes: int
    hits: int = 0
    misses: int = 0
    evictions: int = 0
    admission_rejections: int = 0
    footprint: Footprint | None = None


@dataclass(slots=True)
class EngineCounters:
    """Monotonic counters kept by the engine (mirrored into Prometheus by the observer)."""

    lookups: int = 0
    hits: int = 0
    stale_hits: int = 0
    misses: int = 0
    stores: int = 0
    invalidations: int = 0
    coalesced: int = 0
    rejected_requests: int = 0
    rejected_by_reason: dict[str, int] = field(default_factory=dict)
