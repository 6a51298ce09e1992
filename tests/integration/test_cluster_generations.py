"""Tag generations shared through Redis: two engines (two sidecars), each with its own
memory tier plus one shared Memcached tier, sharing `RedisGenerations`; purges cost O(1)
Redis commands; an unreachable Redis leaves generations node-local and lookups fast.

Every test uses namespaces of its own on the services' Redis and Memcached.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from functools import partial
from typing import Any

import pytest

from sidecar.cluster.generations import OBSERVER_TIER
from sidecar.core.clock import SystemClock
from sidecar.core.model import Outcome
from tests.support import entries
from tools.stack import free_port

pytestmark = pytest.mark.integration

CLOCK = SystemClock()
CACHE_MS = 100


entry = partial(entries.entry, body=b"body", headers=())


class CountingClient:
    """Wraps a redis client, counting the commands sent through it."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.commands: list[str] = []

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.inner, name)
        if name in {"ping", "aclose"} or not callable(attr):
            return attr
        if name == "pipeline":  # built synchronously; one round trip when executed

            def build(*args: Any, **kwargs: Any) -> Any:
                self.commands.append(name)
                return attr(*args, **kwargs)

            return build

        async def call(*args: Any, **kwargs: Any) -> Any:
            self.commands.append(name)
            return await attr(*args, **kwargs)

        return call


@pytest.fixture
def namespace() -> str:
    return "g" + uuid.uuid4().hex[:12]


@pytest.fixture
def make_engine(shared_engines: Callable[..., Any]) -> Callable[..., Any]:
    return partial(shared_engines, cache_ms=CACHE_MS)


async def test_a_tag_purge_on_one_sidecar_misses_on_the_other_within_cache_ms(
    make_engine: Callable[..., Any],
) -> None:
    a, gens_a, _ = await make_engine()
    b, gens_b, _ = await make_engine()
    await gens_a.open()
    await gens_b.open()
    await a.store(b"v1:r:1", entry(tags=("users",)), route="v1:r:")
    await a.store(b"v1:r:2", entry(tags=("orders",)), route="v1:r:")
    # B reads them from the shared Memcached tier, caching the generations
    assert (await b.lookup(b"v1:r:1")).tier == "memcached"
    assert (await b.lookup(b"v1:r:1")).tier == "memory"
    assert await a.invalidate_tag("users") == 1  # A's memory copy
    assert (await a.lookup(b"v1:r:1")).outcome is Outcome.MISS  # at once on A
    deadline = time.monotonic() + CACHE_MS / 1000 + 0.5
    while (await b.lookup(b"v1:r:1")).outcome is not Outcome.MISS:
        assert time.monotonic() < deadline, "B still serves the purged entry"
        await asyncio.sleep(0.01)
    assert (await b.lookup(b"v1:r:2")).outcome is Outcome.HIT
    # route purges travel the same way
    await asyncio.sleep(CACHE_MS / 1000)
    assert (await b.lookup(b"v1:r:2")).outcome is Outcome.HIT
    await a.invalidate_route("v1:r:")
    await asyncio.sleep(CACHE_MS / 1000 + 0.05)
    assert (await b.lookup(b"v1:r:2")).outcome is Outcome.MISS


async def test_a_purge_costs_o1_redis_commands_whatever_the_entries(
    make_engine: Callable[..., Any],
) -> None:
    engine, gens, _ = await make_engine(cache_ms=60_000)
    await gens.open()
    counting = CountingClient(gens._client)
    gens._client = counting
    for n in (1, 200):
        tag = f"t{n}"
        for i in range(n):
            await engine.store(f"k{tag}-{i}".encode(), entry(tags=(tag,)))
        counting.commands.clear()
        assert await engine.invalidate_tag(tag) == n  # eager in memory only
        assert counting.commands == ["execute_command"], n  # one script
    # reads of a hot tag: one MGET per cache_ms, not one per lookup
    await engine.store(b"khot", entry(tags=("hot",)))
    counting.commands.clear()
    for _ in range(50):
        assert (await engine.lookup(b"khot")).outcome is Outcome.HIT
    assert counting.commands == []  # the store already read (and cached) it


async def test_redis_down_generations_fall_back_locally_and_lookups_stay_fast(
    make_engine: Callable[..., Any],
) -> None:
    engine, _gens, observer = await make_engine(url=f"redis://127.0.0.1:{free_port()}/0")
    await engine.store(b"v1:r:down", entry(tags=("t",)))
    assert (await engine.lookup(b"v1:r:down")).outcome is Outcome.HIT
    started = time.monotonic()
    for _ in range(100):
        assert (await engine.lookup(b"v1:r:down")).outcome is Outcome.HIT
    assert time.monotonic() - started < 0.5
    assert any(e[:2] == ("tier_error", OBSERVER_TIER) for e in observer.events)
    await engine.invalidate_tag("t")  # applies on this node
    assert (await engine.lookup(b"v1:r:down")).outcome is Outcome.MISS
