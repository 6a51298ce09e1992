"""Invalidation events end to end: two `Invalidations` over two engines sharing Redis (each
with its own memory tier), on a real broker. A purge submitted on A makes B miss its memory
copy; an outside producer's raw JSON purges both; malformed events are skipped and the next
good one applied; with the broker down A still purges at once, and B once it is back.

The Redis generations are cached for a minute here, so only the event can make B miss in
time: a miss within the bound is the event's doing. Each test uses a topic and a Redis
namespace of its own (or a private broker it stops and restarts).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

import pytest
from confluent_kafka import Producer

from sidecar.cluster.generations import RedisGenerations
from sidecar.cluster.kafka_bus import KafkaBus, KafkaBusConfig, ensure_topic
from sidecar.core.clock import SystemClock
from sidecar.core.model import Outcome
from sidecar.core.observer import RecordingObserver
from sidecar.engine.engine import Engine
from sidecar.events import InvalidationEvent
from sidecar.invalidation import Invalidations
from sidecar.tiers.base import Tier
from sidecar.tiers.memory import MemoryTier
from sidecar.tiers.redis import RedisTier
from tests.integration.servers import service
from tests.support import entries
from tests.support.kafka import PrivateTansu

pytestmark = [pytest.mark.integration, pytest.mark.timeout(90)]

CLOCK = SystemClock()
#: How long B may take to miss after a purge elsewhere (generous: a loaded machine).
BOUND_S = 10.0
KEY = b"v1:rt:GET:/products/42"
entry = partial(entries.entry, body=b"body", headers=())


@dataclass
class Node:
    engine: Engine
    generations: RedisGenerations
    observer: RecordingObserver
    service: Invalidations
    bus: KafkaBus

    async def outcome(self, key: bytes = KEY) -> Outcome:
        return (await self.engine.lookup(key)).outcome


@pytest.fixture
def namespace() -> str:
    return "i" + uuid.uuid4().hex[:12]


@pytest.fixture
async def make_node(namespace: str) -> AsyncIterator[Callable[..., Any]]:
    made: list[Node] = []

    async def build(bootstrap: str, topic: str, ready: bool = True) -> Node:
        observer = RecordingObserver()
        url = service("STRATA_TEST_REDIS_URL")
        gens = RedisGenerations(
            url, CLOCK, namespace=namespace, timeout_s=1.0, cache_ms=60_000, observer=observer
        )
        await gens.open()
        tiers: list[Tier] = [
            MemoryTier(1 << 20, CLOCK, admission="always"),
            RedisTier(url, CLOCK, namespace=namespace, timeout_s=1.0),
        ]
        engine = Engine(tiers, CLOCK, observer=observer, generations=gens)
        for tier in tiers:
            await tier.open()
        node_id = "node-" + uuid.uuid4().hex[:8]
        invalidations = Invalidations(engine, node_id, CLOCK, observer)
        config = KafkaBusConfig(
            bootstrap=bootstrap,
            node_id=node_id,
            topic=topic,
            retry_interval_s=0.2,
            send_timeout_s=2.0,
            partition_refresh_s=1.0,
        )
        bus = KafkaBus(config, invalidations.receive)
        await bus.start()
        invalidations.publish_through(bus)
        node = Node(engine, gens, observer, invalidations, bus)
        made.append(node)
        if ready:
            assert await bus.wait_ready(20), "the consumer did not get its partitions"
        return node

    try:
        yield build
    finally:
        for node in made:
            await node.bus.close(0.5)
            await node.engine.close()
            await node.generations.close()


async def new_topic(bootstrap: str) -> str:
    topic = f"strata.test.inv.{uuid.uuid4().hex[:10]}"
    assert await asyncio.to_thread(ensure_topic, bootstrap, topic, 1)
    return topic


async def cached_on(node: Node, key: bytes = KEY, tag: str = "products:42") -> None:
    """`key` stored through `node` and answered from its memory tier."""
    await node.engine.store(key, entry(tags=(tag,)), route="v1:rt:")
    assert (await node.engine.lookup(key)).tier == "memory"


async def misses_within(node: Node, bound_s: float = BOUND_S, key: bytes = KEY) -> float:
    started = time.monotonic()
    while await node.outcome(key) is not Outcome.MISS:
        waited = time.monotonic() - started
        assert waited < bound_s, f"still served {waited:.1f} s after the purge"
        await asyncio.sleep(0.005)
    return time.monotonic() - started


def produce(bootstrap: str, topic: str, *values: bytes) -> None:
    """Publish raw messages as any Kafka client (kcat) would."""
    producer = Producer({"bootstrap.servers": bootstrap})
    for value in values:
        producer.produce(topic, value)
    assert producer.flush(10) == 0


async def test_a_purge_submitted_on_a_reaches_bs_memory(make_node: Callable[..., Any]) -> None:
    bootstrap = service("STRATA_TEST_KAFKA_BOOTSTRAP")
    topic = await new_topic(bootstrap)
    a, b = await make_node(bootstrap, topic), await make_node(bootstrap, topic)
    await cached_on(a)
    await cached_on(b)
    done = await a.service.submit(InvalidationEvent(tags=("products:42",)))
    assert done.queued and done.dropped == 1
    assert await a.outcome() is Outcome.MISS  # at once on A
    await misses_within(b)
    # A reads its own event back and does not apply it again
    deadline = time.monotonic() + BOUND_S
    while ("event_replay_skipped", "own") not in a.observer.events:
        assert time.monotonic() < deadline, "A never read its own event back"
        await asyncio.sleep(0.02)
    assert ("event_applied", "remote") in [e[:2] for e in b.observer.events]
    # a route purge (the plugin's Invalidate(route)) travels the same way
    await cached_on(a, b"v1:rt:GET:/other", "t2")
    await cached_on(b, b"v1:rt:GET:/other", "t2")
    await a.service.submit(InvalidationEvent(routes=("v1:rt:",)))
    await misses_within(b, key=b"v1:rt:GET:/other")


async def test_an_outside_producers_event_purges_both_and_bad_ones_are_skipped(
    make_node: Callable[..., Any],
) -> None:
    bootstrap = service("STRATA_TEST_KAFKA_BOOTSTRAP")
    topic = await new_topic(bootstrap)
    a, b = await make_node(bootstrap, topic), await make_node(bootstrap, topic)
    await cached_on(a)
    await cached_on(b)
    bad = [b"{not json", b'{"v":2,"tags":["products:42"]}', b'{"v":1,"tags":"products:42"}']
    good = b'{"v":1,"urls":["/elsewhere"],"tags":["products:42"],"origin":"kcat"}'
    await asyncio.to_thread(produce, bootstrap, topic, *bad, good)
    await misses_within(a)
    await misses_within(b)
    for node in (a, b):
        rejected = [e[1] for e in node.observer.events if e[0] == "event_rejected"]
        assert rejected == ["malformed_json", "unsupported_version", "wrong_type"]
        assert node.bus.stats().rejected == 3


async def test_with_the_broker_down_a_purges_at_once_and_b_once_it_is_back(
    tmp_path: Any, make_node: Callable[..., Any]
) -> None:
    tansu = PrivateTansu(str(tmp_path))
    try:
        await asyncio.to_thread(tansu.start)
        topic = f"strata.test.inv-restart.{uuid.uuid4().hex[:8]}"
        assert await asyncio.to_thread(ensure_topic, tansu.bootstrap, topic, 1)
        a = await make_node(tansu.bootstrap, topic)
        b = await make_node(tansu.bootstrap, topic)
        await cached_on(a)
        await cached_on(b)
        await asyncio.to_thread(tansu.stop)
        done = await a.service.submit(InvalidationEvent(tags=("products:42",)))
        assert done.queued
        assert await a.outcome() is Outcome.MISS  # shared tiers and A's memory, now
        await asyncio.sleep(1.0)
        assert a.bus.stats().queued == 1
        assert await b.outcome() is Outcome.HIT  # B has not heard (generations cached)
        # Memory storage: the broker comes back empty, the topic is made again.
        await asyncio.to_thread(tansu.start)
        await asyncio.to_thread(ensure_topic, tansu.bootstrap, topic, 1)
        await misses_within(b, bound_s=30)
        assert a.bus.stats().sent == 1
    finally:
        await asyncio.to_thread(tansu.stop)
        tansu._log.close()
