"""Delivering events to Kafka and waiting until every one was acknowledged.

`Publisher.deliver` produces a batch with the sidecar's idempotent producer
(`sidecar.cluster.kafka_producer.BatchProducer`: acks=all, in order) and blocks until the
broker acknowledged all of it. What was not delivered is sent again, in order, after a
wait that starts at ``retry_interval_s`` and doubles after each failed attempt up to
``max_retry_interval_s``, until it is delivered or `stop` is set: a broker that is down
keeps the caller waiting (its position unmoved), never loses an event. With ``give_up_s``
(``--once``), `BrokerUnavailableError` is raised instead once the batch has not been delivered
for that long (the caller's position is still unmoved). The topic is created
(``partitions``) when it is missing, at the first delivery and after each failure; a
failure of that check (broker unreachable, a timeout, anything) is logged, at most one line
per 5 s, and never raised: the delivery attempt says whether the broker is there.

An attempt in flight is never cut short by `stop` (a SIGTERM finishes the batch it
interrupted, for at most ``send_timeout_s``); `stop` ends the waiting between attempts.

Not guaranteed: no duplicate (a batch reported failed may have reached the broker, and is
sent again: the sidecars dedupe by event id).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import threading
import time
from collections.abc import Mapping, Sequence

from confluent_kafka import KafkaException

from sidecar.cluster.kafka_bus import ensure_topic
from sidecar.cluster.kafka_outbox import Headers, OutMessage
from sidecar.cluster.kafka_producer import BatchProducer, ProducerSettings
from sidecar.core.backoff import LogLimit

__all__ = ["BrokerUnavailableError", "Outgoing", "Publisher", "PublisherConfig"]

log = logging.getLogger("strata.cdc.publish")


@dataclasses.dataclass(frozen=True, slots=True)
class Outgoing:
    """One message to deliver (an event, or a copy for the dead-letter topic)."""

    topic: str
    key: bytes | None
    value: bytes
    headers: Headers = ()


class BrokerUnavailableError(RuntimeError):
    """A batch was not delivered within ``give_up_s`` (nothing of it may be assumed sent)."""


@dataclasses.dataclass(frozen=True, slots=True)
class PublisherConfig:
    bootstrap: str
    topic: str
    partitions: int = 1
    send_timeout_s: float = 5.0
    retry_interval_s: float = 1.0
    max_retry_interval_s: float = 10.0
    #: Raise `BrokerUnavailableError` when a batch is still undelivered after this long.
    give_up_s: float | None = None
    options: Mapping[str, str] = dataclasses.field(default_factory=dict)


class Publisher:
    """Blocking delivery of batches; one thread at a time."""

    def __init__(self, config: PublisherConfig) -> None:
        self._config = config
        self._settings = ProducerSettings(config.bootstrap, config.send_timeout_s, config.options)
        self._producer = BatchProducer(self._settings)
        self._topic_checked = False
        self._never = threading.Event()
        self._seq = 0
        self.delivered = 0
        self.failed_attempts = 0
        self._topic_log = LogLimit(5.0)

    def _ensure_topic(self) -> None:
        """Create the topic when missing; never raises (the broker may be away)."""
        try:
            ensure_topic(
                self._config.bootstrap,
                self._config.topic,
                self._config.partitions,
                timeout=min(5.0, self._config.send_timeout_s),
            )
            self._topic_checked = True
        except Exception as exc:  # TimeoutError, KafkaException, ...: retried
            held = self._topic_log.take(time.monotonic())
            if held is not None:
                log.warning(
                    f"cannot check topic {self._config.topic} on {self._config.bootstrap}: "
                    f"{type(exc).__name__}: {exc or 'no answer'}"
                    + (f" ({held} similar lines held back)" if held else ""),
                    extra={"event.action": "cdc-topic-check-failed", "strata.suppressed": held},
                )

    def retry_wait_s(self, failures: int) -> float:
        """The wait after `failures` failed attempts in a row (>= 1)."""
        first = self._config.retry_interval_s
        cap = max(first, self._config.max_retry_interval_s)
        return min(cap, first * 2.0 ** min(failures - 1, 30))

    def deliver(self, batch: Sequence[Outgoing], stop: threading.Event) -> bool:
        """Whether every message of `batch` was delivered (False only when `stop` was set
        before they all were). `BrokerUnavailableError` after ``give_up_s`` when configured."""
        if not self._topic_checked:
            self._ensure_topic()
        started = time.monotonic()
        failures = 0
        pending = []
        for item in batch:
            self._seq += 1
            pending.append(OutMessage(self._seq, item.topic, item.key, item.value, item.headers))
        while pending:
            failed = self._send(pending)
            self.delivered += len(pending) - len(failed)
            if not failed:
                return True
            self.failed_attempts += 1
            failures += 1
            pending = failed
            give_up = self._config.give_up_s
            if give_up is not None and time.monotonic() - started >= give_up:
                raise BrokerUnavailableError(
                    f"{len(failed)} of {len(batch)} messages not delivered to "
                    f"{self._config.bootstrap} within {give_up:g} s (position not moved)"
                )
            wait = self.retry_wait_s(failures)
            log.warning(
                f"{len(failed)} of {len(batch)} messages not delivered; retrying in "
                f"{wait:g} s (the source position is kept)",
                extra={"event.action": "cdc-deliver-retry", "strata.count": len(failed)},
            )
            if stop.wait(wait):
                return False
            self._ensure_topic()
        return True

    def _send(self, pending: list[OutMessage]) -> list[OutMessage]:
        try:
            return self._producer.send(pending, self._never)
        except KafkaException as exc:
            # librdkafka raises a fatal error (a restarted broker forgot the idempotent
            # producer's id) from flush: start again with a new producer, resend all.
            log.warning(
                f"Kafka producer failed ({exc}); starting a new one",
                extra={"event.action": "cdc-producer-reset"},
            )
            with contextlib.suppress(KafkaException):
                self._producer.close()
            self._producer = BatchProducer(self._settings)
            return pending

    def close(self) -> None:
        with contextlib.suppress(KafkaException):
            self._producer.close()
