"""The one protocol every storage tier implements.

A tier stores `CachedResponse` values under byte-string keys. It knows nothing of the
engine, of transport or of HTTP semantics: it does not judge freshness (beyond dropping
entries past `expires_at_ms`), does not coalesce and does not know about variants.

What a tier does NOT guarantee: that a stored entry is still there on the next read (any
tier may evict), that invalidations are atomic across keys, or that counts returned by
deletions are exact for remote tiers. A tier signals "cannot answer" by raising
`TierError`; a miss is `None`.
"""

from __future__ import annotations

import enum
from typing import Protocol

from sidecar.core.errors import TierError
from sidecar.core.model import CachedResponse, TierSnapshot


class TierSkippedError(TierError):
    """The call was not made at all: no I/O happened, the tier did not fail it.

    `reason` is a short stable label (a metric label value), e.g. ``circuit_open`` (the
    tier's circuit breaker is open, or a probe is already in flight) or ``deadline``
    (nothing was left of the caller's deadline when the call would have started). The
    engine counts it as ``observer.tier_skipped(tier, reason)``, never as a tier error."""

    def __init__(self, tier: str, reason: str) -> None:
        super().__init__(f"{tier}: {reason.replace('_', ' ')}")
        self.tier = tier
        self.reason = reason


class SetStatus(enum.Enum):
    STORED = "stored"
    NOT_ADMITTED = "not_admitted"
    TOO_LARGE = "too_large"


#: Optional abilities a tier declares in `capabilities`.
PREFIX_DELETE = "prefix_delete"
TAG_DELETE = "tag_delete"
#: Prefix and tag deletes here are cheap and node-local (the memory tier): the engine runs
#: them at purge time to free memory at once. Other tiers are purged lazily through tag
#: generations (`sidecar.engine.generations`), never walked by `invalidate_tag`.
EAGER_PURGE = "eager_purge"
#: Where a tier keeps entries, which is what placement decides by (never by tier name):
#: this process's RAM (the memory tier; every entry goes there, admission permitting) ...
NODE_LOCAL = "node_local"
#: ... RAM that every node reads (Redis, Memcached; an entry hot enough goes to one of them,
#: chosen by its size) ...
SHARED_RAM = "shared_ram"
#: ... or disk that survives restarts (PostgreSQL; every entry, when durable placement is on).
DURABLE = "durable"
#: `usage()` measures the bytes the tier's server holds (for byte budgets,
#: `sidecar.engine.budgets`); a tier without it answers None there, without I/O.
MEASURABLE = "measurable"


class Tier(Protocol):
    """A place entries can be kept. All methods may raise `TierError`."""

    @property
    def name(self) -> str:
        """Short stable name, used as a metric label ('memory', 'redis', ...)."""
        ...

    @property
    def capabilities(self) -> frozenset[str]:
        """Which optional operations really work here (`PREFIX_DELETE`, `TAG_DELETE`,
        `MEASURABLE`); a tier without one answers 0 to that delete (None to `usage`)
        instead of dropping (measuring) anything. A tier declaring `EAGER_PURGE` is purged
        eagerly by the engine's tag and route purges. Every tier also declares where it
        keeps entries: exactly one of `NODE_LOCAL`, `SHARED_RAM`, `DURABLE`."""
        ...

    async def open(self) -> None:
        """Connect (and for PostgreSQL create or migrate the schema). Idempotent. A server
        that cannot be reached raises `TierError`; the tier may still be used and will
        retry on later calls."""
        ...

    async def get(self, key: bytes) -> CachedResponse | None:
        """The entry under `key`, or None. Expired entries are never returned."""
        ...

    async def set(self, key: bytes, entry: CachedResponse) -> SetStatus:
        """Store or replace; the tier may decline (admission, size) without raising."""
        ...

    async def delete(self, key: bytes) -> bool:
        """Drop one key; True if something was dropped."""
        ...

    async def delete_prefix(self, prefix: bytes) -> int:
        """Drop every key starting with `prefix`; the number dropped."""
        ...

    async def delete_tag(self, tag: str) -> int:
        """Drop every entry carrying `tag`; the number dropped."""
        ...

    async def sweep(self) -> int:
        """Drop expired entries now; the number dropped."""
        ...

    async def usage(self) -> int | None:
        """Bytes the tier's server holds now, as its server counts them (one cheap round
        trip; a tier documents what it measures), or None without I/O if the tier does not
        declare `MEASURABLE`."""
        ...

    def snapshot(self) -> TierSnapshot:
        """Occupancy and counters, without I/O (remote tiers report what they know)."""
        ...

    async def close(self) -> None:
        """Release connections; the tier is not used afterwards."""
        ...


class WrappedTier:
    """Base of a tier that wraps another (circuit breaker, purge replay): its name and
    capabilities are the inner tier's; subclasses decide what each call does (`usage`
    included: a wrapper answers None without asking an inner tier that is not
    `MEASURABLE`)."""

    def __init__(self, inner: Tier) -> None:
        self._inner = inner

    @property
    def name(self) -> str:
        return self._inner.name

    @property
    def capabilities(self) -> frozenset[str]:
        return self._inner.capabilities

    @property
    def server_limit_bytes(self) -> int | None:
        """The inner tier's server memory limit, when it reports one (Redis, Memcached)."""
        limit = getattr(self._inner, "server_limit_bytes", None)
        return limit if isinstance(limit, int) else None
