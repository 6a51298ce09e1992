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

Key and prefix purges delete (tag, route and namespace purges compare generations, which a
promoted copy carries unchanged, so they need nothing here). So that a promotion never
brings back what such a purge deleted, the engine tells `purged` before each one: a
promotion that started before it writes nothing, or deletes what it wrote if the purge came
while it was writing; and the keys promoted lately (`RECENT_KEYS`) that the purge covers are
deleted from shared RAM, for a purge made on another node reaches this one later, through
the bus, after that node deleted the shared copies: until then this node's promotion may
have written the old entry there again, as its own memory still served it.

Not guaranteed: that every key is promoted exactly once -- the count is a sketch estimate
that ages (halving), so a key may reach the threshold again and be written again (the same
entry: harmless), or, when a collision lifts its estimate past the threshold between two of
its own lookups, not be promoted until aging brings it back; that a promotion lands (a
failing tier is counted and skipped; at most `MAX_PENDING` writes are in flight, more are
dropped and counted); that a purge made on another node is never served from a copy this
node promoted between that purge and its arrival here (the same window in which this node
serves its own memory copy), nor after it when the key left the `RECENT_KEYS` record;
promotion of a variant (a key holding a variant marker): the marker
would have to travel too, so variants reach shared RAM only through their stores.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections import OrderedDict

from sidecar.core.model import CachedResponse, logical_bytes
from sidecar.core.observer import Observer
from sidecar.engine.placing import Placer
from sidecar.engine.tier_calls import TierCalls
from sidecar.tiers.base import SHARED_RAM, SetStatus

__all__ = ["MAX_PENDING", "RECENT_KEYS", "Promoter"]

#: Promotion writes in flight at most; a hot key seen while this many are pending is not
#: promoted now (it is counted as dropped; its next store or re-promotion places it).
MAX_PENDING = 64
#: Keys this node lately promoted to shared RAM or found there (a shared hit backfilled into
#: memory): not promoted again, and a key or prefix purge applied here deletes them from
#: shared RAM too (the oldest are forgotten first).
RECENT_KEYS = 10_000


class Promoter:
    """Writes entries that turn hot on a memory hit to shared RAM (see the module doc)."""

    def __init__(self, calls: TierCalls, placer: Placer, observer: Observer) -> None:
        self._calls = calls
        self._placer = placer
        self._observer = observer
        self._pending: set[asyncio.Task[None]] = set()
        #: Bumped by every key or prefix purge: a promotion started before one writes nothing.
        self._epoch = 0
        self._recent: OrderedDict[bytes, None] = OrderedDict()
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
        if threshold is None or counted != threshold or key in self._recent:
            return  # not turning hot now, or shared RAM has it (written or read lately)
        if len(self._pending) >= MAX_PENDING:
            self._observer.promoted("shared", "dropped")
            return
        task = asyncio.get_running_loop().create_task(
            self._promote(key, entry, threshold, self._epoch), context=contextvars.Context()
        )
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def _promote(self, key: bytes, entry: CachedResponse, frequency: int, epoch: int) -> None:
        tiers = self._calls.tiers
        wrote: list[int] = []
        for i in sorted(self._placer.placed(entry, frequency)):
            if SHARED_RAM not in tiers[i].capabilities:
                continue  # memory holds it; a durable tier got it with its store
            if self._epoch != epoch:
                self._observer.promoted(tiers[i].name, "purged")  # a purge came first
                continue
            status = await self._calls.set(i, key, entry)
            stored = status is SetStatus.STORED
            self._observer.promoted(
                tiers[i].name,
                "failed" if status is None else status.value,
                logical_bytes(key, entry) if stored else 0,
            )
            if stored:
                wrote.append(i)
        if not wrote:
            return
        if self._epoch != epoch:  # a purge came while this was writing: undo
            for i in wrote:
                await self._calls.guarded(i, "delete", lambda t: t.delete(key))
                self._observer.promoted(tiers[i].name, "undone")
            return
        self.found_shared(key)

    def found_shared(self, key: bytes) -> None:
        """`key` is in shared RAM now (promoted, or read from there and copied into
        memory): remember it (see `RECENT_KEYS`)."""
        if self._threshold is None:
            return
        recent = self._recent
        recent[key] = None
        recent.move_to_end(key)
        if len(recent) > RECENT_KEYS:
            recent.popitem(last=False)

    async def purged(self, key: bytes = b"", prefix: bytes | None = None) -> None:
        """A purge of `key` (or of every key starting with `prefix`) is applied here, from
        this node or from the bus: promotions in flight write nothing more (or undo what
        they wrote), and what was promoted lately under it is deleted from shared RAM."""
        self._epoch += 1
        if not self._recent:
            return
        if prefix is None:
            victims = [key] if key in self._recent else []
        else:
            victims = [k for k in self._recent if k.startswith(prefix)]
        for victim in victims:
            del self._recent[victim]
            await self._delete_shared(victim)

    async def _delete_shared(self, key: bytes) -> None:
        for i, tier in enumerate(self._calls.tiers):
            if SHARED_RAM in tier.capabilities:
                await self._calls.guarded(i, "delete", lambda t: t.delete(key))

    async def drain(self) -> None:
        """Wait for the promotions in flight (for shutdown and tests)."""
        while self._pending:
            await asyncio.gather(*list(self._pending), return_exceptions=True)
