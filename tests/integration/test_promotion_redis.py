"""Promotion on real Redis: two nodes' engines (built as the sidecar builds them, memory +
Redis, defaults) share a namespace. A key fetched once on node A is cold, so its store keeps
it in A's memory; the hit that makes it hot on A writes it to Redis, and node B, which never
fetched it, is answered from Redis instead of going to the origin."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest
import redis

from sidecar.app import build_engine, build_generations, open_tiers
from sidecar.config import SidecarConfig
from sidecar.core.clock import SystemClock
from sidecar.core.model import Outcome
from sidecar.core.observer import RecordingObserver
from sidecar.engine.engine import Engine
from tests.integration.servers import services_env
from tests.support.entries import entry

pytestmark = pytest.mark.integration


@pytest.fixture
async def nodes() -> AsyncIterator[tuple[Engine, Engine, SidecarConfig, RecordingObserver]]:
    config = SidecarConfig(
        redis_url=services_env()["STRATA_TEST_REDIS_URL"],
        namespace="pr" + uuid.uuid4().hex[:10],
        redis_timeout_ms=1000,
    )
    observer, clock = RecordingObserver(), SystemClock()
    made = []
    for seen in (observer, RecordingObserver()):  # as sidecar.serve builds them
        generations = build_generations(config, clock, seen)
        await generations.open()
        engine = build_engine(config, clock, seen, generations=generations)
        await open_tiers(engine)
        made.append((engine, generations))
    yield made[0][0], made[1][0], config, observer
    for engine, generations in made:
        await engine.close()
        await generations.close()
    client = redis.Redis.from_url(config.redis_url)
    try:
        keys = list(client.scan_iter(match=config.namespace + ":*", count=1000))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


async def test_a_key_that_turns_hot_on_one_node_is_served_to_the_other_from_redis(
    nodes: tuple[Engine, Engine, SidecarConfig, RecordingObserver],
) -> None:
    a, b, _, observer = nodes
    key = b"GET|api.example|/products/promoted"
    assert (await a.lookup(key)).outcome is Outcome.MISS
    await a.store(key, entry(body=b'{"id": 7}', tags=("products",)))
    assert (await b.lookup(key)).outcome is Outcome.MISS  # cold on A: not shared yet
    hit = await a.lookup(key)
    assert hit.outcome is Outcome.HIT and hit.tier == "memory"
    await a._reads.promoter.drain()
    assert ("promoted", "redis", "stored") in observer.events
    on_b = await b.lookup(key)
    assert on_b.outcome is Outcome.HIT and on_b.tier == "redis"
    assert on_b.entry is not None and on_b.entry.body == b'{"id": 7}'


async def test_a_promoted_copy_carries_its_tag_generations_so_a_purge_covers_it(
    nodes: tuple[Engine, Engine, SidecarConfig, RecordingObserver],
) -> None:
    a, b, _, _ = nodes
    key = b"GET|api.example|/products/purged"
    await a.lookup(key)
    await a.store(key, entry(body=b"old", tags=("p",)))
    await a.lookup(key)
    await a._reads.promoter.drain()
    await a.invalidate_tag("p")
    assert (await b.lookup(key)).outcome is Outcome.MISS  # the promoted copy is judged
    assert (await a.lookup(key)).outcome is Outcome.MISS


async def test_while_redis_has_room_a_first_fetch_is_shared_at_once() -> None:
    """With a budget (or a maxmemory) Redis is far from, the first store of a key goes to
    Redis: node B is answered from there before node A ever hits it; with the room
    fraction at 0 it is not."""
    url = services_env()["STRATA_TEST_REDIS_URL"]
    client = redis.Redis.from_url(url)
    used = int(client.info("memory")["used_memory"])
    budget = used + (1 << 30)
    for fraction, shared in ((0.8, True), (0.0, False)):
        config = SidecarConfig(
            redis_url=url,
            namespace="pr" + uuid.uuid4().hex[:10],
            redis_max_bytes=budget,
            shared_room_fraction=fraction,
        )
        a = build_engine(config, SystemClock(), RecordingObserver())
        b = build_engine(config, SystemClock(), RecordingObserver())
        try:
            for engine in (a, b):
                await open_tiers(engine)
                await engine._placer.budgets.sample()
            key = b"GET|api.example|/first"
            await a.lookup(key)
            await a.store(key, entry(body=b"first"))
            found = await b.lookup(key)
            assert (found.outcome is Outcome.HIT) is shared, fraction
        finally:
            for engine in (a, b):
                await engine.close()
            keys = list(client.scan_iter(match=config.namespace + ":*", count=1000))
            if keys:
                client.delete(*keys)
    client.close()


async def test_redis_maxmemory_alone_gives_the_room_rule_its_limit() -> None:
    """The deploy stack's Redis has `maxmemory` and Strata no budget of its own: the limit
    is read with the usage sample, and while Redis is far below it a first store is shared.
    The test server runs without one, so it is set for this test (4 GiB: nothing is
    evicted) and put back after; the suite runs one test at a time."""
    url = services_env()["STRATA_TEST_REDIS_URL"]
    client = redis.Redis.from_url(url)
    before = str(client.config_get("maxmemory")["maxmemory"])
    config = SidecarConfig(redis_url=url, namespace="prm" + uuid.uuid4().hex[:10])
    a = build_engine(config, SystemClock(), RecordingObserver())
    b = build_engine(config, SystemClock(), RecordingObserver())
    try:
        for engine in (a, b):
            await open_tiers(engine)
        redis_tier = a._tiers[1]
        assert getattr(redis_tier, "server_limit_bytes", "absent") is None  # not read yet
        await a._placer.budgets.sample()
        assert getattr(redis_tier, "server_limit_bytes", "absent") is None  # no maxmemory
        assert a._placer.budgets.roomy() == frozenset()  # no known limit: strict
        client.config_set("maxmemory", str(4 << 30))
        await a._placer.budgets.sample()
        assert getattr(redis_tier, "server_limit_bytes", None) == 4 << 30
        assert a._placer.budgets.roomy() == {"redis"}
        key = b"GET|api.example|/maxmemory"
        await a.lookup(key)
        await a.store(key, entry(body=b"shared at once"))
        found = await b.lookup(key)
        assert found.outcome is Outcome.HIT and found.tier == "redis"
    finally:
        client.config_set("maxmemory", before)
        for engine in (a, b):
            await engine.close()
        keys = list(client.scan_iter(match=config.namespace + ":*", count=1000))
        if keys:
            client.delete(*keys)
        client.close()
