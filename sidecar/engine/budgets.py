"""Per-tier byte budgets of the shared tiers: sampled usage against a configured budget.

`Budgets` holds, per shared tier, an async usage reader (the tier's `usage()`), the last
value it returned, and the tier's budget if it has one (``redis_max_bytes``,
``memcached_max_bytes``, ``postgres_max_bytes`` > 0). The app calls `sample()` every
``budget_sample_seconds``; the engine reads `over_budget()` (no I/O) on every placement
decision and skips those tiers (`PlacementPolicy.tiers_for(..., over_budget=...)`), and
`annotate()` puts the last sample and the budget into the tier's `TierSnapshot`
(``bytes`` / ``max_bytes``, so ``strata_tier_bytes`` / ``strata_tier_max_bytes``: the
occupancy of every shared tier is reported, budget or not; ``max_bytes`` stays 0 without
one).

What the usage is, per tier (each one cheap, one round trip):

* Redis: ``INFO memory`` ``used_memory`` — the **whole server's** memory, not only
  Strata's keys: give Strata its own Redis, or set the budget with the rest in mind.
* Memcached: ``stats`` ``bytes`` summed over the servers (the whole servers' items).
* PostgreSQL: ``pg_total_relation_size('strata_entries')`` — the table with its indexes
  and TOAST, every namespace, dead rows until vacuumed; O(1), unlike ``sum(size)``.

Not guaranteed: a hard cap. Usage is as of the last sample (up to
``budget_sample_seconds`` old) and other sidecars write too, so a tier may overshoot its
budget by what is written in between; entries already there stay until evicted, expired
or purged (a budget stops new writes, it does not evict). A failed sample keeps the
previous value (logged at most once a minute per tier); a tier never sampled successfully
counts as within its budget.

Room: a shared tier has room while its last sampled usage is below ``room_fraction`` of
its limit -- the smaller of its budget and its server's own limit (Redis ``maxmemory``,
Memcached ``-m``, read by the same sample through the tier's ``server_limit_bytes``). A
tier with neither limit never has room by this measure (its growth is unbounded: admission
stays strict), nor does one not sampled yet. `roomy()` names them; placement then shares an
entry from its first store (`sidecar.engine.placement`). Between two samples the bytes this
node places in a tier (`note_placed`, the entries' raw sizes) are added to its last sample,
so a fast fill stops being roomy before the next sample shows it; other nodes' writes are
not seen until then, so N nodes may overshoot the fraction by what they write in one sample
interval.

`NoBudgets` is the do-nothing version (no tier has a budget): the engine's default.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import replace
from typing import Protocol

from sidecar.core.clock import Clock
from sidecar.core.model import TierSnapshot

__all__ = [
    "LOG_EVERY_S",
    "NO_BUDGETS",
    "Budgets",
    "ByteBudgets",
    "LimitReader",
    "NoBudgets",
    "UsageReader",
]

log = logging.getLogger("strata.sidecar.budgets")

#: A failing usage read is logged at most this often per tier.
LOG_EVERY_S = 60.0

UsageReader = Callable[[], Awaitable[int | None]]
#: A tier's own limit in bytes as last read (None: none, or not known); no I/O.
LimitReader = Callable[[], int | None]


class ByteBudgets(Protocol):
    """What the engine and its owner use of byte budgets (`Budgets`, `NoBudgets`)."""

    def __bool__(self) -> bool:
        """Whether any tier has a budget (nothing to sample otherwise)."""
        ...

    async def sample(self) -> None: ...

    def over_budget(self) -> frozenset[str]: ...

    def roomy(self) -> frozenset[str]: ...

    def note_placed(self, name: str, size: int) -> None: ...

    def usage(self, name: str) -> int | None: ...

    def annotate(self, snapshot: TierSnapshot) -> TierSnapshot: ...


class NoBudgets:
    """No tier has a byte budget: nothing is ever over one, snapshots are left alone."""

    __slots__ = ()

    def __bool__(self) -> bool:
        return False

    async def sample(self) -> None:
        """Nothing to sample."""

    def over_budget(self) -> frozenset[str]:
        return frozenset()

    def roomy(self) -> frozenset[str]:
        return frozenset()

    def note_placed(self, name: str, size: int) -> None:
        """Nothing to count."""

    def usage(self, name: str) -> int | None:
        return None

    def annotate(self, snapshot: TierSnapshot) -> TierSnapshot:
        return snapshot


NO_BUDGETS = NoBudgets()


class Budgets:
    """Byte budgets of tiers (by name) and their last sampled usage."""

    def __init__(
        self,
        max_bytes: Mapping[str, int],
        usage: Mapping[str, UsageReader],
        clock: Clock,
        limits: Mapping[str, LimitReader] | None = None,
        room_fraction: float = 0.0,
    ) -> None:
        """`max_bytes`: budget per tier name (0 or absent = none); `usage`: how to read
        each tier's bytes now. Every tier with a reader is sampled (its occupancy is
        reported); only those with a budget too can be over budget. `limits`: each tier's
        server limit as its last usage read saw it; `room_fraction` (0 = never): the share
        of the smaller limit below which a tier has room."""
        if any(v < 0 for v in max_bytes.values()):
            raise ValueError("a byte budget must not be negative")
        if not 0.0 <= room_fraction <= 1.0:
            raise ValueError(f"room_fraction must be in [0, 1], got {room_fraction}")
        self._limits = dict(limits or {})
        self._room_fraction = room_fraction
        self._roomy: frozenset[str] = frozenset()
        #: Per roomy tier: bytes it may still take before it has no room (from the last
        #: sample, less what this node placed there since).
        self._room_left: dict[str, float] = {}
        self._max = {name: b for name, b in max_bytes.items() if b > 0 and name in usage}
        self._usage = dict(usage)
        self._clock = clock
        self._last: dict[str, int] = {}
        self._over: frozenset[str] = frozenset()
        self._logged_at: dict[str, float] = {}

    @property
    def max_bytes(self) -> Mapping[str, int]:
        return dict(self._max)

    def __bool__(self) -> bool:
        return bool(self._usage)

    async def sample(self) -> None:
        """Read every tier's usage once; a failure keeps its previous sample."""
        for name, read in self._usage.items():
            try:
                used = await read()
            except Exception as exc:  # any failure: keep the old sample
                self._log_failure(name, exc)
                continue
            if used is not None:
                self._last[name] = used
        self._over = frozenset(n for n, b in self._max.items() if self._last.get(n, 0) >= b)
        self._room_left = {}
        for name in self._usage:
            left = self._room(name)
            if left > 0:
                self._room_left[name] = left
        self._roomy = frozenset(self._room_left)

    def _room(self, name: str) -> float:
        """Bytes `name` may take before its usage reaches the room fraction (<= 0: none)."""
        used = self._last.get(name)
        if used is None or self._room_fraction <= 0:
            return 0.0
        read = self._limits.get(name)
        server = read() if read is not None else None
        limits = [b for b in (self._max.get(name), server) if b is not None and b > 0]
        return self._room_fraction * min(limits) - used if limits else 0.0

    def note_placed(self, name: str, size: int) -> None:
        """This node placed an entry of `size` bytes in `name` (see the module doc)."""
        left = self._room_left.get(name)
        if left is None:
            return
        left -= size
        if left > 0:
            self._room_left[name] = left
        else:
            del self._room_left[name]
            self._roomy = frozenset(self._room_left)

    def over_budget(self) -> frozenset[str]:
        """Names of the tiers whose last sampled usage is at or above their budget."""
        return self._over

    def roomy(self) -> frozenset[str]:
        """Names of the tiers with room as of the last sample (see the module doc)."""
        return self._roomy

    def usage(self, name: str) -> int | None:
        """The last sampled usage of `name` (None: not sampled yet, or no reader)."""
        return self._last.get(name)

    def annotate(self, snapshot: TierSnapshot) -> TierSnapshot:
        """`snapshot` with the tier's last sample as `bytes` and its budget (if any) as
        `max_bytes` (unchanged for a tier that is not sampled)."""
        if snapshot.name not in self._usage:
            return snapshot
        used = self._last.get(snapshot.name, snapshot.bytes)
        budget = self._max.get(snapshot.name, snapshot.max_bytes)
        return replace(snapshot, max_bytes=budget, bytes=used)

    def _log_failure(self, name: str, exc: BaseException) -> None:
        now = self._clock.monotonic()
        last = self._logged_at.get(name)
        if last is not None and now - last < LOG_EVERY_S:
            return
        self._logged_at[name] = now
        log.warning(
            "tier usage sample failed; keeping the previous sample",
            extra={
                "event.action": "budget_sample",
                "strata.tier": name,
                "error.message": f"{type(exc).__name__}: {exc}",
            },
        )
