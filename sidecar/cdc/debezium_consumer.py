"""The Debezium loop: consume change-event envelopes, publish v1 events, then commit.

`DebeziumRunner` joins the consumer group ``group_id`` on the Debezium topics (several
``strata cdc`` processes share the partitions), reads a batch, turns each envelope into
events (ids from topic, partition and offset: a re-read gives the same ids), has the
`Publisher` deliver them, and only then commits the offsets (synchronously). A tombstone is
skipped silently; a malformed envelope or a change to an unmapped table is counted, logged
with topic/partition/offset, skipped, and copied (value, key, and ``strata-dlq-*`` headers
saying where it came from and why) to the dead-letter topic when one is configured -- the
copy is delivered before the offset is committed.

A partition with no committed offset starts at its beginning (Debezium topics are compacted
or retained: replaying is harmless, skipping is not). ``once``: return after the topics
were quiet for ``idle_s`` since the group assignment or the last message, and raise
`BrokerUnavailableError` when no partition was assigned within ``assign_timeout_s`` (the
broker unreachable, the topics missing) or a batch was not delivered in time (the
`Publisher`'s ``give_up_s``); nothing is committed then. Not guaranteed:
exactly once (a crash between delivery and commit replays the batch: same ids, deduped by
the sidecars); that a commit lost with the broker is retried (the next one covers it).
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Mapping, Sequence

from confluent_kafka import Consumer, KafkaException, Message, TopicPartition

from sidecar.cdc.debezium import EnvelopeError, parse_envelope
from sidecar.cdc.outgoing import debezium_event_base
from sidecar.cdc.publish import BrokerUnavailableError, Outgoing, Publisher
from sidecar.cdc.translate import Translator
from sidecar.cluster.kafka_logs import CLIENT_LOG

__all__ = ["DebeziumConfig", "DebeziumRunner"]

log = logging.getLogger("strata.cdc.debezium")


@dataclasses.dataclass(frozen=True, slots=True)
class DebeziumConfig:
    bootstrap: str
    topics: tuple[str, ...]
    group_id: str = "strata-cdc"
    dead_letter_topic: str = ""
    max_batch: int = 500
    poll_s: float = 0.2
    idle_s: float = 1.0
    #: Tansu holds a group's first JoinGroup for about half of this (see services.md).
    session_timeout_ms: int = 6000
    fetch_wait_max_ms: int = 10
    #: With ``once``: give up when no partition is assigned within this many seconds.
    assign_timeout_s: float = 30.0
    options: Mapping[str, str] = dataclasses.field(default_factory=dict)


def consumer_conf(config: DebeziumConfig) -> dict[str, object]:
    conf: dict[str, object] = {
        "bootstrap.servers": config.bootstrap,
        "group.id": config.group_id,
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
        "allow.auto.create.topics": False,
        "session.timeout.ms": config.session_timeout_ms,
        "fetch.wait.max.ms": config.fetch_wait_max_ms,
        "reconnect.backoff.ms": 50,
        "reconnect.backoff.max.ms": 1000,
        "enable.partition.eof": False,
        "logger": CLIENT_LOG,  # librdkafka's own lines: rate-limited
    }
    conf.update(config.options)
    return conf


def _position(message: Message) -> tuple[str, int, int]:
    """Topic, partition and offset of a consumed message (always set on one without error)."""
    topic, partition, offset = message.topic(), message.partition(), message.offset()
    return topic or "", partition if partition is not None else -1, offset or 0


class DebeziumRunner:
    """One consumer, one thread."""

    def __init__(
        self,
        config: DebeziumConfig,
        translator: Translator,
        publisher: Publisher,
        stop: threading.Event,
    ) -> None:
        self._config = config
        self._translator = translator
        self._publisher = publisher
        self._stop = stop
        self._assigned = threading.Event()

    def _on_assign(self, _consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self._assigned.set()

    def _dead_letter(
        self, message: Message, where: tuple[str, int, int], reason: str
    ) -> list[Outgoing]:
        topic = self._config.dead_letter_topic
        if not topic:
            return []
        self._translator.stats.dead_lettered += 1
        headers = (
            ("strata-dlq-topic", where[0].encode()),
            ("strata-dlq-partition", str(where[1]).encode()),
            ("strata-dlq-offset", str(where[2]).encode()),
            ("strata-dlq-reason", reason.encode()),
        )
        return [Outgoing(topic, message.key(), message.value() or b"", headers)]

    def _handle(self, message: Message) -> list[Outgoing]:
        topic, partition, offset = _position(message)
        where = f"topic {topic} partition {partition} offset {offset}"
        stats = self._translator.stats
        try:
            parsed = parse_envelope(message.value(), message.key())
        except EnvelopeError as exc:
            stats.malformed += 1
            self._translator.warn(
                "cdc-debezium-malformed", f"Debezium message skipped ({where}): {exc}", where=where
            )
            return self._dead_letter(message, (topic, partition, offset), exc.reason)
        if parsed is None:
            stats.tombstones += 1
            return []
        unknown = not self._translator.knows(parsed.change)
        out = self._translator.messages(
            [parsed.change],
            origin=f"cdc:debezium:{topic}"[:256],
            ts=parsed.ts,
            base=debezium_event_base(topic, partition, offset),
            key=topic.encode(),
            where=where,
        )
        if unknown:
            out += self._dead_letter(message, (topic, partition, offset), "unknown_table")
        return out

    def _batch(self, consumer: Consumer, messages: Sequence[Message]) -> bool:
        """Deliver and commit one batch; False when `stop` left it undelivered."""
        out: list[Outgoing] = []
        offsets: dict[tuple[str, int], int] = {}
        for message in messages:
            error = message.error()
            if error is not None:
                self._translator.warn("cdc-debezium-consume-error", f"Kafka consumer: {error}")
                continue
            topic, partition, offset = _position(message)
            offsets[(topic, partition)] = offset + 1
            out.extend(self._handle(message))
        if out and not self._publisher.deliver(out, self._stop):
            log.warning(
                f"stopping with {len(out)} messages undelivered: their offsets are not "
                "committed, they are read again at the next start",
                extra={"event.action": "cdc-stop-undelivered"},
            )
            return False
        if offsets:
            try:
                consumer.commit(
                    offsets=[TopicPartition(t, p, o) for (t, p), o in offsets.items()],
                    asynchronous=False,
                )
            except KafkaException as exc:
                self._translator.warn(
                    "cdc-debezium-commit-failed", f"offset commit failed ({exc}); read again later"
                )
        return True

    def run(self, *, once: bool = False) -> None:
        consumer = Consumer(consumer_conf(self._config))
        try:
            consumer.subscribe(list(self._config.topics), on_assign=self._on_assign)
            quiet_since: float | None = None
            started = time.monotonic()
            while not self._stop.is_set():
                messages = consumer.consume(self._config.max_batch, self._config.poll_s)
                if messages:
                    quiet_since = None
                    if not self._batch(consumer, messages):
                        return
                elif once and not self._assigned.is_set():
                    waited = time.monotonic() - started
                    if waited >= self._config.assign_timeout_s:
                        raise BrokerUnavailableError(
                            f"no partition of {', '.join(self._config.topics)} assigned within "
                            f"{waited:.0f} s from {self._config.bootstrap} (broker unreachable or "
                            "topics missing)"
                        )
                elif once:
                    now = time.monotonic()
                    quiet_since = quiet_since or now
                    if now - quiet_since >= self._config.idle_s:
                        return
        finally:
            consumer.close()
