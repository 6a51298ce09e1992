"""Delivering events to Kafka and waiting until every one was acknowledged.

`Publisher.deliver` produces a batch with the sidecar's idempotent producer
(`sidecar.cluster.kafka_producer.BatchProducer`: acks=all, in order) and blocks until the
broker acknowledged all of it. What was not delivered is sent again after
``retry_interval_s``, in order, until it is or `stop` is set: a broker that is down keeps
the caller waiting (its position unmoved), never loses an event. The topic is created
(``partitions``) when it is missing, at the first delivery and after each failure.

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
from collections.abc import Mapping, Sequence

from confluent_kafka import KafkaException

from sidecar.cluster.kafka_bus import ensure_topic
from sidecar.cluster.kafka_outbox import Headers, OutMessage
from sidecar.cluster.kafka_producer import BatchProducer, ProducerSettings

__all__ = ["Outgoing", "Publisher", "PublisherConfig"]

log = logging.getLogger("strata.cdc.publish")


@dataclasses.dataclass(frozen=True, slots=True)
class Outgoing:
    """One message to deliver (an event, or a copy for the dead-letter topic)."""

    topic: str
    key: bytes | None
    value: bytes
    headers: Headers = ()


@dataclasses.dataclass(frozen=True, slots=True)
class PublisherConfig:
    bootstrap: str
    topic: str
    partitions: int = 1
    send_timeout_s: float = 5.0
    retry_interval_s: float = 1.0
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

    def _ensure_topic(self) -> None:
        try:
            ensure_topic(
                self._config.bootstrap,
                self._config.topic,
                self._config.partitions,
                timeout=min(5.0, self._config.send_timeout_s),
            )
            self._topic_checked = True
        except KafkaException as exc:
            log.warning(
                f"cannot check topic {self._config.topic}: {exc}",
                extra={"event.action": "cdc-topic-check-failed"},
            )

    def deliver(self, batch: Sequence[Outgoing], stop: threading.Event) -> bool:
        """Whether every message of `batch` was delivered (False only when `stop` was set
        before they all were)."""
        if not self._topic_checked:
            self._ensure_topic()
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
            pending = failed
            log.warning(
                f"{len(failed)} of {len(batch)} messages not delivered; retrying in "
                f"{self._config.retry_interval_s} s (the source position is kept)",
                extra={"event.action": "cdc-deliver-retry", "strata.count": len(failed)},
            )
            if stop.wait(self._config.retry_interval_s):
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
