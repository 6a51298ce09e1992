"""Publishing analytics events to Kafka: a librdkafka producer of their own, its queue the
one bounded queue, a thread serving its delivery reports.

Why not the invalidation bus's producer (`sidecar.cluster.kafka_producer`): that one is
idempotent (acks=all), sends one small batch at a time with ``linger.ms`` 0 and waits for
each batch (``flush``) so that the outbox can keep an undelivered purge and send it again in
order; analytics wants the opposite -- large batches (``linger.ms``), no waiting, and loss
over growth. Sharing one producer would make every purge wait behind analytics batches.

`KafkaPublisher.publish` never blocks: it hands the message to librdkafka, whose queue holds
at most ``queue_max_events`` messages and ``queue_max_events`` KiB (queued and in flight
together); a full queue refuses the message at once (``queue-full``). A message librdkafka
could not deliver within ``message_timeout_ms`` (the broker is down, the topic is missing)
is dropped and counted (``broker-unavailable``); so is one still queued when the publisher
closes. Drops are logged at WARNING at most once a minute, with the counts.

Not guaranteed: delivery (acks=1, no retries across the timeout: an event acknowledged by a
leader that then fails is lost); order across partitions; that a message reported failed
did not reach the broker.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import threading
import time
from collections import Counter
from collections.abc import Mapping

from confluent_kafka import KafkaError, KafkaException, Message, Producer

from sidecar.analytics.service import PublisherStats
from sidecar.cluster.kafka_logs import CLIENT_LOG
from sidecar.core.backoff import LogLimit

__all__ = ["KafkaPublisher", "PublisherSettings", "producer_conf"]

log = logging.getLogger("strata.sidecar.analytics")

#: How long the delivery-report thread waits for reports per poll.
_POLL_S = 0.2
#: Least time between two warnings about dropped events.
WARN_INTERVAL_S = 60.0


@dataclasses.dataclass(frozen=True, slots=True)
class PublisherSettings:
    bootstrap: str
    topic: str
    queue_max_events: int = 50_000
    linger_ms: int = 100
    message_timeout_ms: int = 10_000
    #: Extra librdkafka settings (security, for instance), applied last.
    options: Mapping[str, str] = dataclasses.field(default_factory=dict)


def producer_conf(settings: PublisherSettings, on_error: object) -> dict[str, object]:
    """librdkafka settings of the analytics producer (`settings.options` last)."""
    conf: dict[str, object] = {
        "bootstrap.servers": settings.bootstrap,
        "acks": 1,
        "enable.idempotence": False,
        "linger.ms": settings.linger_ms,
        "batch.num.messages": 10_000,
        "queue.buffering.max.messages": settings.queue_max_events,
        "queue.buffering.max.kbytes": settings.queue_max_events,  # 1 KiB per event
        "message.timeout.ms": settings.message_timeout_ms,
        "allow.auto.create.topics": False,
        "reconnect.backoff.ms": 100,
        "reconnect.backoff.max.ms": 5000,
        "error_cb": on_error,
        "logger": CLIENT_LOG,
    }
    conf.update(settings.options)
    return conf


class KafkaPublisher:
    """One producer for the analytics topic. `publish` from one thread (the event loop);
    `stats` from any; the delivery reports run on the publisher's own thread."""

    def __init__(self, settings: PublisherSettings) -> None:
        self._settings = settings
        self._lock = threading.Lock()
        self._published = 0
        self._dropped: Counter[str] = Counter()
        self._log_limit = LogLimit(WARN_INTERVAL_S)
        self._error_limit = LogLimit(WARN_INTERVAL_S)
        self._closed = threading.Event()
        self._producer = Producer(producer_conf(settings, self._on_error))
        self._thread = threading.Thread(
            target=self._poll_forever, name="strata-analytics-producer", daemon=True
        )
        self._thread.start()

    enabled = True

    @property
    def topic(self) -> str:
        return self._settings.topic

    def publish(self, key: bytes | None, value: bytes) -> bool:
        """Queue one message (never blocks); False when it was dropped (queue full, or
        closed), counted as ``queue-full``."""
        if self._closed.is_set():
            self._drop("queue-full", 1)
            return False
        try:
            self._producer.produce(
                self._settings.topic, value=value, key=key, on_delivery=self._delivered
            )
        except (BufferError, KafkaException):
            self._drop("queue-full", 1)
            return False
        return True

    def stats(self) -> PublisherStats:
        queued = len(self._producer)
        with self._lock:
            return PublisherStats(self._published, dict(self._dropped), queued)

    def close(self, timeout_s: float) -> int:
        """Send what is queued for at most `timeout_s`, then drop the rest (counted as
        ``broker-unavailable``) and stop; the number dropped."""
        self._closed.set()
        left = 0
        with contextlib.suppress(KafkaException):
            left = self._producer.flush(max(0.0, timeout_s))
            if left:
                self._producer.purge()
                self._producer.flush(0.5)  # serves the purged messages' reports
        self._thread.join(2 * _POLL_S + 1.0)
        return int(left)

    # -- librdkafka's threads and ours ----------------------------------------------

    def _poll_forever(self) -> None:
        while not self._closed.is_set():
            try:
                self._producer.poll(_POLL_S)
            except Exception:  # a callback bug must not end the reports
                log.exception("analytics delivery report failed")

    def _delivered(self, error: KafkaError | None, _message: Message) -> None:
        if error is None:
            with self._lock:
                self._published += 1
        else:
            self._drop("broker-unavailable", 1, str(error))

    def _on_error(self, error: KafkaError) -> None:
        with self._lock:
            held = self._error_limit.take(time.monotonic())
        if held is not None:
            log.warning(
                f"analytics producer: {error}",
                extra={"event.action": "analytics-producer-error", "strata.suppressed": held},
            )

    def _drop(self, reason: str, count: int, why: str = "") -> None:
        with self._lock:
            self._dropped[reason] += count
            held = self._log_limit.take(time.monotonic())
            totals = dict(self._dropped)
        if held is not None:
            log.warning(
                "analytics events dropped (%s%s); since start: %s",
                reason,
                f": {why}" if why else "",
                ", ".join(f"{k} {v}" for k, v in sorted(totals.items())),
                extra={
                    "event.action": "analytics-events-dropped",
                    "event.reason": reason,
                    "strata.suppressed": held,
                },
            )
