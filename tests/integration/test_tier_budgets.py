"""Byte budgets over the real Redis, Memcached and PostgreSQL of `make services-up`: a
Redis budget below its usage keeps hot entries out of Redis (not out of PostgreSQL)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable

import psycopg
import pytest
import redis

from sidecar.app import build_engine, open_tiers
from sidecar.config import SidecarConfig
from sidecar.core.clock import SystemClock
from sidecar.core.observer import RecordingObserver
from sidecar.engine.engine import Engine
from tests.integration.servers import services_env
from tests.support.entries import entry

pytestmark = pytest.mark.integration


def _config(**budgets: int) -> SidecarConfig:
    svc = services_env()
    return SidecarConfig(
        redis_url=svc["STRATA_TEST_REDIS_URL"],
        memcached_servers=svc["STRATA_TEST_MEMCACHED_SERVERS"],
        postgres_dsn=svc["STRATA_TEST_POSTGRES_DSN"],
        namespace="bt" + uuid.uuid4().hex[:10],
        postgres_timeout_ms=2000,
        redis_timeout_ms=1000,
        memcached_timeout_ms=1000,
        **budgets,  # type: ignore[arg-type]
    )


Made = tuple[Engine, SidecarConfig, RecordingObserver]
MakeEngine = Callable[..., Awaitable[Made]]


@pytest.fixture
async def make_engine() -> AsyncIterator[MakeEngine]:
    engines: list[Engine] = []

    async def make(**budgets: int) -> Made:
        config = _config(**budgets)
        obs = RecordingObserver()
        engine = build_engine(config, SystemClock(), obs)
        await open_tiers(engine)
        engines.append(engine)
        return engine, config, obs

    yield make
    for engine in engines:
        await engine.close()


async def _store_hot(engine: Engine, key: bytes) -> None:
    for _ in range(3):  # hot: above shared_min_hits
        await engine.lookup(key)
    await engine.store(
        key, entry(body=b"small hot body", headers=((b"content-type", b"text/plain"),))
    )


def _in_redis(config: SidecarConfig, key: bytes) -> bool:
    client = redis.Redis.from_url(config.redis_url)
    try:
        return bool(client.exists(config.namespace.encode() + b":e:" + key))
    finally:
        client.close()


def _in_postgres(config: SidecarConfig, key: bytes) -> bool:
    with psycopg.connect(config.postgres_dsn) as conn:
        row = conn.execute(
            "SELECT 1 FROM strata_entries WHERE namespace = %s AND key = %s",
            (config.namespace, key),
        ).fetchone()
    return row is not None


async def test_tiny_redis_budget_keeps_hot_entries_out_of_redis(make_engine: MakeEngine) -> None:
    engine, config, obs = await make_engine(redis_max_bytes=1)
    assert engine.budgets is not None
    await engine.budgets.sample()
    assert engine.budgets.over_budget() == {"redis"}
    await _store_hot(engine, b"hot")
    assert not _in_redis(config, b"hot")
    assert _in_postgres(config, b"hot")
    assert ("placement_skipped", "redis", "budget") in obs.events
    snap = {s.name: s for s in engine.snapshot()}
    assert snap["redis"].max_bytes == 1
    assert snap["redis"].bytes > 1  # INFO used_memory of the whole server


async def test_no_budget_writes_hot_entries_to_redis(make_engine: MakeEngine) -> None:
    engine, config, obs = await make_engine()
    await _store_hot(engine, b"hot")
    assert _in_redis(config, b"hot")
    assert _in_postgres(config, b"hot")
    assert not [e for e in obs.events if e[0] == "placement_skipped"]
    # without a budget the shared tiers' bytes are still sampled and reported, never "over"
    await engine.budgets.sample()
    assert engine.budgets.over_budget() == frozenset()
    for name in ("redis", "memcached", "postgres"):
        used = engine.budgets.usage(name)
        assert used is not None and used > 0, name


async def test_every_shared_tier_reports_its_usage(make_engine: MakeEngine) -> None:
    engine, _, _ = await make_engine(
        redis_max_bytes=1 << 40, memcached_max_bytes=1 << 40, postgres_max_bytes=1 << 40
    )
    assert engine.budgets is not None
    await _store_hot(engine, b"k")
    await engine.budgets.sample()
    assert engine.budgets.over_budget() == frozenset()
    for name in ("redis", "memcached", "postgres"):
        used = engine.budgets.usage(name)
        assert used is not None and used > 0, name


async def test_memcached_reports_its_servers_limit_with_its_usage(make_engine: MakeEngine) -> None:
    """`-m` of the test memcached, read by the same `stats` call as the usage: what shared
    admission measures Memcached's room against."""
    engine, _, _ = await make_engine()
    memcached = next(t for t in engine._tiers if t.name == "memcached")
    assert getattr(memcached, "server_limit_bytes", "absent") is None  # not read yet
    used = await memcached.usage()
    limit = getattr(memcached, "server_limit_bytes", None)
    assert isinstance(limit, int) and limit >= 1 << 20 and used is not None and used < limit
