"""Analytics events through a real sidecar process to a real broker (Tansu), and back.

The shared broker of `make services-up` carries the happy path (a topic of this test's own);
the outage test runs a private broker it freezes (SIGSTOP) and thaws, as
`test_cluster_events` does, so nobody else's broker stops.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import grpc
import jsonschema
import pytest
from confluent_kafka import Consumer, TopicPartition
from strata.v1 import cache_pb2 as pb

from tests.integration.servers import service
from tests.integration.test_cluster_events import metric
from tests.support.kafka import PrivateTansu
from tests.support.sidecar import clean_env
from tools.stack.nodes import Node, SidecarNodes

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

SCHEMA = json.loads(
    (Path(__file__).resolve().parents[2] / "schema" / "strata.access.v1.schema.json").read_text()
)


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def event(i: int, **fields: object) -> pb.AccessEvent:
    values: dict[str, object] = {
        "time_ms": int(time.time() * 1000),
        "route_id": "3c5b7a1e-0000-4000-8000-000000000001",
        "consumer_id": "" if i % 2 else "alice-id",
        "method": "GET",
        "status": 200,
        "cache_result": "hit" if i % 3 else "miss",
        "cache_detail": "" if i % 3 else "stored",
        "tier": "memory" if i % 3 else "",
        "bytes": 100 + i,
        "latency_ms": 0.25 + i / 1000,
        "key_hash": f"{i:016x}",
        "phase": "access" if i % 3 else "response",
    }
    values.update(fields)
    return pb.AccessEvent(**values)  # type: ignore[arg-type]


def report(node: Node, events: list[pb.AccessEvent]) -> pb.AccessAck:
    ack: pb.AccessAck = node.stub.ReportAccess(pb.AccessBatch(events=events), timeout=10)
    return ack


def consume(bootstrap: str, topic: str, want: int, timeout: float = 30.0) -> list[bytes]:
    """Up to `want` message values of partition 0 of `topic`, from its beginning."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": unique("analytics-test"),
            "enable.auto.commit": False,
        }
    )
    try:
        consumer.assign([TopicPartition(topic, 0, 0)])
        values: list[bytes] = []
        deadline = time.monotonic() + timeout
        while len(values) < want and time.monotonic() < deadline:
            message = consumer.poll(0.5)
            if message is None or message.error():
                continue
            values.append(message.value() or b"")
        return values
    finally:
        consumer.close()


def eventually(check: object, timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():  # type: ignore[operator]
            return True
        time.sleep(0.1)
    return bool(check())  # type: ignore[operator]


@pytest.fixture
def shared(tmp_path: Path) -> Iterator[tuple[Node, str, str]]:
    bootstrap = service("STRATA_TEST_KAFKA_BOOTSTRAP")
    topic = unique("strata.access.test")
    settings = {
        "kafka_bootstrap": bootstrap,
        "kafka_topic": unique("strata.inv.test"),
        "analytics_topic": topic,
        "analytics_linger_ms": "5",
    }
    with SidecarNodes(1, tmp_path, settings, env=clean_env()) as nodes:
        yield nodes.nodes[0], bootstrap, topic


def test_events_are_published_consumed_back_and_valid_against_the_schema(
    shared: tuple[Node, str, str],
) -> None:
    node, bootstrap, topic = shared
    events = [event(i) for i in range(50)]
    bad = [event(0, latency_ms=float("nan")), event(1, method="G E T"), event(2, phase="x")]
    ack = report(node, events + bad)
    assert (ack.accepted, ack.rejected, ack.dropped, ack.disabled) == (50, 3, 0, False)
    values = consume(bootstrap, topic, 50)
    assert len(values) == 50
    docs = [json.loads(v) for v in values]
    checker = jsonschema.FormatChecker()
    for doc in docs:
        jsonschema.validate(doc, SCHEMA, format_checker=checker)
        assert doc["node_id"] == node.node_id
    assert sorted(d["key_hash"] for d in docs) == sorted(f"{i:016x}" for i in range(50))
    assert sum("consumer_id" in d for d in docs) == 25
    assert eventually(lambda: metric(node, "strata_analytics_events_published_total") == 50)
    assert metric(node, "strata_analytics_events_received_total") == 53
    assert metric(node, "strata_analytics_events_dropped_total", reason="invalid") == 3


def test_a_batch_over_the_limit_is_refused_whole_and_the_sidecar_carries_on(
    shared: tuple[Node, str, str],
) -> None:
    node, _, _ = shared
    huge = pb.AccessBatch(events=[pb.AccessEvent()] * 1_000_000)  # ~2 MB of empty events
    with pytest.raises(grpc.RpcError) as refused:
        node.stub.ReportAccess(huge, timeout=30)
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "events" in (refused.value.details() or "")
    long_text = event(0, route_id="r" * 100_000)
    assert report(node, [long_text]).rejected == 1
    assert report(node, [event(1)]).accepted == 1
    assert metric(node, "strata_rejected_requests_total", reason="too_many_events") == 1


def test_without_kafka_the_sidecar_answers_disabled_and_counts_the_drops(tmp_path: Path) -> None:
    with SidecarNodes(1, tmp_path, {}, env=clean_env()) as nodes:
        node = nodes.nodes[0]
        ack = report(node, [event(i) for i in range(7)])
        assert ack.disabled and ack.retry_after_ms > 0 and ack.accepted == 0
        assert metric(node, "strata_analytics_events_dropped_total", reason="disabled") == 7


def test_a_frozen_broker_drops_and_counts_then_publishing_resumes(
    tmp_path: Path, private_tansu: PrivateTansu
) -> None:
    private_tansu.start()
    bootstrap, topic = private_tansu.bootstrap, unique("strata.access.test")
    settings = {
        "kafka_bootstrap": bootstrap,
        "kafka_topic": unique("strata.inv.test"),
        "analytics_topic": topic,
        "analytics_linger_ms": "5",
        "analytics_queue_max_events": "100",
    }
    with SidecarNodes(1, tmp_path, settings, env=clean_env()) as nodes:
        node = nodes.nodes[0]
        assert report(node, [event(i) for i in range(10)]).accepted == 10
        assert eventually(lambda: metric(node, "strata_analytics_events_published_total") == 10)
        private_tansu.pause()
        try:
            acks = [report(node, [event(i) for i in range(100)]) for _ in range(3)]
            assert sum(a.accepted for a in acks) == 100  # the producer queue's bound
            assert sum(a.dropped for a in acks) == 200
            assert metric(node, "strata_analytics_events_dropped_total", reason="queue-full") == 200
            assert metric(node, "strata_analytics_queue_events") <= 100
            # librdkafka gives up on the queued ones after its message timeout (10 s)
            assert eventually(
                lambda: (
                    metric(
                        node, "strata_analytics_events_dropped_total", reason="broker-unavailable"
                    )
                    == 100
                ),
                timeout=40,
            )
            assert node.outcome(b"still-serving") == "MISS"  # the cache carries on
        finally:
            private_tansu.resume()
        assert eventually(
            lambda: (
                report(node, [event(7)]).accepted == 1
                and metric(node, "strata_analytics_events_published_total") >= 11
            ),
            timeout=60,
        )
    values = consume(bootstrap, topic, 11, timeout=10)
    assert len(values) >= 11
