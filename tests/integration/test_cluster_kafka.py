"""The Kafka invalidation bus against a real broker (Tansu): two nodes each see every event,
offsets are committed only after apply, bad events are skipped, and a broker that stops and
comes back loses nothing that was queued meanwhile.

Each test uses topics of its own (unique names) on the shared broker, or a private broker it
starts, stops and restarts itself (never the shared one).
"""

from __future__ import annotations

import asyncio
import contextlib
import statistics
import time
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from sidecar.cluster.kafka_bus import (
    BadEvent,
    KafkaBus,
    KafkaBusConfig,
    Position,
    ensure_topic,
)
from tests.integration.servers import HOST, service
from tests.support.kafka import PrivateTansu
from tools.services.procs import free_port

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

FAST: dict[str, Any] = {"retry_interval_s": 0.2, "send_timeout_s": 2.0, "partition_refresh_s": 1.0}


class Node:
    """A bus whose `apply` records what it got; `hold` values wait for `release`."""

    def __init__(self, config: KafkaBusConfig, fail: Callable[[bytes], Exception | None]):
        self.got: list[tuple[bytes, Position]] = []
        self.rejected: list[tuple[bytes, Position, BadEvent]] = []
        self._fail = fail
        self.hold: set[bytes] = set()
        self.release = asyncio.Event()
        self._changed = asyncio.Event()
        self.bus = KafkaBus(config, self._apply, self._reject)

    async def _apply(self, value: bytes, where: Position) -> None:
        if value in self.hold:
            await self.release.wait()
        error = self._fail(value)
        if error is not None:
            raise error
        self.got.append((value, where))
        self._changed.set()

    def _reject(self, value: bytes, where: Position, bad: BadEvent) -> None:
        self.rejected.append((value, where, bad))
        self._changed.set()

    def values(self) -> list[bytes]:
        return [value for value, _ in self.got]

    async def wait_for(self, count: int, timeout: float = 15.0) -> list[bytes]:
        """The values applied once there are at least `count` (fails after `timeout`)."""
        deadline = time.monotonic() + timeout
        while len(self.got) < count:
            left = deadline - time.monotonic()
            assert left > 0, f"{len(self.got)} of {count} events applied: {self.values()}"
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), min(left, 0.5))
        return self.values()


def never(_value: bytes) -> Exception | None:
    return None


def unique(prefix: str) -> str:
    return f"strata.test.{prefix}.{uuid.uuid4().hex[:10]}"


@pytest.fixture
def bootstrap() -> str:
    return service("STRATA_TEST_KAFKA_BOOTSTRAP")


@pytest.fixture
async def nodes() -> AsyncIterator[list[Node]]:
    """Nodes a test made (`make`); each bus is closed at the end."""
    made: list[Node] = []
    try:
        yield made
    finally:
        for node in made:
            node.release.set()
            await node.bus.close(0.5)


async def make(
    nodes: list[Node],
    bootstrap: str,
    topic: str,
    *,
    node_id: str | None = None,
    fail: Callable[[bytes], Exception | None] = never,
    ready: bool = True,
    **settings: object,
) -> Node:
    options: dict[str, Any] = {**FAST, **settings}
    config = KafkaBusConfig(
        bootstrap=bootstrap, node_id=node_id or uuid.uuid4().hex, topic=topic, **options
    )
    node = Node(config, fail)
    nodes.append(node)
    await node.bus.start()
    if ready:
        assert await node.bus.wait_ready(15), "the consumer did not get its partitions"
    return node


async def new_topic(bootstrap: str, prefix: str, partitions: int = 1) -> str:
    topic = unique(prefix)
    assert await asyncio.to_thread(ensure_topic, bootstrap, topic, partitions)
    return topic


async def test_two_nodes_each_apply_every_event(bootstrap: str, nodes: list[Node]) -> None:
    topic = await new_topic(bootstrap, "broadcast", partitions=3)
    a = await make(nodes, bootstrap, topic)
    b = await make(nodes, bootstrap, topic)
    sent = []
    for i in range(10):
        for name, node in (("a", a), ("b", b)):
            value = f"{name}{i}".encode()
            assert node.bus.publish(f"k{i}".encode(), value, [("origin", name.encode())])
            sent.append(value)
    for node in (a, b):
        got = await node.wait_for(len(sent))
        assert sorted(got) == sorted(sent)
        per_key: dict[tuple[bytes, int], list[int]] = {}
        for value, where in node.got:  # one key, one partition: publish order kept
            per_key.setdefault((value[:1], where.partition), []).append(int(value[1:]))
        assert all(seq == sorted(seq) for seq in per_key.values())
    assert a.bus.stats().sent == 10 and b.bus.stats().sent == 10
    assert a.bus.stats().applied == b.bus.stats().applied == 20


async def test_an_event_not_yet_applied_is_delivered_again(
    bootstrap: str, nodes: list[Node]
) -> None:
    """Commit after apply: a node stopped while applying gets the event again on restart,
    and not the one before it, which it had applied."""
    topic = await new_topic(bootstrap, "redeliver")
    a = await make(nodes, bootstrap, topic)
    b = await make(nodes, bootstrap, topic, node_id="node-b")
    b.hold.add(b"second")
    a.bus.publish(b"k", b"first")
    await b.wait_for(1)
    a.bus.publish(b"k", b"second")
    await asyncio.sleep(0.5)  # b is now inside apply("second"), which never ends
    assert b.values() == [b"first"]
    report = await b.bus.close(0.3)
    assert report.consumer_stopped
    nodes.remove(b)

    again = await make(nodes, bootstrap, topic, node_id="node-b")
    assert await again.wait_for(1) == [b"second"]
    await asyncio.sleep(0.3)
    assert again.values() == [b"second"]


async def test_a_transient_failure_is_retried_in_place(bootstrap: str, nodes: list[Node]) -> None:
    topic = await new_topic(bootstrap, "retry")
    failures = {b"flaky": 2}

    def fail(value: bytes) -> Exception | None:
        if failures.get(value, 0) > 0:
            failures[value] -= 1
            return ConnectionError("Redis went away")
        return None

    a = await make(nodes, bootstrap, topic)
    b = await make(nodes, bootstrap, topic, fail=fail)
    for value in (b"one", b"flaky", b"three"):
        a.bus.publish(b"k", value)
    assert await b.wait_for(3) == [b"one", b"flaky", b"three"]
    assert b.bus.stats().apply_failures == 2


async def test_a_bad_event_is_skipped_counted_and_dead_lettered(
    bootstrap: str, nodes: list[Node]
) -> None:
    topic = await new_topic(bootstrap, "bad")
    dead = await new_topic(bootstrap, "dlq")

    def fail(value: bytes) -> Exception | None:
        return BadEvent("malformed_json", "not JSON") if value.startswith(b"{bad") else None

    a = await make(nodes, bootstrap, topic)
    b = await make(nodes, bootstrap, topic, fail=fail, dead_letter_topic=dead)
    dlq = await make(nodes, bootstrap, dead)
    a.bus.publish(b"k", b"{bad json")
    a.bus.publish(b"k", b"good")
    assert await b.wait_for(1) == [b"good"]
    assert [(v, w.offset, e.reason) for v, w, e in b.rejected] == [
        (b"{bad json", 0, "malformed_json")
    ]
    stats = b.bus.stats()
    assert (stats.rejected, stats.applied, stats.dead_lettered) == (1, 1, 1)
    assert await dlq.wait_for(1) == [b"{bad json"]


async def test_close_reports_what_a_dead_broker_left_unsent() -> None:
    """A broker down at start: start returns at once, events queue, close gives up in time."""
    config = KafkaBusConfig(bootstrap=f"{HOST}:{free_port()}", node_id="lonely", **FAST)
    bus = KafkaBus(config, _ignore)
    began = time.monotonic()
    await bus.start()
    assert time.monotonic() - began < 2
    for i in range(3):
        assert bus.publish(None, f"e{i}".encode())
    await asyncio.sleep(0.3)
    assert bus.stats().queued == 3
    assert not await bus.wait_ready(0.2)
    began = time.monotonic()
    report = await bus.close(0.5)
    assert report.unsent == 3 and report.consumer_stopped
    assert time.monotonic() - began < 5
    assert bus.stats().dropped == 3


async def _ignore(_value: bytes, _where: Position) -> None:
    return None


# -- a private broker, stopped and started again -----------------------------------------


@pytest.fixture
def tansu(private_tansu: PrivateTansu) -> PrivateTansu:
    return private_tansu


async def test_events_queued_while_the_broker_is_down_arrive_in_order(
    tansu: PrivateTansu, nodes: list[Node]
) -> None:
    """Both nodes run; the broker stops; 20 events queue at A; the broker comes back (empty:
    memory storage, so the topic is created again) and B applies all 20, in order.

    Nothing is consumed before the stop on purpose: Tansu's memory storage restarts offsets
    at 0, so a consumer already past offset 0 could skip the first events of the new log if
    they were produced before its next fetch (a real Kafka keeps the log across restarts)."""
    await asyncio.to_thread(tansu.start)
    topic = unique("restart")
    assert await asyncio.to_thread(ensure_topic, tansu.bootstrap, topic, 1)
    a = await make(nodes, tansu.bootstrap, topic)
    b = await make(nodes, tansu.bootstrap, topic)

    await asyncio.to_thread(tansu.stop)
    sent = [f"e{i:02d}".encode() for i in range(20)]
    for value in sent:
        assert a.bus.publish(b"key", value)
    await asyncio.sleep(1.0)
    assert a.bus.stats().queued == 20 and a.bus.stats().sent == 0

    await asyncio.to_thread(tansu.start)
    await asyncio.to_thread(ensure_topic, tansu.bootstrap, topic, 1)
    assert await b.wait_for(20, timeout=25) == sent
    stats = a.bus.stats()
    assert (stats.queued, stats.sent, stats.dropped) == (0, 20, 0)


@pytest.mark.benchmark
async def test_publish_to_apply_latency_on_the_other_node(
    bootstrap: str, nodes: list[Node], capsys: pytest.CaptureFixture[str]
) -> None:
    """publish on A -> apply on B, 200 events 5 ms apart (both nodes in this process), after
    one warm-up event (an idempotent producer's first send waits for its producer id, about
    0.5-1 s after start). Prints p50/p99; asserts only a generous bound."""
    topic = await new_topic(bootstrap, "latency")
    a = await make(nodes, bootstrap, topic)
    b = await make(nodes, bootstrap, topic)
    a.bus.publish(b"k", b"warm-up")
    await b.wait_for(1)
    b.got.clear()
    seen: dict[bytes, float] = {}
    apply_inner = b.bus._consumer._apply  # record the time of apply, not of the later check

    async def timed(value: bytes, where: Position) -> None:
        seen[value] = time.perf_counter()
        await apply_inner(value, where)

    b.bus._consumer._apply = timed
    published: dict[bytes, float] = {}
    for i in range(200):
        value = f"e{i}".encode()
        published[value] = time.perf_counter()
        a.bus.publish(b"k", value)
        await asyncio.sleep(0.005)
    await b.wait_for(200)
    latencies = sorted((seen[v] - t) * 1000 for v, t in published.items())
    p50 = statistics.median(latencies)
    p99 = latencies[int(len(latencies) * 0.99) - 1]
    with capsys.disabled():
        print(f"\npublish->apply on the other node over 200 events: "
              f"p50 {p50:.1f} ms, p99 {p99:.1f} ms, max {latencies[-1]:.1f} ms "
              f"(fetch.wait.max.ms={a.bus.config.fetch_wait_max_ms})")  # fmt: skip
    assert p99 < 2000
