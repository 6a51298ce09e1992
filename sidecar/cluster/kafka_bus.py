"""The Kafka invalidation bus: publish events through a bounded outbox, consume every event.

`KafkaBus` moves opaque event bytes (the format is `sidecar.cluster.events`' business):

- **in**: every node reads every partition of the topic (`sidecar.cluster.kafka_consumer`:
  explicit assignment, offsets committed per node under ``strata-<node id>`` only after the
  injected `apply` succeeded; `BadEvent` skips a message, counted, logged and optionally
  copied to a dead-letter topic; any other failure is retried, never skipped);
- **out**: `publish` returns at once; the event waits in a bounded outbox
  (`sidecar.cluster.kafka_outbox`: oldest dropped on overflow, logged with the event) and a
  task sends it, one batch at a time, with an idempotent producer
  (`sidecar.cluster.kafka_producer`) in a thread of its own. While the broker is down events
  stay queued and go out in publish order when it answers again.

The node id (`KafkaBusConfig.node_id`) names this node's offsets. It must be stable across
restarts (so a restarted sidecar resumes) and distinct per sidecar (so no two nodes share a
position). `default_node_id` derives it from the host name and the gRPC listen address: two
sidecars on one host listen on different sockets. Where host names change on every start
(containers), set it explicitly or accept that each start is a new node (its old offsets
expire with the broker's ``offsets.retention.minutes``).

`start` never waits on the broker: a broker down at start is retried in the background
(`wait_ready` tells when the consumer holds its partitions). `close` flushes the outbox for
at most `drain_timeout` and reports what was left (dropped, logged).

Not guaranteed: exactly-once (events may be applied twice: apply idempotently); order
across partitions or keys; anything queued survives the process; delivery of what overflowed.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import logging
import re
import threading
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]  # re-export

from sidecar.cluster.kafka_consumer import (
    Apply,
    BadEvent,
    ConsumerSettings,
    EventConsumer,
    Position,
    Reject,
)
from sidecar.cluster.kafka_logs import CLIENT_LOG
from sidecar.cluster.kafka_outbox import Outbox, OutMessage, describe
from sidecar.cluster.kafka_producer import BatchProducer, ProducerSettings
from sidecar.core.backoff import Backoff

__all__ = [
    "BadEvent",
    "BusStats",
    "CloseReport",
    "KafkaBus",
    "KafkaBusConfig",
    "Position",
    "default_node_id",
    "ensure_topic",
]

log = logging.getLogger("strata.sidecar.kafka")

DEFAULT_TOPIC = "strata.invalidations"
#: While sends fail, how often the bus checks that its topic still exists.
TOPIC_CHECK_S = 5.0
#: Events dropped at close that are logged one by one; the rest are one summary line.
CLOSE_LOGGED_EVENTS = 10
_NODE_ID = re.compile(r"[A-Za-z0-9._-]{1,200}")


def default_node_id(hostname: str, listen: str) -> str:
    """``<host name>-<8 hex digits of the listen address>``: stable while neither changes,
    distinct for two sidecars of one host. Characters outside ``[A-Za-z0-9._-]`` become
    ``-``."""
    host = re.sub(r"[^A-Za-z0-9._-]", "-", hostname)[:100] or "host"
    return f"{host}-{hashlib.sha256(listen.encode()).hexdigest()[:8]}"


@dataclasses.dataclass(frozen=True, slots=True)
class KafkaBusConfig:
    """Settings of the bus; `options` are extra librdkafka settings for both clients
    (security, for instance), applied last."""

    bootstrap: str
    node_id: str
    topic: str = DEFAULT_TOPIC
    #: Longest wait of a fetch on the broker; see `kafka_consumer.consumer_conf`. Tansu
    #: (which does not wake a waiting fetch) gives p50/p99 about 3.6/7 ms at 10 ms, and
    #: costs about 6% of a core per idle consumer; on Kafka the latency does not depend on it.
    fetch_wait_max_ms: int = 10
    outbox_max_events: int = 10_000
    outbox_max_bytes: int = 16 * 1024 * 1024
    max_batch: int = 500
    #: How long librdkafka tries to deliver one batch before it is reported failed and kept.
    send_timeout_s: float = 5.0
    #: Wait between attempts after a failed apply or a failed send.
    retry_interval_s: float = 1.0
    partition_refresh_s: float = 5.0
    #: Where rejected (BadEvent) messages are copied; empty: nowhere.
    dead_letter_topic: str = ""
    #: Partitions of the topic to create again when sends keep failing and it is missing (a
    #: broker that lost its state, a topic deleted by hand); 0: never create it here.
    topic_partitions: int = 0
    #: Bytes of an event's value shown in a log line (dropped events).
    log_value_bytes: int = 512
    options: Mapping[str, str] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.bootstrap:
            raise ValueError("kafka bootstrap: empty")
        if not _NODE_ID.fullmatch(self.node_id):
            raise ValueError(f"kafka node id {self.node_id!r}: 1-200 of [A-Za-z0-9._-]")
        if not 0 <= self.fetch_wait_max_ms <= 60_000:
            raise ValueError("kafka fetch_wait_max_ms: 0-60000")
        if self.max_batch < 1 or self.send_timeout_s <= 0 or self.retry_interval_s <= 0:
            raise ValueError("kafka max_batch, send_timeout_s, retry_interval_s must be > 0")

    @property
    def group_id(self) -> str:
        """The consumer group that keys this node's offsets (never joined)."""
        return f"strata-{self.node_id}"


@dataclasses.dataclass(frozen=True, slots=True)
class BusStats:
    """A snapshot of the counters (`queued`, `queued_bytes`: right now; the rest since
    start). Each maps onto one metric."""

    queued: int
    queued_bytes: int
    published: int
    sent: int
    dropped: int
    send_failures: int
    applied: int
    rejected: int
    apply_failures: int
    dead_lettered: int
    assigned_partitions: int


@dataclasses.dataclass(frozen=True, slots=True)
class CloseReport:
    """What `close` left behind: events never sent (dropped), and whether the consumer
    stopped in time."""

    unsent: int
    consumer_stopped: bool


def ensure_topic(bootstrap: str, topic: str, partitions: int, timeout: float = 10.0) -> bool:
    """Create `topic` if it is missing (blocking: call it in a thread); whether it was
    created. The bus never creates topics itself (see `kafka_producer`)."""
    conf: dict[str, object] = {"bootstrap.servers": bootstrap, "logger": CLIENT_LOG}
    admin = AdminClient(conf)  # type: ignore[arg-type]  # the stubs omit "logger"
    future = admin.create_topics([NewTopic(topic, partitions)], request_timeout=timeout)[topic]
    try:
        future.result(timeout)
    except KafkaException as exc:
        if exc.args and exc.args[0].code() == KafkaError.TOPIC_ALREADY_EXISTS:
            return False
        raise
    return True


async def ensure_topic_retrying(
    bootstrap: str,
    topic: str,
    partitions: int,
    backoff: Backoff,
    logger: logging.Logger,
    timeout_s: float = 10.0,
) -> None:
    """`ensure_topic` in a thread, again after `backoff` until the broker answers. Each
    failure is logged at WARNING on `logger` (``kafka-topic-unchecked``; the backoff spaces
    them), a creation at INFO (``kafka-topic-created``). Not guaranteed: that the topic has
    `partitions` partitions (an existing one is left as it is)."""
    loop = asyncio.get_running_loop()
    while True:
        try:
            created = await asyncio.to_thread(ensure_topic, bootstrap, topic, partitions, timeout_s)
        except (KafkaException, TimeoutError) as exc:
            backoff.failed(loop.time())
            logger.warning(
                f"Kafka topic {topic} not checked (broker unreachable?); retrying: {exc}",
                extra={"event.action": "kafka-topic-unchecked", "strata.kafka.topic": topic},
            )
            await asyncio.sleep(backoff.remaining(loop.time()))
            continue
        if created:
            logger.info(
                f"Kafka topic {topic} created with {partitions} partitions",
                extra={"event.action": "kafka-topic-created", "strata.kafka.topic": topic},
            )
        return


class KafkaBus:
    """One node's end of the invalidation topic. Use from one event loop."""

    def __init__(self, config: KafkaBusConfig, apply: Apply, reject: Reject | None = None):
        self._config = config
        self._reject_hook = reject
        self._outbox = Outbox(config.outbox_max_events, config.outbox_max_bytes)
        self._consumer = EventConsumer(
            ConsumerSettings(
                bootstrap=config.bootstrap,
                topic=config.topic,
                group_id=config.group_id,
                fetch_wait_max_ms=config.fetch_wait_max_ms,
                retry_interval_s=config.retry_interval_s,
                partition_refresh_s=config.partition_refresh_s,
                options=config.options,
            ),
            apply,
            self._rejected,
        )
        self._producer_settings = ProducerSettings(
            config.bootstrap, config.send_timeout_s, config.options
        )
        self._producer: BatchProducer | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._sender: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._abort = threading.Event()  # read by the producer thread
        self._aborted = asyncio.Event()  # the same, for the sender task
        self._closing = False
        self._dead_lettered = 0
        self._topic_check_at = 0.0

    @property
    def config(self) -> KafkaBusConfig:
        return self._config

    async def start(self) -> None:
        """Start consuming and sending; returns at once, whether or not the broker answers."""
        if self._sender is not None:
            raise RuntimeError("the bus was already started")
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="strata-kafka-producer")
        loop = asyncio.get_running_loop()
        settings = self._producer_settings
        self._producer = await loop.run_in_executor(self._executor, BatchProducer, settings)
        self._consumer.start()
        self._sender = asyncio.create_task(self._send_loop(), name="strata-kafka-sender")

    async def wait_ready(self, timeout: float) -> bool:
        """Whether the consumer holds every partition (positions resolved) within `timeout`."""
        return await self._consumer.wait_assigned(timeout)

    def publish(
        self, key: bytes | None, value: bytes, headers: Sequence[tuple[str, bytes]] = ()
    ) -> bool:
        """Queue an event for `topic` (never blocks, never raises for the broker); whether it
        was kept (False: refused by the bounds, or the bus is closing)."""
        return self._enqueue(self._config.topic, key, value, tuple(headers))

    def stats(self) -> BusStats:
        box, con = self._outbox.stats, self._consumer.stats
        return BusStats(
            queued=box.queued,
            queued_bytes=box.queued_bytes,
            published=box.enqueued,
            sent=box.sent,
            dropped=box.dropped,
            send_failures=box.send_failures,
            applied=con.applied,
            rejected=con.rejected,
            apply_failures=con.apply_failures,
            dead_lettered=self._dead_lettered,
            assigned_partitions=con.assigned_partitions,
        )

    async def close(self, drain_timeout: float) -> CloseReport:
        """Stop consuming (an apply in progress gets `drain_timeout`) and send what is queued
        for at most `drain_timeout` s; what is still queued then is dropped and logged."""
        self._closing = True
        self._wake.set()
        consumer = asyncio.create_task(self._consumer.close(drain_timeout))
        sender = self._sender
        if sender is not None:
            try:
                await asyncio.wait_for(asyncio.shield(sender), drain_timeout)
            except TimeoutError:
                self._abort.set()
                self._aborted.set()
                await sender
        left = self._outbox.discard()
        for message in left[:CLOSE_LOGGED_EVENTS]:
            self._log_dropped(message, "kafka-event-unsent", "closing with the broker unreached")
        if left:
            shown = min(len(left), CLOSE_LOGGED_EVENTS)
            log.warning(
                f"{len(left)} invalidation events not sent before close"
                + (f" (the first {shown} logged above)" if len(left) > shown else ""),
                extra={"event.action": "kafka-close-unsent", "strata.count": len(left)},
            )
        stopped = await consumer
        if self._producer is not None and self._executor is not None:
            loop = asyncio.get_running_loop()
            await loop.run_in_executor(self._executor, self._producer.close)
            self._executor.shutdown(wait=False)
        return CloseReport(unsent=len(left), consumer_stopped=stopped)

    # -- internals --------------------------------------------------------------------

    def _enqueue(
        self, topic: str, key: bytes | None, value: bytes, headers: tuple[tuple[str, bytes], ...]
    ) -> bool:
        message = self._outbox.make(topic, key, value, headers)
        if self._closing:
            self._log_dropped(message, "kafka-event-dropped", "the bus is closing")
            return False
        dropped = self._outbox.put(message)
        for old in dropped:
            self._log_dropped(old, "kafka-event-dropped", "the outbox is full")
        self._wake.set()
        return all(old is not message for old in dropped)

    def _log_dropped(self, message: OutMessage, action: str, why: str) -> None:
        log.warning(
            f"invalidation event dropped ({why}): "
            f"{describe(message, self._config.log_value_bytes)}",
            extra={"event.action": action, "strata.queued": self._outbox.stats.queued},
        )

    def _rejected(self, value: bytes, where: Position, bad: BadEvent) -> None:
        topic = self._config.dead_letter_topic
        if topic:
            headers = (
                ("strata-dlq-topic", where.topic.encode()),
                ("strata-dlq-partition", str(where.partition).encode()),
                ("strata-dlq-offset", str(where.offset).encode()),
                ("strata-dlq-reason", bad.reason.encode()),
            )
            if self._enqueue(topic, None, value, headers):
                self._dead_lettered += 1
        if self._reject_hook is not None:
            self._reject_hook(value, where, bad)

    async def _recreate_topic(self, now: float) -> None:
        """While sends fail: create the topic again if the broker no longer has it, at most
        every `TOPIC_CHECK_S` (a broker that answers but lost the topic never takes the
        outbox otherwise). Any failure here is only logged: the send is retried anyway."""
        partitions = self._config.topic_partitions
        if partitions <= 0 or now < self._topic_check_at:
            return
        self._topic_check_at = now + TOPIC_CHECK_S
        try:
            created = await asyncio.to_thread(
                ensure_topic, self._config.bootstrap, self._config.topic, partitions, 5.0
            )
        except Exception as exc:  # the broker is away, or refuses: the send loop retries
            log.debug(f"Kafka topic check failed: {exc}", extra={"event.action": "kafka-topic"})
            return
        if created:
            log.warning(
                f"Kafka topic {self._config.topic} was missing and has been created again "
                f"({partitions} partitions)",
                extra={"event.action": "kafka-topic-recreated"},
            )

    async def _send_loop(self) -> None:
        loop = asyncio.get_running_loop()
        backoff = Backoff(self._config.retry_interval_s)
        assert self._producer is not None
        while True:
            batch = self._outbox.take(self._config.max_batch)
            if not batch:
                if self._closing:
                    return
                self._wake.clear()
                await self._wake.wait()
                continue
            failed = await loop.run_in_executor(
                self._executor, self._producer.send, batch, self._abort
            )
            self._outbox.settle(failed)
            if not failed:
                backoff.succeeded()
                continue
            if self._abort.is_set():
                return
            backoff.failed(loop.time())
            await self._recreate_topic(loop.time())
            try:
                await asyncio.wait_for(self._aborted.wait(), backoff.remaining(loop.time()))
                return
            except TimeoutError:
                pass
