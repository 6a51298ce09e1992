"""Node-local generation records that expire: tag -> (value, expires_at_ms).

Used by `LocalGenerations` (the records themselves) and by `RedisGenerations` (what this
node last knew of the records in Redis, answered from while Redis is away). A record is
dropped once its `expires_at_ms` (wall-clock Unix ms, as entries carry) has passed, and,
beyond `max_records`, the one expiring first is dropped early.

Dropping a record early is always safe for the engine: stamps are never 0 (see
`sidecar.engine.generations`), so an entry whose record is gone compares as purged (one extra
miss), never as current. Dropping late only costs memory.

Cost: `get` O(1); `put` O(log n) when the expiry moves; `prune` O(log n) per expired
record. Expiries are kept in a heap with lazy deletion, rebuilt when it holds more than
twice the live records (amortised O(log n) per `put`). Not thread-safe (one event loop).
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass

#: Rebuild the expiry heap when it holds more stale items than this beyond 2 x records.
_HEAP_SLACK = 1024


@dataclass(slots=True)
class Record:
    """One generation: its `value` (a nonce, never 0) and when it may be forgotten.
    `fresh_until` is for callers that cache a shared value (monotonic seconds). `soft`:
    the values soft purges replaced, newest first, each with when it was replaced
    (``(value, at_ms)``; `sidecar.engine.generations`); a hard purge empties it."""

    value: int
    expires_at_ms: int
    fresh_until: float = float("-inf")
    soft: tuple[tuple[int, int], ...] = ()


class GenerationTable:
    """Records by tag, forgotten after their expiry (see the module doc)."""

    def __init__(self, max_records: int = 1_000_000) -> None:
        if max_records <= 0:
            raise ValueError("max_records must be positive")
        self._max = max_records
        self._records: dict[str, Record] = {}
        self._heap: list[tuple[int, str]] = []

    def __len__(self) -> int:
        return len(self._records)

    def get(self, tag: str, now_ms: int) -> Record | None:
        """The live record of `tag`, or None (absent or expired: expired ones are dropped)."""
        record = self._records.get(tag)
        if record is not None and record.expires_at_ms <= now_ms:
            del self._records[tag]
            return None
        return record

    def put(self, tag: str, record: Record) -> None:
        """Set the record of `tag` (replacing any); drop the earliest ones beyond the cap."""
        old = self._records.get(tag)
        self._records[tag] = record
        if old is None or old.expires_at_ms != record.expires_at_ms:
            self._push(tag, record.expires_at_ms)
        while len(self._records) > self._max:
            self._pop_earliest()

    def extend(self, tag: str, record: Record, expires_at_ms: int) -> None:
        """Make `record` (the live record of `tag`) last at least until `expires_at_ms`."""
        if record.expires_at_ms < expires_at_ms:
            record.expires_at_ms = expires_at_ms
            self._push(tag, expires_at_ms)

    def discard(self, tag: str) -> None:
        self._records.pop(tag, None)

    def prune(self, now_ms: int) -> int:
        """Drop every record expired at `now_ms`; how many were dropped."""
        dropped = 0
        heap, records = self._heap, self._records
        while heap and heap[0][0] <= now_ms:
            expires, tag = heapq.heappop(heap)
            record = records.get(tag)
            if record is not None and record.expires_at_ms == expires:
                del records[tag]
                dropped += 1
        return dropped

    def _push(self, tag: str, expires_at_ms: int) -> None:
        heapq.heappush(self._heap, (expires_at_ms, tag))
        if len(self._heap) > 2 * len(self._records) + _HEAP_SLACK:
            self._heap = [(r.expires_at_ms, t) for t, r in self._records.items()]
            heapq.heapify(self._heap)

    def _pop_earliest(self) -> None:
        while self._heap:
            expires, tag = heapq.heappop(self._heap)
            record = self._records.get(tag)
            if record is not None and record.expires_at_ms == expires:
                del self._records[tag]
                return
        self._records.pop(next(iter(self._records)))  # unreachable while the heap is kept
