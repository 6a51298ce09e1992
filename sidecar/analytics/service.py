"""What the sidecar does with a plugin's ``ReportAccess`` batch: check each event, stamp it
with this node's id, and queue it for the analytics topic.

`Analytics.report` answers at once (it never waits on the broker): ``accepted`` events went
to the publisher's bounded queue, ``rejected`` ones failed `sidecar.analytics.event.check`
(counted ``invalid``, logged with the field at most once a minute), ``dropped`` ones found
the queue full. With analytics off (`OFF`: no ``kafka_bootstrap`` or no
``analytics_topic``) nothing is taken: the answer says ``disabled`` and when to try again
(`RETRY_AFTER_MS`), and the events count as dropped (``disabled``). The event loop is given
back every `CHUNK_EVENTS` events, so a large batch does not hold other clients' calls, and
at most `max_events_per_second` events are checked and queued per second (a token bucket
holding one second's worth): the rest of a batch is dropped unread (``rate-limited``,
answered as ``dropped``), so analytics takes a bounded share of the sidecar's CPU whatever a
client sends.

Counters (`stats`, one metric each): events received, published (acknowledged by the
broker), dropped by reason (``invalid``, ``disabled``, ``rate-limited``, ``queue-full``,
``broker-unavailable``), queued now. Eventually ``received == published + sum(dropped)``.

Not guaranteed: anything beyond what the publisher guarantees (`sidecar.analytics.producer`:
at most once); how many events a batch may hold is the gRPC layer's business
(`sidecar.rpc.bounds.RpcLimits.max_report_events`).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections import Counter
from collections.abc import Callable, Mapping
from typing import Protocol

from strata.v1 import cache_pb2 as _pb

from sidecar.analytics.event import check, encode
from sidecar.core.backoff import LogLimit

__all__ = [
    "DROP_REASONS",
    "OFF",
    "Analytics",
    "AnalyticsStats",
    "Publisher",
    "PublisherStats",
]

log = logging.getLogger("strata.sidecar.analytics")

#: How long a plugin should wait before sending to a sidecar whose analytics is off.
RETRY_AFTER_MS = 60_000
#: Events checked and queued between two yields to the event loop.
CHUNK_EVENTS = 64
#: Least time between two log lines about invalid events.
LOG_INTERVAL_S = 60.0
DROP_REASONS = ("invalid", "disabled", "rate-limited", "queue-full", "broker-unavailable")
#: Events checked and queued per second at most, by default (the setting
#: ``analytics_max_events_per_second``).
MAX_EVENTS_PER_SECOND = 20_000


@dataclasses.dataclass(frozen=True, slots=True)
class PublisherStats:
    """Since start: `published` (acknowledged by the broker), `dropped` by reason
    (``queue-full``, ``broker-unavailable``); `queued`: held for the broker now."""

    published: int
    dropped: Mapping[str, int]
    queued: int


class Publisher(Protocol):
    """Where checked events go (`sidecar.analytics.producer.KafkaPublisher`)."""

    @property
    def enabled(self) -> bool: ...
    def publish(self, key: bytes | None, value: bytes) -> bool: ...
    def stats(self) -> PublisherStats: ...


class _Off:
    """Analytics off: takes nothing, publishes nothing."""

    enabled = False

    def publish(self, key: bytes | None, value: bytes) -> bool:
        return False

    def stats(self) -> PublisherStats:
        return PublisherStats(0, {}, 0)


#: The publisher of a sidecar without analytics.
OFF: Publisher = _Off()


@dataclasses.dataclass(frozen=True, slots=True)
class AnalyticsStats:
    """Since start (`queued`: now). `dropped` has every reason of `DROP_REASONS`."""

    received: int
    published: int
    dropped: Mapping[str, int]
    queued: int


class Analytics:
    """The ``ReportAccess`` handler's logic for one sidecar (use from its event loop)."""

    def __init__(
        self,
        node_id: str,
        publisher: Publisher = OFF,
        clock: Callable[[], float] = time.time,
        max_events_per_second: int = MAX_EVENTS_PER_SECOND,
        ticker: Callable[[], float] = time.monotonic,
    ) -> None:
        self.node_id = node_id
        self._publisher = publisher
        self._clock = clock
        self._ticker = ticker
        self._rate = float(max_events_per_second)
        self._tokens = self._rate
        self._filled_at = ticker()
        self._received = 0
        self._dropped: Counter[str] = Counter()
        self._log_limit = LogLimit(LOG_INTERVAL_S)
        self._limit_log = LogLimit(LOG_INTERVAL_S)

    @property
    def enabled(self) -> bool:
        return self._publisher.enabled

    async def report(self, batch: _pb.AccessBatch) -> _pb.AccessAck:
        """Check and queue every event of `batch` (see the module docstring)."""
        events = batch.events
        self._received += len(events)
        if not self._publisher.enabled:
            self._dropped["disabled"] += len(events)
            return _pb.AccessAck(disabled=True, retry_after_ms=RETRY_AFTER_MS)
        now_ms = int(self._clock() * 1000)
        allowed = self._take(len(events))
        limited = len(events) - allowed
        accepted = rejected = dropped = 0
        for i, event in enumerate(events[:allowed] if limited else events):
            if i and i % CHUNK_EVENTS == 0:
                await asyncio.sleep(0)
            invalid = check(event, now_ms)
            if invalid is not None:
                rejected += 1
                self._log_invalid(invalid.field, invalid.problem)
                continue
            key, value = encode(event, self.node_id)
            if self._publisher.publish(key, value):
                accepted += 1
            else:
                dropped += 1  # the publisher counted it (queue-full)
        self._dropped["invalid"] += rejected
        if limited:
            self._dropped["rate-limited"] += limited
            self._log_limited(limited)
        return _pb.AccessAck(accepted=accepted, rejected=rejected, dropped=dropped + limited)

    def _take(self, wanted: int) -> int:
        """How many of `wanted` events the rate budget lets through now (taken from it)."""
        now = self._ticker()
        self._tokens = min(self._rate, self._tokens + (now - self._filled_at) * self._rate)
        self._filled_at = now
        allowed = min(wanted, int(self._tokens))
        self._tokens -= allowed
        return allowed

    def _log_limited(self, count: int) -> None:
        held = self._limit_log.take(time.monotonic())
        if held is not None:
            log.warning(
                f"analytics events dropped: more than {int(self._rate)} a second reported "
                f"({count} in this batch)",
                extra={"event.action": "analytics-rate-limited", "event.reason": "rate-limited"},
            )

    def stats(self) -> AnalyticsStats:
        published = self._publisher.stats()
        dropped = {reason: self._dropped[reason] for reason in DROP_REASONS}
        for reason, count in published.dropped.items():
            dropped[reason] = dropped.get(reason, 0) + count
        return AnalyticsStats(self._received, published.published, dropped, published.queued)

    def _log_invalid(self, field: str, problem: str) -> None:
        held = self._log_limit.take(time.monotonic())
        if held is not None:
            log.warning(
                f"analytics event refused: {field} {problem}",
                extra={
                    "event.action": "analytics-event-invalid",
                    "event.reason": "invalid",
                    "strata.field": field,
                    "strata.suppressed": held,
                },
            )
