"""Rejected events are logged at most once per few seconds, with what was held back, and
each logged line still names the topic, partition and offset of the event it shows."""

from __future__ import annotations

import logging
import time

import pytest

from sidecar.cluster.kafka_consumer import BadEvent, ConsumerSettings, EventConsumer, Position


def _consumer(rejected: list[Position]) -> EventConsumer:
    settings = ConsumerSettings("127.0.0.1:1", "strata.invalidations", "strata-n", 10, 1.0, 30.0)

    async def apply(value: bytes, where: Position) -> None:
        raise AssertionError("not called")

    return EventConsumer(settings, apply, lambda _v, where, _b: rejected.append(where))


def test_a_flood_of_bad_events_makes_one_line_and_counts_them_all(
    caplog: pytest.LogCaptureFixture,
) -> None:
    rejected: list[Position] = []
    consumer = _consumer(rejected)
    with caplog.at_level(logging.WARNING, logger="strata.sidecar.kafka"):
        for offset in range(5000):
            consumer._rejected(b"junk", Position("strata.invalidations", 2, offset), BadEvent("x"))
    lines = [r for r in caplog.records if r.__dict__.get("event.action") == "kafka-event-rejected"]
    assert len(lines) == 1
    first = lines[0].__dict__
    assert (first["strata.kafka.topic"], first["strata.kafka.partition"]) == (
        "strata.invalidations",
        2,
    )
    assert first["strata.kafka.offset"] == 0 and first["strata.suppressed"] == 0
    assert consumer.stats.rejected == 5000 and len(rejected) == 5000


def test_the_next_line_says_how_many_were_held_back(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    now = [1000.0]
    monkeypatch.setattr(time, "monotonic", lambda: now[0])  # the consumer's clock
    consumer = _consumer([])
    with caplog.at_level(logging.WARNING, logger="strata.sidecar.kafka"):
        for offset in range(10):
            consumer._rejected(b"", Position("t", 0, offset), BadEvent("x"))
        now[0] += 6.0
        consumer._rejected(b"", Position("t", 0, 10), BadEvent("x"))
    lines = [r.__dict__ for r in caplog.records]
    assert [(d["strata.kafka.offset"], d["strata.suppressed"]) for d in lines] == [(0, 0), (10, 9)]
    assert "9 more skipped" in caplog.records[-1].getMessage()
