"""The engine's calls to its tiers: a tier that fails is reported and skipped, never raised.

A `TierError` from a tier becomes `observer.tier_error(tier, operation)` (or
`observer.tier_skipped(tier, reason)` when the call was never made: `TierSkippedError`) and
a miss / nothing stored / nothing dropped. An entry a tier cannot decode, or written in
another format version, is a miss for that call, counted as evicted and deleted from that
tier (best effort).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from sidecar.core.errors import TierError
from sidecar.core.model import FORMAT_VERSION, CachedResponse
from sidecar.core.observer import Observer
from sidecar.tiers.base import SetStatus, Tier, TierSkippedError
from sidecar.tiers.codec import CorruptEntryError

__all__ = ["TierCalls"]

log = logging.getLogger("strata.sidecar.engine")


class TierCalls:
    """Guarded calls to an ordered tuple of tiers (fastest first), by index."""

    def __init__(self, tiers: tuple[Tier, ...], observer: Observer) -> None:
        self.tiers = tiers
        self._observer = observer

    async def get(self, i: int, key: bytes) -> CachedResponse | None:
        tier = self.tiers[i]
        try:
            entry = await tier.get(key)
        except CorruptEntryError as exc:
            await self._drop_corrupt(i, key, exc)
            return None
        except TierError as exc:
            self.failed(tier.name, "get", exc)
            return None
        if entry is not None and entry.format_version != FORMAT_VERSION:
            self._observer.evicted(tier.name, "unknown_format", 1)
            await self.guarded(i, "delete", lambda t: t.delete(key))
            return None
        return entry

    async def set(self, i: int, key: bytes, entry: CachedResponse) -> SetStatus | None:
        """The tier's answer, or None when it failed."""
        tier = self.tiers[i]
        try:
            return await tier.set(key, entry)
        except TierError as exc:
            self.failed(tier.name, "set", exc)
            return None

    async def guarded(
        self, i: int, operation: str, call: Callable[[Tier], Awaitable[int | bool]]
    ) -> int:
        """Run a counting tier operation; a failing tier counts as 0 and is reported."""
        tier = self.tiers[i]
        try:
            return int(await call(tier))
        except TierError as exc:
            self.failed(tier.name, operation, exc)
            return 0

    async def delete_everywhere(self, key: bytes) -> None:
        for i in range(len(self.tiers)):
            await self.guarded(i, "delete", lambda t: t.delete(key))

    async def sweep(self) -> int:
        dropped = 0
        for tier in self.tiers:
            try:
                dropped += await tier.sweep()
            except TierError as exc:
                self.failed(tier.name, "sweep", exc)
        return dropped

    def failed(self, tier: str, operation: str, exc: TierError) -> None:
        """Report a tier call that raised: a skip if it was never made (circuit open, no
        time left, ...: `TierSkippedError`), else an error."""
        if isinstance(exc, TierSkippedError):
            self._observer.tier_skipped(tier, exc.reason)
        else:
            self._observer.tier_error(tier, operation)

    async def _drop_corrupt(self, i: int, key: bytes, exc: CorruptEntryError) -> None:
        """A tier raised `CorruptEntryError` for `key` (tiers that can should answer a miss
        themselves): a miss for this call only, logged, counted as evicted(tier,
        "corrupt") and deleted from that tier (best effort)."""
        tier = self.tiers[i]
        log.warning(
            "unreadable entry dropped; answered as a miss",
            extra={
                "event.action": "corrupt_entry",
                "strata.tier": tier.name,
                "error.message": str(exc),
            },
        )
        self._observer.evicted(tier.name, "corrupt", 1)
        try:
            await tier.delete(key)
        except CorruptEntryError:
            pass  # nothing more to do; the next reader tries again
        except TierError as error:
            self.failed(tier.name, "delete", error)
