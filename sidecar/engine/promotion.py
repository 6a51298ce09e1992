"""Promotion: an entry that turns hot while this node serves it from memory goes to shared RAM.

Placement keeps a key out of Redis and Memcached until it was looked up
``shared_min_hits`` times on this node (`sidecar.engine.placement`), so that one-hit
wonders stay out of shared RAM. But the only store of a key follows its first miss, when its
count is 1: a key that then lives in the memory tier is never stored again, so it would never
reach shared RAM, and every other node would fetch it from the origin itself. `Promoter`
closes that gap: the memory hit that brings the key's count to ``shared_min_hits`` writes
the entry (as it is: same stored time, same tag generations, so purges judge it as they
judge the original) to the shared RAM tiers placement picks for it now. The write runs as a
task of its own, outside the lookup's deadline: the hit is answered at once and a slow or
failing tier costs the lookup nothing.

Not guaranteed: that every key is promoted exactly once -- the count is a sketch estimate
that ages (halving), so a key may reach the threshold again and be written again (the same
entry: harmless), or, when a collision lifts its estimate past the threshold between two of
its own lookups, not be promoted until aging brings it back; that a promotion lands (a
failing tier is counted and skipped; at most `MAX_PENDING` writes are in flight, more are
dropped and counted); promotion of a variant (a key holding a variant marker): the marker
would have to travel too, so variants reach shared RAM only through their stores.
"""

from __future__ import annotations

import asyncio
import contextvars

from sidecar.core.model import CachedResponse
from sidecar.core.observer import Observer
from sidecar.engine.placing import Placer
from sidecar.engine.tier_calls import TierCalls
from sidecar.tiers.base import SHARED_RAM

__all__ = ["MAX_PENDING", "Promoter"]

#: Promotion writes in flight at most; a hot key seen while this many are pending is not
#: promoted now (it is counted as dropped; its next store or re-promotion places it).
MAX_PENDING = 64


class Promoter:
    """Writes entries that turn hot on a memory hit to shared RAM (see the module doc)."""

    def __init__(self, calls: TierCalls, placer: Placer, observer: Observer) -> None:
        self._calls = calls
        self._placer = placer
        self._observer = observer
        self._pending: set[asyncio.Task[None]] = set()
        threshold = getattr(placer.placement, "shared_min_hits", None)
        shared = any(SHARED_RAM in t.capabilities for t in calls.tiers[1:])
        #: The lookup count at which a key turns hot; None: nothing to promote (no shared
        #: RAM tier, a placement that ignores counts, or one that shares from the first
        #: store on).
        self._threshold: int | None = (
            threshold
            if shared
            and placer.placement.needs_frequencies
            and isinstance(threshold, int)
            and threshold >= 2
            else None
        )

    @property
    def enabled(self) -> bool:
        return self._threshold is not None

    @property
    def pending(self) -> int:
        return len(self._pending)

    def memory_hit(self, key: bytes, entry: CachedResponse, counted: int) -> None:
        """`entry` was served fresh from the memory tier under `key` (not a variant), whose
        lookup count is `counted` with this lookup: start its promotion if this lookup
        brought the count to the threshold."""
        threshold = self._threshold
        if threshold is None or counted != threshold:
            return
        if len(self._pending) >= MAX_PENDING:
            self._observer.promoted("shared", "dropped")
            return
        task = asyncio.get_running_loop().create_task(
            self._promote(key, entry, threshold), context=contextvars.Context()
        )
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def _promote(self, key: bytes, entry: CachedResponse, frequency: int) -> None:
        tiers = self._calls.tiers
        for i in sorted(self._placer.placed(entry, frequency)):
            if SHARED_RAM not in tiers[i].capabilities:
                continue  # memory holds it; a durable tier got it with its store
            status = await self._calls.set(i, key, entry)
            self._observer.promoted(tiers[i].name, "failed" if status is None else status.value)

    async def drain(self) -> None:
        """Wait for the promotions in flight (for shutdown and tests)."""
        while self._pending:
            await asyncio.gather(*list(self._pending), return_exceptions=True)
