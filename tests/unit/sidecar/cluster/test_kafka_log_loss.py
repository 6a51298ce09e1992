"""`LossWatch`: a partition whose log the broker lost is read again from its beginning, and
nothing else is."""

from __future__ import annotations

from typing import Any

from confluent_kafka import OFFSET_BEGINNING, KafkaException, TopicPartition

from sidecar.cluster.kafka_log_loss import LossWatch

TOPIC = "strata.invalidations"


class FakeConsumer:
    """What the watch asks a consumer: committed offsets, log ends, (re)assignments."""

    def __init__(self, committed: dict[int, int], ends: dict[int, int]) -> None:
        self.committed_offsets = committed
        self.ends = ends
        self.assigned: list[TopicPartition] = []
        self.commits: list[TopicPartition] = []
        self.down = False

    def committed(self, tps: list[TopicPartition], timeout: float) -> list[TopicPartition]:
        if self.down:
            raise KafkaException("down")
        return [
            TopicPartition(TOPIC, tp.partition, self.committed_offsets.get(tp.partition, -1001))
            for tp in tps
        ]

    def get_watermark_offsets(
        self, tp: TopicPartition, timeout: float, cached: bool
    ) -> tuple[int, int]:
        assert not cached
        return 0, self.ends[tp.partition]

    def incremental_unassign(self, tps: list[TopicPartition]) -> None:
        pass

    def incremental_assign(self, tps: list[TopicPartition]) -> None:
        self.assigned += tps

    def commit(self, offsets: list[TopicPartition], asynchronous: bool) -> None:
        self.commits += offsets


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def watch(position: dict[int, int]) -> tuple[LossWatch, dict[tuple[str, int], int], Clock]:
    committed = {(TOPIC, p): o for p, o in position.items()}
    clock = Clock()
    return LossWatch(TOPIC, committed, 1.0, every_s=1.0, clock=clock), committed, clock


def check(w: LossWatch, consumer: Any) -> list[int]:
    return w.check(consumer)


def test_a_broker_that_forgot_the_offsets_and_has_a_shorter_log_lost_it() -> None:
    w, committed, _ = watch({0: 8, 1: 5})
    consumer = FakeConsumer(committed={1: 5}, ends={0: 3, 1: 9})
    assert check(w, consumer) == [0]
    assert [(tp.partition, tp.offset) for tp in consumer.assigned] == [(0, OFFSET_BEGINNING)]
    assert committed[(TOPIC, 0)] == 0 and committed[(TOPIC, 1)] == 5
    assert w.resets == 1


def test_a_log_end_below_our_position_alone_is_not_a_loss() -> None:
    """Tansu reports the base of the last batch + 1 as the log end: below the true end."""
    w, _, _ = watch({0: 8})
    consumer = FakeConsumer(committed={0: 8}, ends={0: 6})
    assert check(w, consumer) == []
    assert consumer.assigned == []


def test_forgotten_offsets_over_an_intact_log_are_committed_again_not_replayed() -> None:
    """Kafka expires the offsets of a consumer that committed nothing for a long time."""
    w, _, _ = watch({0: 8})
    consumer = FakeConsumer(committed={}, ends={0: 8})
    assert check(w, consumer) == []
    assert consumer.assigned == []
    assert [(tp.partition, tp.offset) for tp in consumer.commits] == [(0, 8)]


def test_a_log_end_that_goes_down_is_a_loss() -> None:
    w, _, clock = watch({0: 8})
    consumer = FakeConsumer(committed={0: 8}, ends={0: 8})
    assert check(w, consumer) == []
    consumer.ends[0] = 2  # restarted and refilled, and our late commit landed again
    clock.now += 1.0
    assert check(w, consumer) == [0]


def test_it_asks_at_most_every_interval_and_never_while_the_broker_is_down() -> None:
    w, _, clock = watch({0: 8})
    consumer = FakeConsumer(committed={}, ends={0: 1})
    consumer.down = True
    assert check(w, consumer) == []
    consumer.down = False
    assert check(w, consumer) == []  # within the interval: not asked
    clock.now += 1.0
    assert check(w, consumer) == [0]


def test_nothing_is_asked_before_anything_was_committed() -> None:
    w, _, _ = watch({0: 0})
    consumer = FakeConsumer(committed={}, ends={0: 0})
    consumer.down = True  # would raise if asked
    assert check(w, consumer) == []


def test_a_partition_committed_a_moment_ago_is_not_judged() -> None:
    """An asynchronous commit may not have reached the broker yet: not a loss."""
    w, _, clock = watch({0: 8})
    consumer = FakeConsumer(committed={}, ends={0: 1})
    w.committed_now(0)
    assert check(w, consumer) == []
    clock.now += 5.0
    assert check(w, consumer) == [0]
