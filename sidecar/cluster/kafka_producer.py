"""Producing one outbox batch to Kafka and saying which messages were not delivered.

`BatchProducer.send` is blocking (librdkafka is synchronous): the bus runs it in a thread
of its own, one batch at a time, so the loop never waits on the broker. The producer is
idempotent (``enable.idempotence``: acks=all, librdkafka retries within
``message.timeout.ms`` without duplicating or reordering within a partition); a message it
still could not deliver in that time is reported failed and the outbox sends it again later,
in order. A fatal producer error (idempotence state lost, e.g. a broker that forgot the
producer id) recreates the producer.

Not guaranteed: no duplicate across attempts (a message reported failed may have reached the
broker); that topics are created (auto-creation is off: an auto-created topic would get the
broker's default partitions and settings silently; until the topic exists, messages stay
queued).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import threading
import time
from collections.abc import Mapping, Sequence

from confluent_kafka import KafkaError, KafkaException, Message, Producer

from sidecar.cluster.kafka_logs import CLIENT_LOG
from sidecar.cluster.kafka_outbox import OutMessage
from sidecar.core.backoff import LogLimit

log = logging.getLogger("strata.sidecar.kafka")

_SLICE_S = 0.05
_PURGE_WAIT_S = 1.0


@dataclasses.dataclass(frozen=True, slots=True)
class ProducerSettings:
    bootstrap: str
    send_timeout_s: float
    options: Mapping[str, str] = dataclasses.field(default_factory=dict)


def producer_conf(settings: ProducerSettings, on_error: object) -> dict[str, object]:
    """librdkafka settings of the producer (`settings.options` last, so they win)."""
    conf: dict[str, object] = {
        "bootstrap.servers": settings.bootstrap,
        "enable.idempotence": True,
        "acks": "all",
        "linger.ms": 0,  # one small batch at a time: waiting only adds latency
        "message.timeout.ms": int(settings.send_timeout_s * 1000),
        "allow.auto.create.topics": False,
        "reconnect.backoff.ms": 50,
        "reconnect.backoff.max.ms": 1000,
        "socket.nagle.disable": True,
        "error_cb": on_error,
        "logger": CLIENT_LOG,  # librdkafka's own lines: in the sidecar's logs, rate-limited
    }
    conf.update(settings.options)
    return conf


class BatchProducer:
    """A librdkafka producer used from one thread at a time (`send`, `close`)."""

    def __init__(self, settings: ProducerSettings) -> None:
        self._settings = settings
        self._fatal = threading.Event()
        self._log_limit = LogLimit(5.0)
        self._producer = self._make()

    def _make(self) -> Producer:
        self._fatal.clear()
        return Producer(producer_conf(self._settings, self._on_error))

    def _on_error(self, error: KafkaError) -> None:
        if error.fatal():
            self._fatal.set()
        self._warn("kafka-producer-error", f"Kafka producer: {error}")

    def send(self, batch: Sequence[OutMessage], abort: threading.Event) -> list[OutMessage]:
        """Produce `batch` in order and wait for every delivery report (at most about
        ``send_timeout_s``, less if `abort` is set); the messages NOT delivered, in order."""
        if self._fatal.is_set():
            self._producer = self._make()
        errors: dict[int, KafkaError | None] = {}
        produced = 0
        for message in batch:

            def report(error: KafkaError | None, _msg: Message, seq: int = message.seq) -> None:
                errors[seq] = error

            try:
                self._producer.produce(
                    message.topic,
                    value=message.value,
                    key=message.key,
                    headers=list(message.headers),
                    on_delivery=report,
                )
            except (BufferError, KafkaException) as exc:
                self._warn("kafka-produce-failed", f"Kafka produce refused: {exc}")
                break  # the rest stays behind it, in order
            produced += 1
        deadline = time.monotonic() + self._settings.send_timeout_s + 1.0
        try:
            while len(errors) < produced and not abort.is_set() and time.monotonic() < deadline:
                self._producer.flush(_SLICE_S)
        except KafkaException as exc:  # e.g. a restarted broker forgot the producer id (fatal)
            self._warn("kafka-producer-failed", f"Kafka producer failed; starting anew: {exc}")
            self._fatal.set()
        if len(errors) < produced:  # aborted, failed, or librdkafka overran its timeout
            with contextlib.suppress(KafkaException):
                self._producer.purge()
                self._producer.flush(_PURGE_WAIT_S)
            self._fatal.set()  # purged in-flight idempotent messages: start a new producer
        failed = [m for m in batch if m.seq not in errors or errors[m.seq] is not None]
        if failed:
            first = next((errors.get(m.seq) for m in failed if errors.get(m.seq)), None)
            self._warn(
                "kafka-produce-failed",
                f"{len(failed)} of {len(batch)} events not delivered ({first}); kept queued",
            )
            # A new producer for the next attempt: an idempotent producer whose broker lost
            # its producer id (a restart of a broker without durable state) may never deliver
            # again, and a fresh one costs only its set-up (the outbox keeps the order; a
            # resend applies twice at worst, which is harmless).
            self._fatal.set()
        return failed

    def close(self) -> None:
        """Drop whatever librdkafka still holds (the outbox has its own copy)."""
        with contextlib.suppress(KafkaException):
            self._producer.purge()
            self._producer.flush(0)

    def _warn(self, action: str, text: str) -> None:
        held = self._log_limit.take(time.monotonic())
        if held is not None:
            log.warning(text, extra={"event.action": action, "strata.suppressed": held})
