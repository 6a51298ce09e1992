"""Purges made while a shared server is away are applied when it returns: a private
redis-server killed (-9) and restarted from its dump, a private memcached stopped
(SIGSTOP) and resumed (a killed memcached returns empty, so only a hung one can serve a
purged entry again). Store, take the server away, purge by key, tag and prefix, bring it
back, look up: a miss, on the sidecar that purged and on another one."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import time
import uuid
from functools import partial
from pathlib import Path

import pytest
import redis

from sidecar.cluster.generations import RedisGenerations
from sidecar.core.clock import SystemClock
from sidecar.core.model import CachedResponse, Outcome
from sidecar.engine.engine import Engine
from sidecar.engine.generations import LocalGenerations
from sidecar.tiers.memcached import MemcachedTier
from sidecar.tiers.memory import MemoryTier
from sidecar.tiers.redis import RedisTier
from sidecar.tiers.replaying import ReplayingTier
from tests.integration.servers import HOST, start_redis
from tests.support import entries
from tools.stack import free_port

pytestmark = pytest.mark.integration

CLOCK = SystemClock()


entry = partial(entries.entry, body=b"body", ttl_ms=600_000, headers=())


async def wait_replayed(engine: Engine, gens: RedisGenerations, within_s: float = 10) -> None:
    deadline = time.monotonic() + within_s
    while gens.pending() or any(isinstance(t, ReplayingTier) and t.pending() for t in engine.tiers):
        assert time.monotonic() < deadline, "kept purges were not replayed"
        await asyncio.sleep(0.05)


def sidecar(url: str, ns: str, gens: RedisGenerations) -> Engine:
    tier = RedisTier(url, CLOCK, namespace=ns, timeout_s=0.2)
    return Engine([MemoryTier(1 << 20, CLOCK, admission="always"), tier], CLOCK, generations=gens)


async def test_purges_while_redis_is_dead_are_replayed_when_it_returns(
    tmp_path: Path, processes: list[subprocess.Popen[bytes]]
) -> None:
    port = free_port()
    url = f"redis://{HOST}:{port}/0"
    processes.append(start_redis(port, tmp_path))
    ns = "p" + uuid.uuid4().hex[:10]
    gens = RedisGenerations(url, CLOCK, namespace=ns, timeout_s=0.2, cache_ms=100)
    a = sidecar(url, ns, gens)
    await gens.open()
    keys = [b"v1:r:key", b"v1:r:tagged", b"v1:route:x", b"plain:1", b"v1:r:kept"]
    await a.store(keys[0], entry())
    await a.store(keys[1], entry(tags=("users",)))
    await a.store(keys[2], entry(), route="v1:route:")
    await a.store(keys[3], entry())
    await a.store(keys[4], entry(tags=("orders",)))
    with redis.Redis(HOST, port) as client:
        client.save()
    processes[0].kill()
    processes[0].wait(10)
    await a.invalidate_key(keys[0])
    await a.invalidate_tag("users")
    await a.invalidate_route("v1:route:")  # a route: a generation bump
    await a.invalidate_prefix(b"plain:")  # any other prefix: a delete on every tier
    processes.append(start_redis(port, tmp_path))  # loads the dump: the entries are back
    with redis.Redis(HOST, port) as client:
        assert client.exists(f"{ns}:e:v1:r:key") == 1
    await wait_replayed(a, gens)
    gens_b = RedisGenerations(url, CLOCK, namespace=ns, timeout_s=0.2, cache_ms=100)
    b = sidecar(url, ns, gens_b)  # another sidecar, which never saw the purges
    for engine in (b, a):
        for key in keys[:4]:
            assert (await engine.lookup(key)).outcome is Outcome.MISS, key
        assert (await engine.lookup(keys[4])).outcome is Outcome.HIT
    for engine, g in ((a, gens), (b, gens_b)):
        await engine.close()
        await g.close()


async def test_generation_keys_in_redis_expire_with_their_entries(
    tmp_path: Path, processes: list[subprocess.Popen[bytes]]
) -> None:
    port = free_port()
    url = f"redis://{HOST}:{port}/0"
    processes.append(start_redis(port, tmp_path))
    gens = RedisGenerations(url, CLOCK, namespace="x", timeout_s=0.2, cache_ms=100)
    engine = sidecar(url, "x", gens)
    for i in range(200):  # writes through the gateway purge URIs nobody cached
        await engine.invalidate_tag(f"uri:h/p/{i}")
    short = CachedResponse(200, (), b"b", stored_at_ms=CLOCK.now_ms(), ttl_ms=1_000, tags=("t",))
    await engine.store(b"v1:r:1", short, route="v1:r:")
    await engine.invalidate_tag("t")
    with redis.Redis(HOST, port) as client:
        names = list(client.scan_iter(match="x:g*"))
        assert len(names) == 3  # t, the route, the epoch
        assert all(0 < client.pttl(n) <= 1_100 for n in names)  # + cache_ms headroom
        time.sleep(1.25)
        assert list(client.scan_iter(match="x:g*")) == []
    await engine.close()
    await gens.close()


async def test_purges_while_memcached_hangs_are_applied_when_it_resumes(
    processes: list[subprocess.Popen[bytes]],
) -> None:
    port = free_port()
    proc = subprocess.Popen(
        ["memcached", "-u", "nobody", "-l", HOST, "-p", str(port), "-U", "0", "-m", "16"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    processes.append(proc)
    tier = MemcachedTier([(HOST, port)], CLOCK, namespace="m", timeout_s=0.2)
    deadline = time.monotonic() + 5
    while True:
        try:
            await tier.open()
            break
        except Exception:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.05)
    gens = LocalGenerations(CLOCK)  # shared by both engines, as Redis would be
    engine = Engine([MemoryTier(1 << 20, CLOCK, admission="always"), tier], CLOCK, generations=gens)
    await engine.store(b"v1:r:gone", entry())
    await engine.store(b"v1:r:kept", entry())
    proc.send_signal(signal.SIGSTOP)
    try:
        await engine.invalidate_key(b"v1:r:gone")
    finally:
        proc.send_signal(signal.SIGCONT)
    other = Engine([MemoryTier(1 << 20, CLOCK, admission="always"), tier], CLOCK, generations=gens)
    await asyncio.sleep(1.1)  # the tier's dead-server back-off
    await engine.tiers[0].delete_prefix(b"")
    assert (await engine.lookup(b"v1:r:gone")).outcome is Outcome.MISS
    assert (await other.lookup(b"v1:r:gone")).outcome is Outcome.MISS
    assert (await other.lookup(b"v1:r:kept")).outcome is Outcome.HIT
    await engine.close()


async def test_records_redis_lost_in_a_restart_are_restored_not_every_entry_purged(
    tmp_path: Path, processes: list[subprocess.Popen[bytes]]
) -> None:
    """Redis restarted empty (no persistence): the sidecars put back the records they know,
    so entries in the other tiers stay hits; a purge after the loss still wins."""
    port = free_port()
    url = f"redis://{HOST}:{port}/0"
    processes.append(start_redis(port, tmp_path))
    ns = "r" + uuid.uuid4().hex[:10]
    gens_a = RedisGenerations(url, CLOCK, namespace=ns, timeout_s=0.2, cache_ms=50)
    gens_b = RedisGenerations(url, CLOCK, namespace=ns, timeout_s=0.2, cache_ms=50)
    memory_a = MemoryTier(1 << 20, CLOCK, admission="always")
    a = Engine([memory_a], CLOCK, generations=gens_a)
    b = Engine([MemoryTier(1 << 20, CLOCK, admission="always")], CLOCK, generations=gens_b)
    await gens_a.open()
    await gens_b.open()
    await a.store(b"v1:r:one", entry(tags=("users",)))
    await a.store(b"v1:r:two", entry(tags=("orders",)))
    await b.store(b"v1:r:two", entry(tags=("orders",)))
    processes[0].kill()
    processes[0].wait(10)
    (tmp_path / "empty").mkdir()
    processes.append(start_redis(port, tmp_path / "empty"))  # no dump: every record gone
    await asyncio.sleep(0.2)  # past cache_ms and the outage back-off: Redis is read again
    deadline = time.monotonic() + 5
    while (await a.lookup(b"v1:r:one")).outcome is not Outcome.HIT:
        assert time.monotonic() < deadline, "entries stayed purged after the Redis restart"
        await asyncio.sleep(0.1)
    # b purges a tag it knows, after the loss: a restore by a must not undo it
    await b.invalidate_tag("orders")
    await asyncio.sleep(0.1)
    assert (await a.lookup(b"v1:r:two")).outcome is Outcome.MISS
    assert (await a.lookup(b"v1:r:one")).outcome is Outcome.HIT
    await gens_a.close()
    await gens_b.close()
