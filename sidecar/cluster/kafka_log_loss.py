"""Noticing a broker that lost a partition's log, so that no event of the new log is skipped.

A broker that loses its state (Tansu's memory storage restarted; a topic deleted and created
again) starts the partition at offset 0 again, while this node's position stays where it
was. librdkafka then asks from that position; Tansu answers an empty fetch instead of
``OFFSET_OUT_OF_RANGE``, and once the new log grows past the old position every event below
it would be skipped for good. Either sign means a loss: the log end went down (it never does
otherwise), or the broker no longer knows the offset this node committed AND the log end is
below this node's position.

`LossWatch.check` (called by the consumer thread while idle, at most every `every_s`) asks
the broker. A partition showing either is read again from its beginning (replaying
purges is harmless; skipping them is not). The forgotten offset is what tells a loss from
Tansu's low log end of a multi-message batch (its ListOffsets answers the base of the last
batch + 1): a broker that ever stored one of this node's commits answers it, or a later one,
unless it lost them all. A partition whose
offset was forgotten while its log is intact (Kafka expires the offsets of a consumer that
committed nothing for ``offsets.retention.minutes``) keeps its position: the consumer commits
it again.

Not guaranteed: noticing a loss while the broker is down (nothing is asked then), or when a
commit this node sent before the loss lands after it (the broker then knows an offset
again); events of the new log already read when the loss is noticed are applied twice.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, MutableMapping

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, TopicPartition

log = logging.getLogger("strata.sidecar.kafka")

__all__ = ["LOSS_CHECK_S", "LossWatch"]

#: How often an idle consumer asks the broker whether it lost its log.
LOSS_CHECK_S = 1.0
#: A partition committed less than this ago is not judged (its commit may be in flight).
SETTLE_S = 3.0


class LossWatch:
    """See the module docstring. Used from the consumer thread only."""

    def __init__(
        self,
        topic: str,
        committed: MutableMapping[tuple[str, int], int],
        timeout_s: float,
        every_s: float = LOSS_CHECK_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """`committed`: the consumer's own record of the next offset it committed per
        (topic, partition); updated here when a partition is read again."""
        self._topic = topic
        self._committed = committed
        self._timeout_s = timeout_s
        self._every_s = every_s
        self._clock = clock
        self._next_at = 0.0
        self._committed_at: dict[int, float] = {}  # when this node last sent a commit
        self._highest: dict[int, int] = {}  # the highest log end seen per partition
        self.resets = 0

    def committed_now(self, partition: int) -> None:
        """The consumer just sent a commit for `partition` (asynchronously): the broker may
        not know it for a moment, which must not read as a loss."""
        self._committed_at[partition] = self._clock()

    def check(self, consumer: Consumer) -> list[int]:
        """The partitions read again from their beginning now (usually none)."""
        now = self._clock()
        if now < self._next_at:
            return []
        self._next_at = now + self._every_s
        settled = now - SETTLE_S
        ours = {
            p: o
            for (t, p), o in self._committed.items()
            if t == self._topic and o > 0 and self._committed_at.get(p, -math.inf) <= settled
        }
        if not ours:
            return []
        try:
            known = consumer.committed(
                [TopicPartition(self._topic, p) for p in ours], timeout=self._timeout_s
            )
            forgotten = [tp.partition for tp in known if tp.error is None and tp.offset < 0]
            ends = {
                p: consumer.get_watermark_offsets(
                    TopicPartition(self._topic, p), timeout=self._timeout_s, cached=False
                )[1]
                for p in ours
            }
        except KafkaException:
            return []  # the broker is away: nothing to learn now
        lost = {p for p in forgotten if ends[p] < ours[p]}
        lost |= {p for p, end in ends.items() if end < self._highest.get(p, 0)}
        for p, end in ends.items():
            self._highest[p] = max(end, self._highest.get(p, 0)) if p not in lost else end
        confirmed = sorted(lost)
        kept = [p for p in forgotten if p not in lost]
        if kept:
            self._recommit(consumer, kept, ours)
        if confirmed:
            self._read_again(consumer, confirmed)
        return confirmed

    def _recommit(self, consumer: Consumer, partitions: list[int], ours: dict[int, int]) -> None:
        offsets = [TopicPartition(self._topic, p, ours[p]) for p in partitions]
        try:
            consumer.commit(offsets=offsets, asynchronous=True)
        except KafkaException:
            return  # asked again at the next check

    def _read_again(self, consumer: Consumer, partitions: list[int]) -> None:
        old = [TopicPartition(self._topic, p) for p in partitions]
        consumer.incremental_unassign(old)
        consumer.incremental_assign(
            [TopicPartition(self._topic, p, OFFSET_BEGINNING) for p in partitions]
        )
        for p in partitions:
            self._committed[(self._topic, p)] = 0
        self.resets += len(partitions)
        log.warning(
            f"Kafka broker lost the log of {self._topic} partitions {partitions} (its end is "
            "below this node's position and it forgot this node's offsets): reading them "
            "again from the beginning",
            extra={"event.action": "kafka-log-lost", "strata.partitions": partitions},
        )
