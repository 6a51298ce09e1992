"""Purges that could not reach a shared store, kept until they can (bounded, counted).

`PendingPurges` is an ordered set of purges (a key, a prefix, a tag: whatever the owner
replays) for one store, with a cap. Adding to a full set does not drop anything silently:
the set is cleared and marked `all_due`, and its owner must then apply a purge that
covers everything (a namespace-wide generation bump) instead of the individual ones. Every
event is reported to the observer (`strata_deferred_purges_total{tier,event}` with event
``kept``, ``replayed`` or ``overflow``; `strata_pending_purges{tier}` is the current size)
and an overflow is logged (WARNING, at most once per `LOG_EVERY_S`).

`retry_until_done` is the background loop that replays while anything is pending, so an
idle sidecar replays too. Nothing here does I/O itself.

What is NOT guaranteed: survival of pending purges across a restart of the sidecar (they
live in its memory; purge again after a crash during an outage), or ordering between a
replayed purge and a store made by another sidecar after the original purge (the replay
may drop that newer entry too: one extra miss, never a stale answer).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Hashable, Iterable
from typing import Generic, TypeVar

from sidecar.core.clock import Clock
from sidecar.core.observer import Observer

log = logging.getLogger("strata.sidecar.purges")

#: Default cap on purges kept per store.
MAX_PENDING = 10_000
LOG_EVERY_S = 10.0

T = TypeVar("T", bound=Hashable)


class PendingPurges(Generic[T]):
    """Purges kept for one store (`label`, also the metric label). See the module doc."""

    def __init__(
        self, label: str, observer: Observer, clock: Clock, max_pending: int = MAX_PENDING
    ) -> None:
        if max_pending <= 0:
            raise ValueError("max_pending must be positive")
        self._label = label
        self._observer = observer
        self._clock = clock
        self._max = max_pending
        self._items: dict[T, None] = {}
        self.all_due = False
        self._last_log = float("-inf")

    def __bool__(self) -> bool:
        return self.all_due or bool(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def items(self) -> list[T]:
        """The kept purges, oldest first (a copy)."""
        return list(self._items)

    def keep(self, item: T) -> None:
        """Keep `item`; when the cap is reached, clear everything and mark `all_due`."""
        if self.all_due:
            return  # a namespace-wide purge is already due: it covers this one
        if item not in self._items and len(self._items) >= self._max:
            dropped = len(self._items) + 1
            self._items.clear()
            self.all_due = True
            self._observer.deferred_purges(self._label, "overflow", dropped)
            now = self._clock.monotonic()
            if now - self._last_log >= LOG_EVERY_S:
                self._last_log = now
                log.warning(
                    "too many purges waiting for a store that cannot be reached; every "
                    "entry stored before now will be treated as purged instead",
                    extra={
                        "event.action": "purges_overflow",
                        "strata.tier": self._label,
                        "strata.pending": dropped,
                    },
                )
        else:
            self._items[item] = None
            self._observer.deferred_purges(self._label, "kept", 1)
        self._report()

    def keep_all(self) -> None:
        """A namespace-wide purge is due (asked for, or replacing an overflowed set): it
        covers every kept purge, which are dropped."""
        if not self.all_due:
            self._items.clear()
            self.all_due = True
            self._observer.deferred_purges(self._label, "kept", 1)
        self._report()

    def done(self, items: Iterable[T]) -> None:
        """Forget `items` (replayed)."""
        count = 0
        for item in items:
            if item in self._items:
                del self._items[item]
                count += 1
        if count:
            self._observer.deferred_purges(self._label, "replayed", count)
        self._report()

    def all_done(self) -> None:
        """The namespace-wide purge that replaces an all_due set has been applied."""
        if self.all_due:
            self.all_due = False
            self._observer.deferred_purges(self._label, "replayed", 1)
        self._report()

    def _report(self) -> None:
        self._observer.pending_purges(self._label, len(self._items) + int(self.all_due))


async def retry_until_done(
    pending: PendingPurges[T], replay: Callable[[], Awaitable[bool]], every_s: float
) -> None:
    """Call `replay` every `every_s` seconds while `pending` holds anything; stop when it
    is empty. `replay` reports its own failures and returns whether it finished."""
    while pending:
        await asyncio.sleep(every_s)
        if pending:
            try:
                await replay()
            except Exception:  # a bug must not kill the loop silently
                log.exception("purge replay failed")
