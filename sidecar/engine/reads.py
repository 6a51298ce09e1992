"""Lookups: read-through over the tiers, backfill, variants, purge checks and coalescing.

A lookup reads the fastest tier first; a hit below it is backfilled into the faster tiers
placement allows for the entry (the memory tier always). A purged entry is a miss (deleted
from every tier) -- unless it was this node's memory copy and a shared tier holds one stored
since the purge (another node refetched it): then only the memory copy is dropped and the
newer one answers; a soft-purged one is stale, its freshness cut at the purge
(`sidecar.engine.purge.soft_stale`), or a miss (deleted) once no stale window is left.
Concurrent reads of one key below the memory tier share one read (`SingleFlight`). A memory
copy that is no longer fresh is checked against the shared tiers when its lookup is handed
the refresh lease: a newer copy there (another node refreshed the key) replaces it, answers,
and the lease is given back, so nodes do not refresh one key in turn. That costs one
shared-tier read per lease handed out (at most one per key and lease period, cluster-wide),
not one per stale lookup; the other lookups of this node serve its stale copy until then. A
key holding a variant marker is read again under the variant the request headers select
(`sidecar.engine.variants`).

A fresh memory hit whose count turns its key hot writes it to shared RAM in the background
(`sidecar.engine.promotion`): its only store came when it was still cold.

Counting: each `Reads.lookup` counts its key once in the engine's `Frequencies` (the one
sketch placement and the memory tier's admission share, `sidecar.policy.shared`), and the
variant key once too when the key holds a marker. Nothing else is counted: not the re-read
after a coalesced wait, not the reads a store makes to find the current marker.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from sidecar.core.clock import Clock
from sidecar.core.limits import Limits, check_coalesce_wait
from sidecar.core.model import CachedResponse, EngineCounters, Headers, LookupResult, Outcome
from sidecar.core.observer import Observer
from sidecar.engine.coalesce import Leases, SingleFlight
from sidecar.engine.generations import Verdict
from sidecar.engine.placing import Placer
from sidecar.engine.promotion import Promoter
from sidecar.engine.purge import Purges, soft_stale
from sidecar.engine.tier_calls import TierCalls
from sidecar.engine.variants import is_marker, variant_key
from sidecar.tiers import deadline
from sidecar.tiers.base import SHARED_RAM

__all__ = ["Reads"]


class Reads:
    """The lookup half of the engine (see the module doc; `Engine.lookup` validates)."""

    def __init__(
        self,
        calls: TierCalls,
        placer: Placer,
        purges: Purges,
        leases: Leases,
        clock: Clock,
        limits: Limits,
        counters: EngineCounters,
        observer: Observer,
        lookup_budget_s: float,
    ) -> None:
        self._calls = calls
        self._tiers = calls.tiers
        self._placer = placer
        self._purges = purges
        self._leases = leases
        self._clock = clock
        self._limits = limits
        self._counters = counters
        self._observer = observer
        self._lookup_budget_s = lookup_budget_s
        self._count: Callable[[bytes], int] = placer.frequencies.increment
        self.promoter = Promoter(calls, placer, observer)
        self._promote = self.promoter.enabled
        self._flights: SingleFlight[bytes, tuple[CachedResponse | None, int]] = SingleFlight()

    async def lookup(
        self, key: bytes, request_headers: Headers, coalesce_wait_ms: int, timeout_s: float | None
    ) -> LookupResult:
        """See `Engine.lookup`."""
        self._counters.lookups += 1
        counted = self._count(key)
        budget = self._lookup_budget_s or None
        if timeout_s is not None:
            budget = timeout_s if budget is None else min(budget, timeout_s)
        start = deadline.now()
        with deadline.until(None if budget is None else start + budget):
            result = await self._find(key, request_headers, count=True, counted=counted)
        if result.outcome is Outcome.STALE or (
            result.outcome is Outcome.MISS and coalesce_wait_ms > 0
        ):
            wait_s = check_coalesce_wait(coalesce_wait_ms, self._limits) / 1000.0
            with deadline.until(None if budget is None else start + budget + wait_s):
                result = await self._coalesce(key, request_headers, result, coalesce_wait_ms)
        self._count_outcome(result)
        return result

    async def _find(
        self,
        key: bytes,
        request_headers: Headers,
        *,
        count: bool,
        newer: bool = False,
        counted: int = 0,
    ) -> LookupResult:
        """`newer`: a memory copy that is no longer fresh is checked against the shared
        tiers (`_newer_below`); `counted`: the key's lookup count with this lookup (for
        promotion), when `count`."""
        now = self._clock.now_ms()
        entry, tier = await self.read(key, key)
        found = key
        if entry is not None and is_marker(entry):
            found = variant_key(key, entry, request_headers)
            if count:
                self._count(found)
            entry, tier = await self.read(found, key)
        if entry is None or is_marker(entry):
            return LookupResult(Outcome.MISS, now_ms=now)
        if newer and tier == 0 and now - entry.stored_at_ms >= entry.ttl_ms:
            below = await self._newer_below(found, entry)
            if below is not None:
                entry, tier = below
        result = await self._judged(entry, tier, now)
        if (
            self._promote
            and tier == 0
            and found == key
            and count
            and result is not None
            and result.outcome is Outcome.HIT
        ):
            self.promoter.memory_hit(key, entry, counted)
        if result is None and tier == 0 and len(self._tiers) > 1:
            # this node's copy predates a purge; one stored since may be in a shared tier
            # (another node refetched it): drop the memory copy only and look below
            await self._calls.guarded(0, "delete", lambda t: t.delete(found))
            since_purge, i = await self._read_below(found, self._placer.frequency(key))
            if since_purge is not None and not is_marker(since_purge):
                result = await self._judged(since_purge, i, now)
        if result is None:
            await self._calls.delete_everywhere(found)
            return LookupResult(Outcome.MISS, now_ms=now)
        return result

    async def _judged(self, entry: CachedResponse, tier: int, now: int) -> LookupResult | None:
        """`entry` (read from `tier`) as a lookup answer after the purge checks; None when
        it is purged (counted as evicted)."""
        verdict, since = await self._purges.judge(entry)
        if verdict is Verdict.SOFT:
            soft = soft_stale(entry, since, now)
            verdict, entry = (Verdict.PURGED, entry) if soft is None else (verdict, soft)
        if verdict is Verdict.PURGED:
            self._observer.evicted(self._tiers[tier].name, "purged", 1)
            return None
        age = max(0, now - entry.stored_at_ms)
        if age < entry.ttl_ms:
            outcome = Outcome.HIT
        elif now < entry.expires_at_ms:
            outcome = Outcome.STALE
        else:
            return LookupResult(Outcome.MISS, now_ms=now)
        return LookupResult(outcome, entry, age_ms=age, tier=self._tiers[tier].name, now_ms=now)

    async def _coalesce(
        self, key: bytes, request_headers: Headers, found: LookupResult, wait_ms: int
    ) -> LookupResult:
        """First caller of a stale key (always) or of a missing key (when it asks to
        coalesce) gets the fill lease, so one request refreshes it; others of a missing key
        wait for that fill (bounded), others of a stale key get the stale entry at once."""
        if await self._leases.try_acquire(key):
            if found.outcome is Outcome.STALE and self._stale_in_memory(found):
                again = await self._find(key, request_headers, count=False, newer=True)
                if again.outcome is Outcome.HIT or _stored_later(again, found):
                    # another node refreshed it already: no refresh from here
                    await self._leases.release(key)
                    return again
            return _with(found, fill_lease=True)
        if found.outcome is Outcome.STALE:
            return found
        wait_s = check_coalesce_wait(wait_ms, self._limits) / 1000.0
        filled = await self._leases.wait(key, wait_s)
        self._observer.coalesced("filled" if filled else "timeout")
        if not filled:
            return found
        again = await self._find(key, request_headers, count=False)
        if again.outcome is Outcome.MISS:
            return again
        self._counters.coalesced += 1
        return _with(again, coalesced=True)

    async def read(self, key: bytes, primary: bytes) -> tuple[CachedResponse | None, int]:
        """The entry from the fastest tier that has it (and that tier's index), backfilling
        faster tiers (those placement allows for it at the lookup count of `primary`, the
        key a variant is filed under). A memory hit never reads the frequencies."""
        first = await self._calls.get(0, key)
        if first is not None or len(self._tiers) == 1:
            return first, 0
        try:
            return await self._flights.do(
                key, lambda: self._read_below(key, self._placer.frequency(primary))
            )
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if task is None or task.cancelling():
                raise
            return None, 0  # the caller reading for us gave up; not us: a miss below

    def _stale_in_memory(self, found: LookupResult) -> bool:
        return len(self._tiers) > 1 and found.tier == self._tiers[0].name

    async def _newer_below(
        self, key: bytes, stale: CachedResponse
    ) -> tuple[CachedResponse, int] | None:
        """A copy of `key` in a shared tier stored after `stale` (this node's memory copy,
        no longer fresh): another node refreshed it. It replaces the memory copy, so this
        node serves the refreshed response instead of refreshing it once more. None when the
        first shared tier that has the key holds nothing newer (or none has it)."""
        for i in range(1, len(self._tiers)):
            below = await self._calls.get(i, key)
            if below is None:
                continue
            if is_marker(below) or below.stored_at_ms <= stale.stored_at_ms:
                return None
            await self._calls.set(0, key, below)
            return below, i
        return None

    async def _read_below(self, key: bytes, frequency: int) -> tuple[CachedResponse | None, int]:
        for i in range(1, len(self._tiers)):
            entry = await self._calls.get(i, key)
            if entry is not None:
                placed = self._placer.placed(entry, frequency)
                for j in range(i):
                    if j == 0 or j in placed:
                        await self._calls.set(j, key, entry)
                if self._promote and SHARED_RAM in self._tiers[i].capabilities:
                    self.promoter.found_shared(key)
                return entry, i
        return None, 0

    def _count_outcome(self, result: LookupResult) -> None:
        if result.outcome is Outcome.HIT:
            self._counters.hits += 1
        elif result.outcome is Outcome.STALE:
            self._counters.stale_hits += 1
        else:
            self._counters.misses += 1
        self._observer.lookup(result.outcome.value, result.tier)
        if result.entry is not None:  # hit or stale: the body the origin did not send
            self._observer.served(result.outcome.value, result.tier, len(result.entry.body))


def _stored_later(again: LookupResult, found: LookupResult) -> bool:
    return (
        again.entry is not None
        and found.entry is not None
        and again.entry.stored_at_ms > found.entry.stored_at_ms
    )


def _with(result: LookupResult, fill_lease: bool = False, coalesced: bool = False) -> LookupResult:
    return LookupResult(
        result.outcome,
        result.entry,
        age_ms=result.age_ms,
        tier=result.tier,
        fill_lease=fill_lease,
        coalesced=coalesced,
        now_ms=result.now_ms,
    )
