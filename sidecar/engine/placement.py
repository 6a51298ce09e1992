"""Cost-aware placement: which tiers an entry is written to (pure, no I/O).

DESIGN.md: small hot entries in Redis, large bodies in Memcached, the cold long tail in
PostgreSQL. A policy decides by what each tier declares in `capabilities`
(`sidecar.tiers.base`), never by its name:

* a `NODE_LOCAL` tier (the memory tier) always: its own W-TinyLFU admission decides what
  it keeps.
* a `SHARED_RAM` tier (Redis, Memcached) only when the key is hot —
  ``frequency >= shared_min_hits`` (the lookups of the key on this node, counted by the
  engine, see `Frequencies`), so one-hit wonders stay out of shared RAM — or, while the
  tier its size picks has room (``roomy``, `sidecar.engine.budgets`: usage below
  ``shared_room_fraction`` of its limit), from the key's first lookup: RAM that would stay
  empty holds what other nodes may ask for, and one-hit wonders are kept out once it
  fills; and then by size.
  Each shared-RAM tier has a *band*, the largest entry it takes (`SharedBand`; the app
  lists Redis at ``redis_max_entry_bytes``, then Memcached at
  ``memcached_max_entry_bytes``). A hot entry goes to the first available tier, in the
  order the bands are listed, whose band it fits; one that fits the band of no available
  tier goes to the last available one listed if it is within the last band listed, the
  cap on any entry in shared RAM. So with both configured, ``size <= redis_max_entry_bytes``
  goes to Redis and ``redis_max_entry_bytes < size <= memcached_max_entry_bytes`` to
  Memcached; one of them alone takes every hot entry up to the cap (Redis alone: up to the
  larger of the two limits); larger entries never go to shared RAM. (Bands are tried in the
  order listed, not sorted by size: that keeps Redis first even when its limit is set above
  Memcached's.) A shared-RAM tier with no band listed is tried after the listed ones, with
  the cap as its band.
* a `DURABLE` tier (PostgreSQL) every entry when ``durable`` (survives restarts and
  RAM-tier outages: the long tail lives there); with ``durable`` off, nothing goes there.
* A `SHARED_RAM` or `DURABLE` tier named in ``over_budget`` (its sampled usage is at or
  above its byte budget, see `sidecar.engine.budgets`) is treated as not configured: a hot
  entry for Redis then goes to Memcached when it fits there (and the other way round, Redis
  alone taking entries up to the larger limit), else to memory and PostgreSQL only; with
  PostgreSQL over budget, nothing new goes there. A node-local tier is never left out.
* A tier declaring none of `NODE_LOCAL`, `SHARED_RAM`, `DURABLE` (a test double, a future
  tier) is not the policy's business: it is always picked (write-through).

`EveryTier` is the do-nothing placement: every tier, every time, no frequencies needed.

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

from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from typing import Protocol

from sidecar.core.model import CachedResponse
from sidecar.tiers.base import DURABLE, NODE_LOCAL, SHARED_RAM

__all__ = [
    "EVERY_TIER",
    "MAX_SHARED_MIN_HITS",
    "NO_FREQUENCIES",
    "EveryTier",
    "Frequencies",
    "NoFrequencies",
    "Placeable",
    "Placement",
    "PlacementPolicy",
    "SharedBand",
    "entry_size",
]

#: The frequency sketch saturates at 15: a higher threshold would never be met.
MAX_SHARED_MIN_HITS = 15
#: The capabilities a byte budget (`over_budget`) can exclude: never node-local RAM.
_BUDGETED = frozenset({SHARED_RAM, DURABLE})
_ROLES = frozenset({NODE_LOCAL, SHARED_RAM, DURABLE})


def entry_size(entry: CachedResponse) -> int:
    """The size estimate placement uses: raw body plus header names and values (an upper
    bound of the compressed body's size; no second compression)."""
    return len(entry.body) + sum(len(name) + len(value) for name, value in entry.headers)


class Placeable(Protocol):
    """What placement reads of a tier (every `Tier` is one)."""

    @property
    def name(self) -> str: ...

    @property
    def capabilities(self) -> frozenset[str]: ...


class Frequencies(Protocol):
    """Lookup counts per key (`sidecar.policy.sketch.FrequencySketch` is one)."""

    def increment(self, key: Hashable) -> int:
        """Count one lookup of `key`; its count after this one."""
        ...

    def frequency(self, key: Hashable) -> int: ...


class NoFrequencies:
    """Counts nothing; every key's frequency is 0 (for a placement that needs none)."""

    __slots__ = ()

    def increment(self, key: Hashable) -> int:
        """Do nothing: 0."""
        return 0

    def frequency(self, key: Hashable) -> int:
        """Always 0."""
        return 0


NO_FREQUENCIES = NoFrequencies()


class Placement(Protocol):
    """Which tiers an entry is written to (and backfilled into)."""

    @property
    def needs_frequencies(self) -> bool:
        """Whether `tiers_for` reads its `frequency` argument (else the engine need not count)."""
        ...

    def tiers_for(
        self,
        entry_size: int,
        frequency: int,
        tiers: Sequence[Placeable],
        over_budget: frozenset[str] = frozenset(),
        roomy: frozenset[str] = frozenset(),
    ) -> frozenset[str]:
        """The names, among `tiers` (fastest first), of the tiers an entry of `entry_size`
        bytes whose key was looked up about `frequency` times is written to. Tiers named in
        `over_budget` are over their byte budget; those in `roomy` have room."""
        ...


class EveryTier:
    """The do-nothing placement: every tier, whatever the entry (write-through)."""

    __slots__ = ()

    @property
    def needs_frequencies(self) -> bool:
        return False

    def tiers_for(
        self,
        entry_size: int,
        frequency: int,
        tiers: Sequence[Placeable],
        over_budget: frozenset[str] = frozenset(),
        roomy: frozenset[str] = frozenset(),
    ) -> frozenset[str]:
        """Every tier's name; byte budgets are not this placement's business."""
        return frozenset(t.name for t in tiers)


EVERY_TIER = EveryTier()


@dataclass(frozen=True, slots=True)
class SharedBand:
    """The largest entry (`entry_size`) the shared-RAM tier named `tier` takes."""

    tier: str
    max_entry_bytes: int

    def __post_init__(self) -> None:
        if self.max_entry_bytes < 0:
            raise ValueError(f"the band of {self.tier} must not be negative")


#: The bands of the defaults: Redis up to 64 KiB, Memcached (and the cap) up to 1 MiB - 1 KiB.
DEFAULT_BANDS = (SharedBand("redis", 65536), SharedBand("memcached", 1048576 - 1024))


@dataclass(frozen=True, slots=True)
class PlacementPolicy:
    """Places entries by tier capability, key frequency and size (see the module doc)."""

    shared_min_hits: int = 2
    bands: tuple[SharedBand, ...] = DEFAULT_BANDS
    durable: bool = True

    def __post_init__(self) -> None:
        if not 0 <= self.shared_min_hits <= MAX_SHARED_MIN_HITS:
            raise ValueError(
                f"shared_min_hits must be in [0, {MAX_SHARED_MIN_HITS}], got {self.shared_min_hits}"
            )

    @property
    def needs_frequencies(self) -> bool:
        return True

    def tiers_for(
        self,
        entry_size: int,
        frequency: int,
        tiers: Sequence[Placeable],
        over_budget: frozenset[str] = frozenset(),
        roomy: frozenset[str] = frozenset(),
    ) -> frozenset[str]:
        """See `Placement.tiers_for` and the module doc."""
        picked: set[str] = set()
        shared: list[str] = []
        for tier in tiers:
            roles = tier.capabilities & _ROLES
            if not roles:
                picked.add(tier.name)
            elif over_budget and tier.name in over_budget and roles & _BUDGETED:
                continue
            elif NODE_LOCAL in roles:
                picked.add(tier.name)
            elif SHARED_RAM in roles:
                shared.append(tier.name)
            elif self.durable:
                picked.add(tier.name)
        hot = frequency >= self.shared_min_hits
        if shared and (hot or (roomy and frequency >= 1)):
            chosen = self._shared_tier(entry_size, shared)
            if chosen is not None and (hot or chosen in roomy):
                picked.add(chosen)
        return frozenset(picked)

    def _shared_tier(self, size: int, available: list[str]) -> str | None:
        cap = self.bands[-1].max_entry_bytes if self.bands else 0
        listed = [b.tier for b in self.bands]
        band = {b.tier: b.max_entry_bytes for b in self.bands}
        ordered = [n for n in listed if n in available]
        ordered += [n for n in available if n not in band]
        for name in ordered:
            if size <= band.get(name, cap):
                return name
        return ordered[-1] if size <= cap else None
