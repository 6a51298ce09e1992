"""A shared tier that never forgets a purge it could not apply: a wrapper with the `Tier`
interface (like the circuit breaker it usually wraps).

A `delete` or `delete_prefix` that fails (`TierError`: refused, timed out, circuit open)
is kept (`sidecar.core.pending.PendingPurges`: bounded by `max_pending`, counted in
`strata_deferred_purges_total{tier,event}` and `strata_pending_purges{tier}`) and the
error is raised as before, so the engine counts it. While anything is kept, every other
call first replays the kept purges (oldest first, `CONCURRENCY` at a time); until they are
all applied the call raises `TierSkippedError(..., "purges_pending")` instead of touching
the tier, so an entry purged during an outage is never read back from this tier (a miss
meanwhile). A background retry replays every `retry_s` as well, so an idle sidecar
catches up too.

Beyond `max_pending` the kept purges are replaced by `on_overflow` (the engine passes a
namespace-wide generation bump, which makes every entry stored before it a miss
everywhere) and the overflow is logged and counted; nothing is dropped silently.

Tag purges do not come here: they are generation bumps (`sidecar.engine.generations`), kept and
replayed there. A purge by prefix on a tier that cannot enumerate keys (Memcached)
succeeds as a no-op, as before.

What is NOT guaranteed: other sidecars not reading the purged entry from this tier
before this sidecar has replayed (within `retry_s`, or at its next call to the tier);
kept purges surviving a restart of this sidecar; entries without any purge tag being
reached by `on_overflow`.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

from sidecar.core.clock import Clock
from sidecar.core.errors import TierError
from sidecar.core.model import CachedResponse, TierSnapshot
from sidecar.core.observer import NullObserver, Observer
from sidecar.core.pending import MAX_PENDING, PendingPurges, retry_until_done
from sidecar.tiers.base import MEASURABLE, SetStatus, Tier, TierSkippedError, WrappedTier

#: Kept purges replayed at once.
CONCURRENCY = 32
RETRY_S = 1.0
KEY = "key"
PREFIX = "prefix"


class ReplayingTier(WrappedTier):
    """Keeps the purges `inner` failed and replays them before it serves again."""

    def __init__(
        self,
        inner: Tier,
        clock: Clock,
        on_overflow: Callable[[], Awaitable[None]],
        *,
        observer: Observer | None = None,
        max_pending: int = MAX_PENDING,
        retry_s: float = RETRY_S,
    ) -> None:
        super().__init__(inner)
        self._on_overflow = on_overflow
        self._retry_s = retry_s
        self._pending: PendingPurges[tuple[str, bytes]] = PendingPurges(
            inner.name, observer or NullObserver(), clock, max_pending
        )
        self._replaying = False
        self._retry: asyncio.Task[None] | None = None

    def pending(self) -> int:
        """Purges kept for replay now."""
        return len(self._pending)

    async def open(self) -> None:
        await self._inner.open()

    async def get(self, key: bytes) -> CachedResponse | None:
        await self._settle()
        return await self._inner.get(key)

    async def set(self, key: bytes, entry: CachedResponse) -> SetStatus:
        await self._settle()
        return await self._inner.set(key, entry)

    async def delete(self, key: bytes) -> bool:
        return bool(await self._purge(KEY, key, self._inner.delete))

    async def delete_prefix(self, prefix: bytes) -> int:
        return int(await self._purge(PREFIX, prefix, self._inner.delete_prefix))

    async def delete_tag(self, tag: str) -> int:
        await self._settle()
        return await self._inner.delete_tag(tag)

    async def sweep(self) -> int:
        await self._settle()
        return await self._inner.sweep()

    async def usage(self) -> int | None:
        """The inner tier's, after replaying kept purges; None, without either, if the
        inner tier is not `MEASURABLE`."""
        if MEASURABLE not in self._inner.capabilities:
            return None
        await self._settle()
        return await self._inner.usage()

    def snapshot(self) -> TierSnapshot:
        return self._inner.snapshot()

    async def close(self) -> None:
        if self._retry is not None:
            self._retry.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._retry
        await self._inner.close()

    # -- kept purges -------------------------------------------------------------------

    async def _purge(
        self, kind: str, target: bytes, call: Callable[[bytes], Awaitable[bool | int]]
    ) -> bool | int:
        """Apply a purge; if it fails, keep it (and raise the failure)."""
        if self._pending:
            # older purges first; if they cannot go, this one waits behind them
            try:
                await self._settle()
            except TierError:
                await self._keep(kind, target)
                raise
        try:
            return await call(target)
        except TierError:
            await self._keep(kind, target)
            raise

    async def _keep(self, kind: str, target: bytes) -> None:
        self._pending.keep((kind, target))
        if self._pending.all_due:
            await self._on_overflow()  # never raises: generations keep it themselves
            self._pending.all_done()
        if self._pending and (self._retry is None or self._retry.done()):
            self._retry = asyncio.get_running_loop().create_task(
                retry_until_done(self._pending, self._replay_quietly, self._retry_s)
            )

    async def _settle(self) -> None:
        """Return when nothing is kept; else replay, raising if that cannot finish now."""
        if not self._pending:
            return
        if self._replaying:
            raise TierSkippedError(self.name, "purges_pending")
        await self._replay()

    async def _replay_quietly(self) -> bool:
        try:
            await self._replay()
        except TierError:
            return False
        return True

    async def _replay(self) -> None:
        """Apply the kept purges, oldest first; raises the first failure (the rest stay)."""
        if self._replaying:
            raise TierSkippedError(self.name, "purges_pending")
        self._replaying = True
        try:
            while self._pending:
                batch = self._pending.items()[:CONCURRENCY]
                results = await asyncio.gather(
                    *(self._apply(kind, target) for kind, target in batch),
                    return_exceptions=True,
                )
                applied = [item for item, r in zip(batch, results, strict=True) if r is None]
                self._pending.done(applied)
                for result in results:
                    if isinstance(result, BaseException):
                        raise result
        finally:
            self._replaying = False

    async def _apply(self, kind: str, target: bytes) -> None:
        if kind == KEY:
            await self._inner.delete(target)
        else:
            await self._inner.delete_prefix(target)
