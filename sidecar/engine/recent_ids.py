"""`RecentIds`: the last few event ids a process applied, to apply each at most once.

A bounded insertion-ordered set: adding beyond `max_ids` forgets the oldest id. So an id is
recognised only while it is among the last `max_ids` added; an older one is new again.
That is the bound on "at most once" wherever this is used: a purge applied twice costs one
extra miss per entry it reaches, never a stale answer. Not thread-safe (one event loop).
"""

from __future__ import annotations

__all__ = ["MAX_RECENT_IDS", "RecentIds"]

#: Ids remembered by default: ~200 bytes each (an id of up to 128 characters and its dict
#: slot), so ~2 MiB at most; at 1000 purge events a second, the last 10 s.
MAX_RECENT_IDS = 10_000


class RecentIds:
    """The last `max_ids` ids added (see the module doc)."""

    def __init__(self, max_ids: int = MAX_RECENT_IDS) -> None:
        if max_ids <= 0:
            raise ValueError("max_ids must be positive")
        self._max = max_ids
        self._ids: dict[str, None] = {}

    def __len__(self) -> int:
        return len(self._ids)

    def __contains__(self, event_id: object) -> bool:
        return event_id in self._ids

    def add(self, event_id: str) -> bool:
        """Remember `event_id`; whether it was new (not among the last `max_ids`)."""
        if event_id in self._ids:
            return False
        self._ids[event_id] = None
        if len(self._ids) > self._max:
            del self._ids[next(iter(self._ids))]
        return True
