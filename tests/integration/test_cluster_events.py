"""Invalidation events between real sidecar processes: two nodes sharing Redis and a broker.

Every node caches the Redis purge generations for 60 s here (``generations_cache_ms``), so a
node that stops serving a purged entry within seconds learned the purge from the event, not
from Redis. Each test uses its own topic and namespace on the shared servers, or a private
broker it stops and starts itself.
"""

from __future__ import annotations

import functools
import json
import time
import urllib.request
import uuid
from collections.abc import Callable, Generator, Iterator
from pathlib import Path

import pytest
from confluent_kafka import Producer

from sidecar.cluster.kafka_bus import ensure_topic
from tests.integration.servers import service
from tests.support.kafka import PrivateTansu
from tests.support.sidecar import clean_env
from tools.stack.nodes import Node, SidecarNodes

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

#: A purge must reach the other node well within this (measured: milliseconds).
REACH_S = 15.0


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def eventually(check: Callable[[], bool], timeout: float = REACH_S) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.01)
    return check()


def missed(node: Node, key: bytes) -> bool:
    if node.outcome(key) != "MISS":
        return False
    node.release(key)
    return True


class Cluster:
    """Two sidecars on one topic, and a producer standing for any program outside."""

    def __init__(self, nodes: list[Node], bootstrap: str, topic: str) -> None:
        self.a, self.b = nodes
        self.nodes = nodes
        self.topic = topic
        self.producer = Producer(
            {"bootstrap.servers": bootstrap, "linger.ms": 0, "message.max.bytes": 4_000_000}
        )

    def produce(self, value: bytes | str | dict[str, object]) -> None:
        raw = json.dumps(value).encode() if isinstance(value, dict) else value
        self.producer.produce(self.topic, raw)
        assert self.producer.flush(10) == 0

    def store_everywhere(self, key: bytes, tags: list[str], stale_ms: int = 0) -> None:
        for node in self.nodes:
            node.store(key, tags, stale_ms=stale_ms)
            assert node.outcome(key) == "HIT"

    def all_missed(self, key: bytes) -> bool:
        return all(missed(n, key) for n in self.nodes)

    def wait_ready(self) -> None:
        """Until an event published now reaches both nodes (their consumers hold the topic)."""
        for _ in range(30):
            key, tag = unique("ready").encode(), unique("ready")
            self.store_everywhere(key, [tag])
            self.produce({"v": 1, "tags": [tag]})
            if eventually(functools.partial(self.all_missed, key), 2.0):
                return
        raise AssertionError("the nodes' consumers did not get events")


def node_settings(bootstrap: str, topic: str) -> dict[str, str]:
    return {
        "redis_url": service("STRATA_TEST_REDIS_URL"),
        "namespace": unique("evt"),
        "generations_cache_ms": "60000",
        "kafka_bootstrap": bootstrap,
        "kafka_topic": topic,
    }


def start_cluster(tmp_path: Path, bootstrap: str) -> Generator[Cluster, None, None]:
    topic = unique("strata.test")
    assert ensure_topic(bootstrap, topic, 1)
    with SidecarNodes(2, tmp_path, node_settings(bootstrap, topic), env=clean_env()) as nodes:
        cluster = Cluster(nodes.nodes, bootstrap, topic)
        cluster.wait_ready()
        yield cluster


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    yield from start_cluster(tmp_path, service("STRATA_TEST_KAFKA_BOOTSTRAP"))


def metric(node: Node, name: str, **labels: str) -> float:
    """The value of one sample of `name` at `node`'s /metrics (0 when absent)."""
    url = f"http://127.0.0.1:{node.metrics_port}/metrics"
    with urllib.request.urlopen(url, timeout=5) as reply:
        text = reply.read().decode()
    want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    total = 0.0
    for line in text.splitlines():
        if not line.startswith(name):
            continue
        head, _, value = line.rpartition(" ")
        if head == name and not labels:
            total += float(value)
        elif head.startswith(name + "{"):
            got = ",".join(sorted(head[len(name) + 1 : -1].split(",")))
            if all(part in got.split(",") for part in want.split(",") if part):
                total += float(value)
    return total


def test_a_write_through_one_node_purges_the_other_nodes_memory_copy(cluster: Cluster) -> None:
    key, tag = b"products:42", unique("products")
    cluster.store_everywhere(key, [tag])
    cluster.a.invalidate_tag(tag)  # what the plugin does after a write through node A
    assert missed(cluster.a, key), "the node that purged still serves the entry"
    assert eventually(lambda: missed(cluster.b, key)), "node B never learned the purge"


def test_an_outside_producers_event_purges_every_node(cluster: Cluster) -> None:
    keys = [b"catalog:1", b"catalog:2"]
    tag = unique("catalog")
    for key in keys:
        cluster.store_everywhere(key, [tag])
    cluster.produce(f'{{"v":1,"tags":["{tag}"],"origin":"kcat"}}'.encode())
    assert eventually(lambda: all(missed(n, k) for n in cluster.nodes for k in keys))


def test_a_soft_purge_serves_stale_until_the_entry_is_stored_again(cluster: Cluster) -> None:
    key, tag = b"soft:1", unique("soft")
    cluster.store_everywhere(key, [tag], stale_ms=300_000)
    cluster.produce({"v": 1, "tags": [tag], "soft": True})
    assert eventually(lambda: all(n.outcome(key) == "STALE" for n in cluster.nodes))
    cluster.b.store(key, [tag], stale_ms=300_000)  # the refresh after revalidation
    assert cluster.b.outcome(key) == "HIT"
    assert cluster.a.outcome(key) == "STALE"  # A's own copy was not refreshed


def test_malformed_events_are_skipped_counted_and_the_next_one_applies(cluster: Cluster) -> None:
    key, tag = b"after-bad:1", unique("good")
    cluster.store_everywhere(key, [tag])
    bad = [
        b"{not json",
        b'{"v":2,"tags":["x"]}',
        b'{"v":1,"tags":"not-an-array"}',
        b'{"v":1}',
        b"\xff\xfe",
        b'{"v":1,"tags":["' + b"a" * 1_200_000 + b'"]}',
    ]
    for raw in bad:
        cluster.produce(raw)
    cluster.produce({"v": 1, "tags": [tag]})
    assert eventually(lambda: all(missed(n, key) for n in cluster.nodes))
    for node in cluster.nodes:
        assert metric(node, "strata_invalidation_events_rejected_total") >= len(bad)
        assert node.process.alive()


def test_a_replayed_event_does_no_harm(cluster: Cluster) -> None:
    key, tag = b"replay:1", unique("replay")
    event = {"v": 1, "tags": [tag], "id": unique("evt-id")}
    cluster.store_everywhere(key, [tag])
    cluster.produce(event)
    assert eventually(lambda: all(missed(n, key) for n in cluster.nodes))
    cluster.store_everywhere(key, [tag])  # stored again after the purge: must stay
    cluster.produce(event)  # the same event delivered again
    sentinel_key, sentinel = b"replay:sentinel", unique("sentinel")
    cluster.store_everywhere(sentinel_key, [sentinel])
    cluster.produce({"v": 1, "tags": [sentinel]})  # behind the replay on the same partition
    assert eventually(lambda: all(missed(n, sentinel_key) for n in cluster.nodes))
    assert all(n.outcome(key) == "HIT" for n in cluster.nodes)
    assert all(metric(n, "strata_invalidation_replays_skipped_total") >= 1 for n in cluster.nodes)


def test_the_broker_stopped_and_resumed_mid_run_loses_no_event(
    tmp_path: Path, private_tansu: PrivateTansu
) -> None:
    """Writes through A while the broker answers nothing (SIGSTOP: an outage that keeps the
    broker's log, as a real Kafka's restart does): A purges at once, B keeps serving (the
    generations it caches are 60 s old at most here), and once the broker answers again
    every queued event reaches B, in order, none lost."""
    private_tansu.start()
    gen = start_cluster(tmp_path, private_tansu.bootstrap)
    cluster = next(gen)
    try:
        keys = [f"down:{i}".encode() for i in range(5)]
        tags = [unique("down") for _ in keys]
        for key, tag in zip(keys, tags, strict=True):
            cluster.store_everywhere(key, [tag])
        private_tansu.pause()
        for tag in tags:
            cluster.a.invalidate_tag(tag)
        assert all(missed(cluster.a, key) for key in keys)
        time.sleep(2.0)
        assert all(cluster.b.outcome(key) == "HIT" for key in keys)  # nothing reached B
        private_tansu.resume()
        assert eventually(lambda: all(missed(cluster.b, k) for k in keys), 45.0), "lost"
        assert metric(cluster.a, "strata_invalidation_outbox_dropped_total") == 0
    finally:
        gen.close()
