"""The outbox: events waiting to be produced to Kafka, bounded in count and in bytes.

Pure bookkeeping, one owner (the event loop; no locks, no I/O, no clock). `put` appends an
event and, when the bounds are exceeded, drops the OLDEST events that are not being sent
(see `Outbox.put` for why the oldest); `take` lends the sender a batch from the front, and
`settle` gives back what was not delivered, at the front and in its original order, so a
broker that is down keeps events queued in publish order until it answers again.

Counters (`OutboxStats`) say what was queued, sent and dropped; the caller logs a dropped
event (`describe` gives the text, value truncated).

Not guaranteed: that an event is produced exactly once (one handed to the producer, then
reported failed, may still have reached the broker and is sent again: consumers apply events
idempotently); that anything survives the process (memory only); order across a `put` that
drops events (what was dropped is gone).
"""

from __future__ import annotations

import dataclasses
import itertools
from collections import deque
from collections.abc import Sequence

Headers = tuple[tuple[str, bytes], ...]

#: Bytes an event costs beyond its key, value and headers (a rough per-record overhead, so
#: that many empty events cannot escape the byte bound).
RECORD_OVERHEAD = 64


@dataclasses.dataclass(frozen=True, slots=True)
class OutMessage:
    """One event to produce: where, with which key, value and headers; `seq` orders them."""

    seq: int
    topic: str
    key: bytes | None
    value: bytes
    headers: Headers = ()

    @property
    def size(self) -> int:
        """The bytes this message counts against the outbox's byte bound."""
        head = sum(len(k) + len(v) for k, v in self.headers)
        return len(self.value) + len(self.key or b"") + head + RECORD_OVERHEAD


@dataclasses.dataclass(slots=True)
class OutboxStats:
    """Counters of an outbox since it was made (`queued`, `queued_bytes`: right now)."""

    queued: int = 0
    queued_bytes: int = 0
    enqueued: int = 0
    sent: int = 0
    dropped: int = 0
    send_failures: int = 0


def describe(message: OutMessage, limit: int) -> str:
    """The message for a log line: topic, key and value, each truncated to `limit` bytes and
    escaped (never raises, never prints control characters raw)."""

    def cut(raw: bytes | None) -> str:
        if raw is None:
            return "None"
        text = repr(raw[:limit])
        return text + (f"...(+{len(raw) - limit} bytes)" if len(raw) > limit else "")

    return f"topic={message.topic} key={cut(message.key)} value={cut(message.value)}"


class Outbox:
    """Events not yet delivered, oldest first; at most `max_events` and `max_bytes`."""

    def __init__(self, max_events: int, max_bytes: int) -> None:
        if max_events < 1 or max_bytes < 1:
            raise ValueError("an outbox needs room for at least one event and one byte")
        self._max_events = max_events
        self._max_bytes = max_bytes
        self._waiting: deque[OutMessage] = deque()
        self._lent: list[OutMessage] = []
        self._seq = itertools.count()
        self.stats = OutboxStats()

    def __len__(self) -> int:
        """Events not yet delivered: waiting plus lent to the sender."""
        return len(self._waiting) + len(self._lent)

    @property
    def waiting(self) -> int:
        """Events waiting to be lent to the sender."""
        return len(self._waiting)

    def make(self, topic: str, key: bytes | None, value: bytes, headers: Headers) -> OutMessage:
        """A message numbered after every earlier one."""
        return OutMessage(next(self._seq), topic, key, value, headers)

    def put(self, message: OutMessage) -> list[OutMessage]:
        """Queue `message`; return the messages dropped to stay within the bounds.

        Overflow drops the OLDEST waiting messages: an old purge's stale entries are the ones
        closest to their TTL (which bounds staleness anyway), and the newest purges describe
        the newest writes. Messages lent to the sender are never dropped (they may be on the
        wire); when they alone leave no room, or `message` alone exceeds `max_bytes`,
        `message` itself is dropped.
        """
        if message.size > self._max_bytes:
            self._count_dropped(1)
            return [message]
        self._waiting.append(message)
        self._add(message, +1)
        dropped: list[OutMessage] = []
        while self._over() and self._waiting:
            oldest = self._waiting.popleft()
            self._add(oldest, -1)
            dropped.append(oldest)
        self.stats.enqueued += 1
        self._count_dropped(len(dropped))
        return dropped

    def take(self, limit: int) -> list[OutMessage]:
        """Lend the sender up to `limit` messages from the front (none while a batch is out)."""
        if self._lent:
            return []
        while self._waiting and len(self._lent) < limit:
            self._lent.append(self._waiting.popleft())
        return list(self._lent)

    def settle(self, failed: Sequence[OutMessage]) -> None:
        """The lent batch came back: `failed` (a subset of it) was not delivered and goes
        back to the front in order; the rest counts as sent."""
        lent, self._lent = self._lent, []
        failed_seqs = {m.seq for m in failed}
        again = [m for m in lent if m.seq in failed_seqs]
        self._waiting.extendleft(reversed(again))
        for message in lent:
            if message.seq not in failed_seqs:
                self._add(message, -1)
        self.stats.sent += len(lent) - len(again)
        self.stats.send_failures += len(again)

    def discard(self) -> list[OutMessage]:
        """Empty the outbox (at close): every message lent or waiting, oldest first. They
        count as dropped."""
        left = sorted([*self._lent, *self._waiting], key=lambda m: m.seq)
        self._lent, self._waiting = [], deque()
        self.stats.queued = self.stats.queued_bytes = 0
        self._count_dropped(len(left))
        return left

    def _over(self) -> bool:
        return self.stats.queued > self._max_events or self.stats.queued_bytes > self._max_bytes

    def _add(self, message: OutMessage, sign: int) -> None:
        self.stats.queued += sign
        self.stats.queued_bytes += sign * message.size

    def _count_dropped(self, count: int) -> None:
        self.stats.dropped += count
