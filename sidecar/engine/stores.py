"""Stores: filing an entry (or its variant) on the tiers placement picks for it.

A store clamps what the entry claims about time (`sidecar.engine.entry_bounds`), stamps
it with its purge tags (`sidecar.engine.purge`), writes it to the tiers placement picks
for its size and its key's lookup count, and deletes the key from the other tiers (an
older version there must not shadow the new one). A varied entry is filed under its
variant, after a marker under the key (`sidecar.engine.variants`). Finally the fill lease
on the key ends, waking the lookups that waited for it.
"""

from __future__ import annotations

from sidecar.core.clock import Clock
from sidecar.core.limits import Limits
from sidecar.core.model import (
    CachedResponse,
    EngineCounters,
    Headers,
    StoreResult,
    StoreStatus,
    logical_bytes,
)
from sidecar.core.observer import Observer
from sidecar.engine.coalesce import Leases
from sidecar.engine.entry_bounds import ClampReporter, bound_entry
from sidecar.engine.placing import Placer
from sidecar.engine.purge import Purges
from sidecar.engine.reads import Reads
from sidecar.engine.tier_calls import TierCalls
from sidecar.engine.variants import is_marker, new_marker, variant_key
from sidecar.tiers.base import SetStatus

__all__ = ["Stores"]

_SET_TO_STORE = {
    SetStatus.STORED: StoreStatus.STORED,
    SetStatus.NOT_ADMITTED: StoreStatus.NOT_ADMITTED,
    SetStatus.TOO_LARGE: StoreStatus.TOO_LARGE,
}


class Stores:
    """The store half of the engine (see the module doc; `Engine.store` validates)."""

    def __init__(
        self,
        calls: TierCalls,
        placer: Placer,
        purges: Purges,
        reads: Reads,
        leases: Leases,
        clock: Clock,
        limits: Limits,
        counters: EngineCounters,
        observer: Observer,
    ) -> None:
        self._calls = calls
        self._placer = placer
        self._purges = purges
        self._reads = reads
        self._leases = leases
        self._clock = clock
        self._limits = limits
        self._counters = counters
        self._observer = observer
        self._clamps = ClampReporter(clock, observer)

    async def store(
        self, key: bytes, entry: CachedResponse, request_headers: Headers, route: str
    ) -> StoreResult:
        """See `Engine.store`."""
        now = self._clock.now_ms()
        entry, clamped = bound_entry(entry, self._limits, now)  # stored_at <= now, max TTL
        if clamped:
            self._clamps.report(clamped, self._limits)
        entry = await self._purges.stamp(entry, route)
        self._counters.stores += 1
        if entry.expires_at_ms <= now:
            status = StoreStatus.EXPIRED
        else:
            target = key
            frequency = self._placer.frequency(key)
            if entry.vary:
                target = await self._file_variant(key, entry, request_headers, frequency)
            status = await self._write(target, entry, frequency)
        waiters = await self._leases.release(key)
        self._observer.store(status.value)
        return StoreResult(status, waiters)

    async def _file_variant(
        self, key: bytes, entry: CachedResponse, request_headers: Headers, frequency: int
    ) -> bytes:
        current, _ = await self._reads.read(key, key)
        if current is not None and is_marker(current) and current.vary == entry.vary:
            marker = new_marker(entry, nonce=current.body)
        else:
            marker = new_marker(entry)
        await self._write(key, marker, frequency)
        return variant_key(key, marker, request_headers)

    async def _write(self, key: bytes, entry: CachedResponse, frequency: int) -> StoreStatus:
        """Set `entry` on its tiers; delete `key` from the others (an older version there
        must not shadow this one)."""
        placed = self._placer.placed(entry, frequency)
        for name in self._placer.refused_cold(entry, frequency):
            self._observer.admission_refused(name, logical_bytes(key, entry))
        statuses: list[SetStatus | None] = []
        for i in range(len(self._calls.tiers)):
            if i in placed:
                statuses.append(await self._calls.set(i, key, entry))
            else:
                await self._calls.guarded(i, "delete", lambda t: t.delete(key))
        if SetStatus.STORED in statuses:
            return StoreStatus.STORED
        known = [s for s in statuses if s is not None]
        return _SET_TO_STORE[known[0]] if known else StoreStatus.NOT_ADMITTED
