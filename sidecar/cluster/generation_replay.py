"""`KeptPurges`: purges of `RedisGenerations` records made while Redis could not be reached,
kept (bounded: `sidecar.core.pending`) and replayed to Redis before this node reads it
again, or by a background retry every `retry_after_s`. Beyond `max_pending` the kept
purges are replaced by one hard epoch bump (every entry stored before it is then purged).

A kept purge is ``(name, soft)``: a tag (or the epoch, ``""``) and whether it was soft. A
soft and a hard purge of one tag are both kept and replayed in the order first kept (the
hard one then wins, or the soft one replayed after it stales entries a hard one would have
purged again... never the other way round: nothing purged reads as fresh).

What is NOT guaranteed: that kept purges survive a restart of this sidecar; the event ids
of once-purges (a replay claims none: `sidecar.cluster.generations`).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Sequence

from sidecar.core.pending import PendingPurges, retry_until_done
from sidecar.engine.generations import EPOCH
from sidecar.tiers.redis_conn import DRIVER_ERRORS

__all__ = ["Kept", "KeptPurges"]

#: A kept purge: the record's name and whether the purge was soft.
Kept = tuple[str, bool]
#: Kept purges per round trip when replaying.
BATCH = 500


class KeptPurges:
    """See the module doc. `apply` sends one batch to Redis (raising a driver error when it
    cannot); `failed` reports such an error; `is_down` says whether Redis may be asked."""

    def __init__(
        self,
        pending: PendingPurges[Kept],
        apply: Callable[[Sequence[Kept]], Awaitable[None]],
        failed: Callable[[str, BaseException], object],
        is_down: Callable[[], bool],
        retry_after_s: float,
    ) -> None:
        self._pending = pending
        self._apply = apply
        self._failed = failed
        self._is_down = is_down
        self._retry_after_s = retry_after_s
        self._replaying = False
        self._retry: asyncio.Task[None] | None = None

    def __len__(self) -> int:
        """Purges kept (1 for a due epoch bump)."""
        return len(self._pending) + int(self._pending.all_due)

    def keep(self, name: str, soft: bool) -> bool:
        """Keep a purge and make sure a retry runs; whether the kept purges overflowed
        into one epoch bump (the caller then bumps its own view of the epoch)."""
        if name == EPOCH and not soft:
            self._pending.keep_all()
        else:
            self._pending.keep((name, soft))
        if self._retry is None or self._retry.done():
            self._retry = asyncio.get_running_loop().create_task(
                retry_until_done(self._pending, self._replay_when_up, self._retry_after_s)
            )
        return self._pending.all_due

    async def replayed(self) -> bool:
        """Whether nothing is kept any more (replaying now if needed). False while another
        call replays: answer locally meanwhile."""
        if not self._pending:
            return True
        if self._replaying:
            return False
        return await self.replay()

    async def replay(self) -> bool:
        """Apply the kept purges (the epoch first); whether all were applied."""
        if self._replaying or not self._pending:
            return not self._pending
        self._replaying = True
        try:
            if self._pending.all_due:
                await self._apply([(EPOCH, False)])
                self._pending.all_done()
            while self._pending:
                batch = self._pending.items()[:BATCH]
                await self._apply(batch)
                self._pending.done(batch)
            return True
        except DRIVER_ERRORS as exc:
            self._failed("replay", exc)
            return False
        finally:
            self._replaying = False

    async def close(self) -> None:
        """Stop the background retry (kept purges are lost)."""
        if self._retry is not None:
            self._retry.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._retry

    async def _replay_when_up(self) -> bool:
        return not self._is_down() and await self.replay()
