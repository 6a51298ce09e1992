"""Cost-aware placement: which tiers an entry is written to (pure, no I/O).

DESIGN.md: small hot entries in Redis, large bodies in Memcached, the cold long tail in
PostgreSQL. `PlacementPolicy.tiers_for(size, frequency, available)` picks, by tier name:

* ``memory`` always: the memory tier's own W-TinyLFU admission decides what it keeps.
* a shared RAM tier (``redis`` / ``memcached``) only when the key is hot —
  ``frequency >= shared_min_hits`` (the engine's frequency sketch of lookups on this
  node), so one-hit wonders stay out of shared RAM — and then by size:

  - Redis and Memcached both configured: ``size <= redis_max_entry_bytes`` goes to
    Redis; ``redis_max_entry_bytes < size <= memcached_max_entry_bytes`` to Memcached;
  - only one of them configured: it takes every hot entry up to
    ``memcached_max_entry_bytes``, the cap on any entry in shared RAM (Redis alone: up to
    the larger of the two limits);
  - larger entries never go to shared RAM.

* ``postgres`` every entry when ``durable`` (survives restarts and RAM-tier outages: the
  long tail lives there); with ``durable`` off, nothing goes there.
* A shared tier (``redis``, ``memcached``, ``postgres``) named in ``over_budget`` (its
  sampled usage is at or above its byte budget, see `sidecar.engine.budgets`) is treated as not
  configured: a hot entry for Redis then goes to Memcached when it fits there (and the
  other way round, Redis alone taking entries up to the larger limit), else to memory and
  PostgreSQL only; with PostgreSQL over budget, nothing new goes there.
* A tier of any other name (a test double, a future tier) is not the policy's business:
  it is always picked (write-through, today's behaviour).

Entry size is `entry_size`: the raw body plus header names and values, a cheap upper
bound of the stored size (the codec stores the body zstd-compressed only when that is
smaller, and this is computed without compressing a second time). So a compressible body
a little above ``redis_max_entry_bytes`` raw goes to Memcached although its compressed
copy would fit Redis; that is the price of not compressing twice per store.

Not guaranteed: that a picked tier keeps the entry (tiers evict, the memory tier may not
admit it, Memcached refuses items over its own item limit); frequencies are per node (a
key hot across the cluster but cold on this node is treated as cold here).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sidecar.core.model import CachedResponse

__all__ = [
    "DURABLE",
    "MEMCACHED",
    "MEMORY",
    "REDIS",
    "PlacementPolicy",
    "entry_size",
]

MEMORY = "memory"
REDIS = "redis"
MEMCACHED = "memcached"
DURABLE = "postgres"
_KNOWN = frozenset({MEMORY, REDIS, MEMCACHED, DURABLE})
#: The tiers a byte budget (`over_budget`) can exclude: never memory (bounded on its own).
_SHARED = frozenset({REDIS, MEMCACHED, DURABLE})
#: The engine's frequency sketch saturates at 15: a higher threshold would never be met.
MAX_SHARED_MIN_HITS = 15


def entry_size(entry: CachedResponse) -> int:
    """The size estimate placement uses: raw body plus header names and values (an upper
    bound of the compressed body's size; no second compression)."""
    return len(entry.body) + sum(len(name) + len(value) for name, value in entry.headers)


@dataclass(frozen=True, slots=True)
class PlacementPolicy:
    """Which tiers an entry of a given size and lookup frequency is written to."""

    shared_min_hits: int = 2
    redis_max_entry_bytes: int = 65536
    memcached_max_entry_bytes: int = 1048576 - 1024
    durable: bool = True

    def __post_init__(self) -> None:
        if not 0 <= self.shared_min_hits <= MAX_SHARED_MIN_HITS:
            raise ValueError(
                f"shared_min_hits must be in [0, {MAX_SHARED_MIN_HITS}], got {self.shared_min_hits}"
            )
        if self.redis_max_entry_bytes < 0 or self.memcached_max_entry_bytes < 0:
            raise ValueError("redis/memcached_max_entry_bytes must not be negative")

    def tiers_for(
        self,
        entry_size: int,
        frequency: int,
        available: Sequence[str],
        over_budget: frozenset[str] = frozenset(),
    ) -> frozenset[str]:
        """The names, among `available`, of the tiers an entry of `entry_size` bytes whose
        key was looked up about `frequency` times is written to (see the module doc).
        Shared tiers named in `over_budget` are treated as not available."""
        names = set(available)
        if over_budget:
            names -= over_budget & _SHARED
        picked = {name for name in names if name not in _KNOWN}
        if MEMORY in names:
            picked.add(MEMORY)
        if self.durable and DURABLE in names:
            picked.add(DURABLE)
        shared = self._shared_tier(entry_size, names) if frequency >= self.shared_min_hits else None
        if shared is not None:
            picked.add(shared)
        return frozenset(picked)

    def _shared_tier(self, size: int, names: set[str]) -> str | None:
        has_redis, has_memcached = REDIS in names, MEMCACHED in names
        if has_redis and has_memcached:
            if size <= self.redis_max_entry_bytes:
                return REDIS
            return MEMCACHED if size <= self.memcached_max_entry_bytes else None
        cap = max(self.redis_max_entry_bytes, self.memcached_max_entry_bytes)
        if has_redis and size <= cap:
            return REDIS
        if has_memcached and size <= self.memcached_max_entry_bytes:
            return MEMCACHED
        return None
