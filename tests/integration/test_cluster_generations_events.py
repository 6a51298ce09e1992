"""Purges applied once per event and soft purges, with generations shared through Redis:
two engines (two sidecars), each with its own memory tier plus one shared Memcached tier,
sharing `RedisGenerations` (cache_ms = 1 s, the default). The second node to apply an event
bumps nothing yet sees the purge at once; a soft purge serves stale on both nodes; a
once-purge made while Redis is dead applies here at once and is replayed.

Every test uses namespaces of its own on the services' Redis and Memcached, or a private
redis-server on a free port.
"""

from __future__ import annotations

import asyncio
import subprocess
import time
import uuid
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import redis

from sidecar.core.clock import SystemClock
from sidecar.core.model import Outcome
from tests.integration.servers import HOST, start_redis
from tests.support import entries
from tools.stack import free_port

pytestmark = pytest.mark.integration

CLOCK = SystemClock()
CACHE_MS = 1000
SWR = 60_000

entry = partial(entries.entry, body=b"body", headers=(), ttl_ms=600_000)

Build = Callable[..., Any]


async def text(client: redis.asyncio.Redis, key: str) -> str:
    value = await client.get(key)
    assert isinstance(value, bytes), key
    return value.decode()


@pytest.fixture
def namespace() -> str:
    return "ge" + uuid.uuid4().hex[:12]


@pytest.fixture
def make_engine(shared_engines: Build) -> Build:
    return partial(shared_engines, cache_ms=CACHE_MS, timeout_s=0.5)


async def test_an_event_applied_on_two_nodes_bumps_once_and_is_current_at_once(
    make_engine: Build, namespace: str, raw: redis.asyncio.Redis
) -> None:
    a, _, _ = await make_engine()
    b, _, _ = await make_engine()
    await a.store(b"old", entry(tags=("t",)))
    assert (await b.lookup(b"old")).tier == "memcached"  # B caches t's value and the entry
    assert await a.purge_tags(["t"], once="e1") == 1  # A's memory copy
    bumped = await raw.get(f"{namespace}:g:t")
    assert (await a.lookup(b"old")).outcome is Outcome.MISS
    assert (await b.lookup(b"old")).tier == "memory"  # B: its cached value, still
    await a.store(b"new", entry(body=b"new", tags=("t",)))  # stored between the two calls
    assert await b.purge_tags(["t"], once="e1") == 0  # claimed by A: no bump, no delete
    assert await raw.get(f"{namespace}:g:t") == bumped
    assert await raw.exists(f"{namespace}:purge-event:e1") == 1
    assert (await b.lookup(b"old")).outcome is Outcome.MISS  # at once, no cache wait
    found = await b.lookup(b"new")
    assert found.outcome is Outcome.HIT and found.entry is not None
    assert found.entry.body == b"new"


async def test_an_entry_stored_on_the_second_node_before_it_applies_the_event_survives(
    make_engine: Build,
) -> None:
    a, _, _ = await make_engine()
    b, _, _ = await make_engine()
    assert await a.purge_tags(["u"], once="e2") == 0  # no entry carries u: no record
    await b.store(b"k", entry(tags=("u",)))  # B's first sight of u
    assert await b.purge_tags(["u"], once="e2") == 0
    assert (await b.lookup(b"k")).outcome is Outcome.HIT
    assert (await a.lookup(b"k")).outcome is Outcome.HIT


async def test_a_soft_purge_serves_stale_on_both_nodes(
    make_engine: Build, namespace: str, raw: redis.asyncio.Redis
) -> None:
    a, _, _ = await make_engine()
    b, _, _ = await make_engine()
    await a.store(b"k", entry(tags=("s",), stale_while_revalidate_ms=SWR))
    assert (await b.lookup(b"k")).outcome is Outcome.HIT
    before = await text(raw, f"{namespace}:g:s")
    assert " " not in before  # a bare nonce, as every build wrote
    assert await a.purge_tags(["s"], soft=True, once="e3") == 0
    value, soft = (await text(raw, f"{namespace}:g:s")).split(" ")
    assert soft.startswith(before + "@") and value != before
    assert await b.purge_tags(["s"], soft=True, once="e3") == 0
    assert await text(raw, f"{namespace}:g:s") == f"{value} {soft}"  # bumped once
    for engine in (a, b):
        found = await engine.lookup(b"k")
        assert found.outcome is Outcome.STALE, engine
        assert found.entry is not None and found.age_ms >= found.entry.ttl_ms
    await b.store(b"k", entry(body=b"fresh", tags=("s",), stale_while_revalidate_ms=SWR))
    assert (await b.lookup(b"k")).outcome is Outcome.HIT
    await a.purge_all(once="e4")  # a hard purge of everything wins
    assert (await b.lookup(b"k")).outcome is Outcome.HIT  # within B's cache time
    await b.purge_all(once="e4")
    assert (await b.lookup(b"k")).outcome is Outcome.MISS


async def test_a_once_purge_while_redis_is_dead_applies_here_and_is_replayed(
    make_engine: Build,
    namespace: str,
    tmp_path: Path,
    processes: list[subprocess.Popen[bytes]],
) -> None:
    port = free_port()
    url = f"redis://{HOST}:{port}/0"
    processes.append(start_redis(port, tmp_path))
    a, gens_a, _ = await make_engine(url)
    await a.store(b"k", entry(tags=("t",)))
    processes[0].kill()
    processes[0].wait(10)
    assert await a.purge_tags(["t"], once="e5") == 1  # kept for Redis; applied here
    assert gens_a.pending() == 1
    assert (await a.lookup(b"k")).outcome is Outcome.MISS
    await a.store(b"k2", entry(tags=("t",)))
    assert await a.purge_tags(["t"], once="e5") == 0  # this process applied e5 already
    assert (await a.lookup(b"k2")).outcome is Outcome.HIT
    processes.append(start_redis(port, tmp_path))  # empty: the records are gone
    deadline = time.monotonic() + 15
    while gens_a.pending():
        assert time.monotonic() < deadline, "the kept purge was not replayed"
        await a.lookup(b"k2")  # a read replays first (or the background retry does)
        await asyncio.sleep(0.05)
    b, _, _ = await make_engine(url)  # a node that never saw the purge
    assert (await b.lookup(b"k")).outcome is Outcome.MISS
    # the replay claimed no id: a node applying e5 now bumps again (one extra miss)
    assert await b.purge_tags(["t"], once="e5") == 0
    with redis.Redis(HOST, port) as client:
        assert client.exists(f"{namespace}:purge-event:e5") == 1
