"""`shared_engines`: engines as separate sidecars would build them, sharing purge
generations through the services' Redis: each has its own memory tier plus one Memcached
tier shared by all. Each test module supplies its own `namespace` fixture; every engine and
its generations are closed at the end of the test."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from sidecar.cluster.generations import RedisGenerations
from sidecar.core.clock import SystemClock
from sidecar.core.observer import RecordingObserver
from sidecar.engine.engine import Engine
from sidecar.tiers.memcached import MemcachedTier, parse_servers
from sidecar.tiers.memory import MemoryTier
from tests.integration.servers import service

CLOCK = SystemClock()

__all__ = ["CLOCK", "shared_engines"]


@pytest.fixture
async def shared_engines(namespace: str) -> AsyncIterator[Callable[..., Any]]:
    """`build(url=None, cache_ms=100, timeout_s=0.2)` -> (engine, generations, observer);
    `url`: another Redis than the services' (a private one a test kills)."""
    opened: list[tuple[Engine, RedisGenerations]] = []

    async def build(
        url: str | None = None, cache_ms: int = 100, timeout_s: float = 0.2
    ) -> tuple[Engine, RedisGenerations, RecordingObserver]:
        observer = RecordingObserver()
        gens = RedisGenerations(
            url or service("STRATA_TEST_REDIS_URL"),
            CLOCK,
            namespace=namespace,
            timeout_s=timeout_s,
            cache_ms=cache_ms,
            observer=observer,
        )
        memcached = MemcachedTier(
            parse_servers(service("STRATA_TEST_MEMCACHED_SERVERS")),
            CLOCK,
            namespace=namespace,
            timeout_s=1.0,
        )
        memory = MemoryTier(1 << 20, CLOCK, admission="always")
        engine = Engine([memory, memcached], CLOCK, observer=observer, generations=gens)
        opened.append((engine, gens))
        return engine, gens, observer

    try:
        yield build
    finally:
        for engine, gens in opened:
            await engine.close()
            await gens.close()
