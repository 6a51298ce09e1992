"""Consuming the invalidation topic: every partition, applied in order, committed after.

Each sidecar reads EVERY partition of the topic by explicit assignment (no group membership,
so no JoinGroup, no rebalance, no heartbeat: a node starts reading as soon as it has the
partition list, instead of after a join that Tansu holds for ``session.timeout.ms / 2`` and
Kafka for ``group.initial.rebalance.delay.ms``). Offsets are still committed, under a group id
of its own (``strata-<node id>``), used only as the key of its offsets: a sidecar that restarts
resumes where it stopped, and no two nodes share a position.

Where a node starts: at its committed offset; a partition it has no offset for and that
existed when it started, at the log end at that moment (a new node's memory is empty, older
purges mean nothing to it), and that position is committed at once so that a restart before
the first event does not skip anything; a partition that appears later, at its beginning
(everything in it is newer than the node). An offset out of range (the log was truncated or
lost) restarts at the earliest offset: replaying is harmless, skipping is not; a broker that
lost the log without saying so is noticed while idle (`sidecar.cluster.kafka_log_loss`).

librdkafka is synchronous, so the consumer runs in a thread of its own and hands each message
to the event loop (`asyncio.run_coroutine_threadsafe`), waiting for `apply` to finish before it
commits the offset and polls the next: one message at a time, in the order fetched, never
blocking the loop. `apply` raising `BadEvent` skips the message (counted, logged with
topic/partition/offset, passed to `reject`); any other exception is transient: retried every
``retry_interval_s`` (`sidecar.core.backoff.Backoff`), neither committed nor skipped, until it
succeeds or the consumer closes.

Not guaranteed: exactly once (a crash between apply and commit, or a commit lost with the
broker, replays events: `apply` must be idempotent); order across partitions (only within
one); that a partition added to the topic is seen before the next refresh
(``partition_refresh_s``); that Tansu's buggy ListOffsets (base of the last batch + 1) gives
the true log end - a new node may then replay the tail of the last batch.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import dataclasses
import logging
import threading
import time
from collections.abc import Awaitable, Callable, Mapping

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, TopicPartition

from sidecar.cluster.kafka_log_loss import LossWatch
from sidecar.cluster.kafka_logs import CLIENT_LOG
from sidecar.core.backoff import Backoff, LogLimit

log = logging.getLogger("strata.sidecar.kafka")

_LIBRDKAFKA_TIMEOUT_S = 5.0
_METADATA_TIMEOUT_S = 1.0  # short: while the broker is down, `close` waits on it


@dataclasses.dataclass(frozen=True, slots=True)
class Position:
    """Where a message was read: topic, partition, offset."""

    topic: str
    partition: int
    offset: int


class BadEvent(Exception):  # noqa: N818 - the name the event code and the issue use
    """Raised by `apply` for an event that can never be applied (malformed, unknown version,
    too large...): it is skipped, counted and passed to `reject`, never retried. `reason` is a
    short stable label (a metric label)."""

    def __init__(self, reason: str, message: str = "") -> None:
        super().__init__(message or reason)
        self.reason = reason


Apply = Callable[[bytes, Position], Awaitable[None]]
Reject = Callable[[bytes, Position, BadEvent], None]


@dataclasses.dataclass(frozen=True, slots=True)
class ConsumerSettings:
    """What the consumer needs; `sidecar.cluster.kafka_bus.KafkaBusConfig` makes one."""

    bootstrap: str
    topic: str
    group_id: str
    fetch_wait_max_ms: int
    retry_interval_s: float
    partition_refresh_s: float
    poll_s: float = 0.1
    options: Mapping[str, str] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(slots=True)
class ConsumerStats:
    """Counters since start. `applied` and `rejected` messages were committed."""

    applied: int = 0
    rejected: int = 0
    apply_failures: int = 0
    consume_errors: int = 0
    assigned_partitions: int = 0
    #: Partitions read again from their beginning because the broker lost their log.
    log_resets: int = 0


def consumer_conf(settings: ConsumerSettings) -> dict[str, object]:
    """librdkafka settings of the consumer (`settings.options` last, so they win)."""
    conf: dict[str, object] = {
        "bootstrap.servers": settings.bootstrap,
        "group.id": settings.group_id,  # the key of this node's offsets; never joined
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "auto.offset.reset": "earliest",  # only for an offset out of range (see the module)
        "allow.auto.create.topics": False,
        # The broker answers a fetch when data arrives or after this wait. Kafka wakes a
        # waiting fetch on new data; Tansu does not, so there it bounds the latency (about
        # uniform in 0..wait/2) and costs broker CPU while idle.
        "fetch.wait.max.ms": settings.fetch_wait_max_ms,
        "fetch.error.backoff.ms": 100,
        "reconnect.backoff.ms": 50,
        "reconnect.backoff.max.ms": 1000,
        "socket.nagle.disable": True,
        "enable.partition.eof": False,
        "logger": CLIENT_LOG,  # librdkafka's own lines: in the sidecar's logs, rate-limited
    }
    conf.update(settings.options)
    return conf


class EventConsumer:
    """One thread consuming every partition of the topic into `apply` on the event loop."""

    def __init__(self, settings: ConsumerSettings, apply: Apply, reject: Reject) -> None:
        self._settings = settings
        self._apply = apply
        self._reject = reject
        self.stats = ConsumerStats()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._assigned = asyncio.Event()
        self._current: concurrent.futures.Future[bool] | None = None
        self._committed: dict[tuple[str, int], int] = {}
        self._loss = LossWatch(settings.topic, self._committed, _METADATA_TIMEOUT_S)
        self._log_limit = LogLimit(5.0)  # the consumer thread's log lines
        self._apply_log_limit = LogLimit(5.0)  # the event loop's
        self._reject_log_limit = LogLimit(5.0)  # rejected events (the metric counts all)

    def start(self) -> None:
        """Start the consumer thread (returns at once; a broker that is down is retried)."""
        if self._thread is not None:
            raise RuntimeError("the consumer was already started")
        self._loop = asyncio.get_running_loop()
        self._thread = threading.Thread(
            target=self._run, name=f"strata-kafka-consumer-{self._settings.topic}", daemon=True
        )
        self._thread.start()

    async def wait_assigned(self, timeout: float) -> bool:
        """Whether the consumer holds its partitions (positions resolved) within `timeout` s."""
        try:
            await asyncio.wait_for(self._assigned.wait(), timeout)
        except TimeoutError:
            return False
        return True

    async def close(self, timeout: float) -> bool:
        """Stop: an `apply` in progress gets `timeout` s to finish, then is cancelled (its
        message is not committed); offsets of applied messages are committed. Whether the
        thread ended in time."""
        thread = self._thread
        if thread is None:
            return True
        self._stop.set()
        await asyncio.to_thread(thread.join, timeout)
        if thread.is_alive() and self._current is not None:
            self._current.cancel()
        await asyncio.to_thread(thread.join, _LIBRDKAFKA_TIMEOUT_S + 1)
        return not thread.is_alive()

    # -- the consumer thread ----------------------------------------------------------

    def _run(self) -> None:
        consumer = Consumer(consumer_conf(self._settings))
        try:
            self._consume(consumer)
        finally:
            self._commit_final(consumer)
            consumer.close()

    def _consume(self, consumer: Consumer) -> None:
        settings = self._settings
        known: set[int] | None = None
        refresh_at = 0.0
        while not self._stop.is_set():
            if known is None:
                known = self._assign(consumer)
                if known is None:
                    self._stop.wait(settings.retry_interval_s)
                    continue
                refresh_at = time.monotonic() + settings.partition_refresh_s
                self._signal_assigned()
            elif time.monotonic() >= refresh_at:
                self._add_new_partitions(consumer, known)
                refresh_at = time.monotonic() + settings.partition_refresh_s
            message = consumer.poll(settings.poll_s)
            if message is None:
                if self._loss.check(consumer):  # idle: did the broker lose its log?
                    self.stats.log_resets = self._loss.resets
                continue
            error = message.error()
            if error is not None:
                self.stats.consume_errors += 1
                self._warn("kafka-consume-failed", f"Kafka consumer error: {error}")
                continue
            topic, partition, offset = message.topic(), message.partition(), message.offset()
            assert topic is not None and partition is not None and offset is not None
            where = Position(topic, partition, offset)
            if not self._hand_over(message.value() or b"", where):
                return
            self._commit(consumer, where)

    def _assign(self, consumer: Consumer) -> set[int] | None:
        """Assign every partition at its start position; the partitions, or None on failure."""
        topic = self._settings.topic
        try:
            partitions = self._partitions(consumer)
            if not partitions:
                self._warn("kafka-topic-missing", f"Kafka topic {topic} not found; retrying")
                return None
            wanted = [TopicPartition(topic, p) for p in sorted(partitions)]
            committed = consumer.committed(wanted, timeout=_LIBRDKAFKA_TIMEOUT_S)
            start: list[TopicPartition] = []
            fresh: list[TopicPartition] = []
            for tp in committed:
                if tp.offset >= 0:
                    start.append(TopicPartition(topic, tp.partition, tp.offset))
                    continue
                _low, high = consumer.get_watermark_offsets(tp, timeout=_LIBRDKAFKA_TIMEOUT_S)
                at = TopicPartition(topic, tp.partition, high)
                start.append(at)
                fresh.append(at)
            if fresh:
                consumer.commit(offsets=fresh, asynchronous=False)
            consumer.assign(start)
        except KafkaException as exc:
            self._warn("kafka-assign-failed", f"Kafka consumer could not start reading: {exc}")
            return None
        for tp in start:
            self._committed[(topic, tp.partition)] = tp.offset
        self.stats.assigned_partitions = len(partitions)
        log.info(
            f"Kafka consumer reading {topic} partitions {sorted(partitions)}",
            extra={"event.action": "kafka-assigned", "strata.group": self._settings.group_id},
        )
        return partitions

    def _add_new_partitions(self, consumer: Consumer, known: set[int]) -> None:
        try:
            new = self._partitions(consumer) - known
            if new:
                topic = self._settings.topic
                consumer.incremental_assign(
                    [TopicPartition(topic, p, OFFSET_BEGINNING) for p in sorted(new)]
                )
                known |= new
                self.stats.assigned_partitions = len(known)
                log.info(
                    f"Kafka consumer reading new partitions {sorted(new)} of {topic}",
                    extra={"event.action": "kafka-assigned"},
                )
        except KafkaException as exc:
            self._warn("kafka-assign-failed", f"Kafka partition refresh failed: {exc}")

    def _partitions(self, consumer: Consumer) -> set[int]:
        topic = self._settings.topic
        metadata = consumer.list_topics(topic, timeout=_METADATA_TIMEOUT_S)
        found = metadata.topics.get(topic)
        if found is None or found.error is not None:
            return set()
        return set(found.partitions)

    def _hand_over(self, value: bytes, where: Position) -> bool:
        """Run the message through `apply` on the loop; whether to commit and go on."""
        loop = self._loop
        assert loop is not None
        try:
            future = asyncio.run_coroutine_threadsafe(self._deliver(value, where), loop)
        except RuntimeError:  # the loop is closed
            return False
        self._current = future
        try:
            return future.result()
        except concurrent.futures.CancelledError:
            return False
        finally:
            self._current = None

    def _commit(self, consumer: Consumer, where: Position) -> None:
        self._committed[(where.topic, where.partition)] = where.offset + 1
        self._loss.committed_now(where.partition)
        tp = TopicPartition(where.topic, where.partition, where.offset + 1)
        try:
            consumer.commit(offsets=[tp], asynchronous=True)
        except KafkaException as exc:  # the final commit at close tries again
            self._warn("kafka-commit-failed", f"Kafka offset commit failed: {exc}")

    def _commit_final(self, consumer: Consumer) -> None:
        if not self._committed:
            return
        offsets = [TopicPartition(t, p, o) for (t, p), o in self._committed.items()]
        try:
            consumer.commit(offsets=offsets, asynchronous=False)
        except KafkaException as exc:
            log.warning(
                f"Kafka final offset commit failed (events may be applied again): {exc}",
                extra={"event.action": "kafka-commit-failed"},
            )

    def _signal_assigned(self) -> None:
        loop = self._loop
        assert loop is not None
        with contextlib.suppress(RuntimeError):  # the loop is closed
            loop.call_soon_threadsafe(self._assigned.set)

    def _warn(self, action: str, text: str) -> None:
        held = self._log_limit.take(time.monotonic())
        if held is not None:
            log.warning(text, extra={"event.action": action, "strata.suppressed": held})

    # -- on the event loop ------------------------------------------------------------

    async def _deliver(self, value: bytes, where: Position) -> bool:
        """Apply until it succeeds or is refused for good; False if closing stopped it."""
        backoff = Backoff(self._settings.retry_interval_s)
        loop = asyncio.get_running_loop()
        while True:
            try:
                await self._apply(value, where)
            except BadEvent as bad:
                self._rejected(value, where, bad)
                return True
            except Exception as exc:
                self.stats.apply_failures += 1
                backoff.failed(loop.time())
                held = self._apply_log_limit.take(time.monotonic())
                if held is not None:
                    log.warning(
                        f"applying the event at {where.topic}/{where.partition}@{where.offset} "
                        f"failed ({type(exc).__name__}: {exc}); retrying, not committed",
                        extra={"event.action": "kafka-apply-failed", "strata.suppressed": held},
                    )
                while backoff.is_down(loop.time()):
                    if self._stop.is_set():
                        return False
                    await asyncio.sleep(min(0.05, backoff.remaining(loop.time())))
                continue
            self.stats.applied += 1
            return True

    def _rejected(self, value: bytes, where: Position, bad: BadEvent) -> None:
        self.stats.rejected += 1
        held = self._reject_log_limit.take(time.monotonic())
        if held is not None:  # one line per 5 s: the one shown, and how many were not
            log.warning(
                f"skipped a bad event at {where.topic}/{where.partition}@{where.offset}: {bad}"
                + (f" ({held} more skipped since the last line)" if held else ""),
                extra={
                    "event.action": "kafka-event-rejected",
                    "event.reason": bad.reason,
                    "strata.kafka.topic": where.topic,
                    "strata.kafka.partition": where.partition,
                    "strata.kafka.offset": where.offset,
                    "strata.event_bytes": len(value),
                    "strata.suppressed": held,
                },
            )
        try:
            self._reject(value, where, bad)
        except Exception:
            log.exception("the reject path failed", extra={"event.action": "kafka-reject-failed"})
