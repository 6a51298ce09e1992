"""The engine's `Generations`, telling its `Broadcaster` about every purge they apply.

Every purge by tag or route, and every epoch bump, goes through the engine's generations:
RPC and admin purges, events read from the Kafka bus (`purge(..., once=id)`, told also when
the id was applied already elsewhere: this node's view changed all the same), purges a
shared tier could not take and that became one epoch bump (`keep_purges`). So watchers hear
of a purge exactly when this sidecar's own tiers start judging by it.

After each purge the epoch is read once more (in this process for `LocalGenerations`; from
the values `RedisGenerations` holds, at most one round trip per its `cache_ms`): a new
epoch, whoever made it (`LocalGenerations` turns a purge into an epoch bump when its table
is full; another node's purge of everything read from Redis), is a flush.

Not guaranteed: that watchers hear of a purge another node made in Redis and that reached
this node only through a lookup reading the new value (without the bus): the engine itself
learns those lazily, and near-caches hold their copies no longer than their own cap.
"""

from __future__ import annotations

from collections.abc import Sequence

from sidecar.engine.changes import Broadcaster
from sidecar.engine.generations import EPOCH, Generation, Generations

__all__ = ["WatchedGenerations"]


class WatchedGenerations:
    """`Generations` that publish each purge to a `Broadcaster` once it is applied."""

    def __init__(self, inner: Generations, changes: Broadcaster) -> None:
        self.inner = inner
        self._changes = changes
        self._epoch: int | None = None

    async def stamp(self, tags: Sequence[str], expires_at_ms: int) -> tuple[int, ...]:
        return await self.inner.stamp(tags, expires_at_ms)

    async def current(self, tags: Sequence[str]) -> tuple[int, ...]:
        return await self.inner.current(tags)

    async def generations(self, tags: Sequence[str]) -> tuple[Generation, ...]:
        return await self.inner.generations(tags)

    async def bump(self, tag: str) -> None:
        await self._baseline()
        try:
            await self.inner.bump(tag)
        finally:
            await self._published((tag,))

    async def bump_all(self) -> None:
        await self._baseline()
        try:
            await self.inner.bump_all()
        finally:
            await self._published((EPOCH,))

    async def purge(self, names: Sequence[str], *, soft: bool = False, once: str = "") -> bool:
        await self._baseline()
        try:
            return await self.inner.purge(names, soft=soft, once=once)
        finally:
            await self._published(names)

    def live(self) -> int:
        return self.inner.live()

    def observe(self, expires_at_ms: int) -> None:
        self.inner.observe(expires_at_ms)

    async def open(self) -> None:
        await self.inner.open()

    async def close(self) -> None:
        await self.inner.close()

    async def _baseline(self) -> None:
        """Read the epoch before a purge when watchers listen and it is not known yet."""
        if self._epoch is None and self._changes.watchers:
            try:
                self._epoch = (await self.inner.current(()))[-1]
            except Exception:  # unknown: `_published` flushes
                self._epoch = None

    async def _published(self, names: Sequence[str]) -> None:
        """Tell the watchers (also when the purge failed part way: telling too much only
        costs them a refetch)."""
        if EPOCH in names:
            self._changes.flushed("purge_all")
        tags = [name for name in names if name != EPOCH]
        if tags:
            self._changes.changed_tags(tags)
        if not self._changes.watchers:
            self._epoch = None  # nobody to tell: no read of the epoch
            return
        try:
            epoch = (await self.inner.current(()))[-1]
        except Exception:  # an unknown epoch may have moved: flush
            self._changes.flushed("epoch")
            self._epoch = None
            return
        if self._epoch is not None and epoch != self._epoch and EPOCH not in names:
            self._changes.flushed("epoch")
        self._epoch = epoch
