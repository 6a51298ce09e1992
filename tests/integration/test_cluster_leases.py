"""Cluster-wide fill leases in Redis: two engines (two sidecars) sharing one Redis through
two `RedisLeases`, each with its own memory tier plus a shared `RedisTier`; a holder that
never stores; release by a non-holder; and an unreachable Redis (leases fall back to local).

Every test uses a namespace of its own on the services' Redis and bounds its waits; the
outage-recovery and cluster tests start private `redis-server`s (and always kill them).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import redis
import redis.asyncio

from sidecar.cluster import leases as leases_redis
from sidecar.cluster.leases import OBSERVER_TIER, RedisLeases
from sidecar.core.clock import SystemClock
from sidecar.core.errors import TierError
from sidecar.core.model import LookupResult, Outcome
from sidecar.core.observer import RecordingObserver
from sidecar.engine.coalesce import Leases
from sidecar.engine.engine import Engine
from sidecar.tiers.memory import MemoryTier
from sidecar.tiers.redis import RedisTier
from tests.integration.servers import service, start_cluster_node, start_redis
from tests.support import entries
from tools.stack import free_port

pytestmark = pytest.mark.integration

CLOCK = SystemClock()


entry = partial(entries.entry, body=b"filled", headers=())


@dataclass
class Sidecar:
    engine: Engine
    leases: RedisLeases
    observer: RecordingObserver


@pytest.fixture
def namespace() -> str:
    return "l" + uuid.uuid4().hex[:12]


@pytest.fixture
async def make_sidecar(namespace: str) -> AsyncIterator[Callable[..., Any]]:
    """Builds sidecars (memory tier + the shared Redis tier + Redis leases); closes them."""
    opened: list[Sidecar] = []

    async def build(url: str | None = None, shared_tier: bool = True, **lease_kw: Any) -> Sidecar:
        observer = RecordingObserver()
        if url is None:
            # the shared Redis: a generous deadline, these tests are about who holds a
            # lease, not about a loaded machine's latency (a timed-out call falls back to
            # a node-local lease)
            lease_kw.setdefault("timeout_s", 1.0)
        leases = RedisLeases(
            url or service("STRATA_TEST_REDIS_URL"),
            CLOCK,
            namespace=namespace,
            observer=observer,
            **lease_kw,
        )
        tiers: list[Any] = [MemoryTier(1 << 20, CLOCK, admission="always")]
        if shared_tier:
            tiers.append(
                RedisTier(
                    service("STRATA_TEST_REDIS_URL"), CLOCK, namespace=namespace, timeout_s=1.0
                )
            )
        engine = Engine(tiers, CLOCK, observer=observer, leases=leases, lookup_budget_ms=0)
        sidecar = Sidecar(engine, leases, observer)
        opened.append(sidecar)
        return sidecar

    try:
        yield build
    finally:
        for s in opened:
            await s.engine.close()
            await s.leases.close()


def _summary(results: list[LookupResult]) -> list[tuple[str, bool, bool]]:
    return [(r.outcome.value, r.fill_lease, r.coalesced) for r in results]


async def test_one_fill_across_two_sidecars_others_get_a_coalesced_hit(
    make_sidecar: Callable[..., Any],
) -> None:
    a: Sidecar = await make_sidecar()
    b: Sidecar = await make_sidecar()
    for s in (a, b):
        await s.leases.open()
    key = b"v1:r:one-fill"
    tasks = [
        asyncio.create_task(s.engine.lookup(key, coalesce_wait_ms=3000))
        for _ in range(4)
        for s in (a, b)
    ]
    owner = {id(t): s for t, s in zip(tasks, [a, b] * 4, strict=True)}
    done, _ = await asyncio.wait(tasks, timeout=2, return_when=asyncio.FIRST_COMPLETED)
    await asyncio.sleep(0.1)  # the others are waiting, not done
    done = {t for t in tasks if t.done()}
    assert len(done) == 1, _summary([t.result() for t in done])
    (first,) = done
    assert first.result().outcome is Outcome.MISS and first.result().fill_lease
    holder = owner[id(first)]
    other = b if holder is a else a

    started = time.monotonic()
    stored = await holder.engine.store(key, entry())
    assert stored.waiters_released == 3  # the holder's own waiters, woken at once
    results = await asyncio.wait_for(asyncio.gather(*(t for t in tasks if t is not first)), 2)
    assert time.monotonic() - started < 1.0  # woken by the release, not by a timeout
    assert all(r.outcome is Outcome.HIT and r.coalesced and not r.fill_lease for r in results), (
        _summary(results)
    )
    assert sum(r.fill_lease for r in [first.result(), *results]) == 1
    tiers = sorted(r.tier for r in results)
    assert tiers == ["memory"] * 3 + ["redis"] * 4  # the other sidecar read the shared tier
    assert holder.engine.counters.coalesced == 3
    assert other.engine.counters.coalesced == 4
    assert ("coalesced", "filled") in other.observer.events
    assert not any(e[0] == "tier_error" for s in (a, b) for e in s.observer.events)


async def test_waiters_in_one_sidecar_share_one_poll(
    make_sidecar: Callable[..., Any],
) -> None:
    a: Sidecar = await make_sidecar(shared_tier=False)
    b: Sidecar = await make_sidecar(shared_tier=False, poll_interval_s=0.01)
    assert await a.leases.try_acquire(b"k")
    polls = 0
    exists = b.leases._client.exists

    async def counting_exists(*names: Any) -> Any:
        nonlocal polls
        polls += 1
        return await exists(*names)

    b.leases._client.exists = counting_exists  # type: ignore[method-assign]
    waits = [asyncio.create_task(b.leases.wait(b"k", 2.0)) for _ in range(20)]
    await asyncio.sleep(0.2)
    assert await a.leases.release(b"k") == 0  # nobody waits in a's process
    assert await asyncio.wait_for(asyncio.gather(*waits), 1) == [True] * 20
    assert polls <= 40  # ~one EXISTS per 10 ms for all 20 waiters, not 20 loops
    assert not b.leases._watches and not b.leases._pollers


async def test_holder_that_never_stores_waiters_time_out_lease_expires(
    make_sidecar: Callable[..., Any], raw: redis.asyncio.Redis, namespace: str
) -> None:
    a: Sidecar = await make_sidecar(ttl_ms=400)
    b: Sidecar = await make_sidecar(ttl_ms=400)
    key = b"v1:r:abandoned"
    acquired = time.monotonic()
    assert (await a.engine.lookup(key, coalesce_wait_ms=100)).fill_lease
    pttl = await raw.pttl(f"{namespace}:l:".encode() + key)
    assert 0 < pttl <= 400

    started = time.monotonic()
    results = await asyncio.gather(
        a.engine.lookup(key, coalesce_wait_ms=100), b.engine.lookup(key, coalesce_wait_ms=100)
    )
    waited = time.monotonic() - started
    assert _summary(list(results)) == [("miss", False, False)] * 2
    assert 0.09 <= waited < 0.35
    assert ("coalesced", "timeout") in b.observer.events

    await asyncio.sleep(max(0.0, acquired + 0.45 - time.monotonic()))
    assert (await b.engine.lookup(key, coalesce_wait_ms=100)).fill_lease  # a new lease
    assert not (await a.engine.lookup(key, coalesce_wait_ms=10)).fill_lease


async def test_release_by_a_non_holder_keeps_the_holders_lease(
    make_sidecar: Callable[..., Any], raw: redis.asyncio.Redis, namespace: str
) -> None:
    a: Sidecar = await make_sidecar()
    b: Sidecar = await make_sidecar()
    key = b"v1:r:mine"
    name = f"{namespace}:l:".encode() + key
    assert (await a.engine.lookup(key, coalesce_wait_ms=100)).fill_lease
    token = await raw.get(name)
    assert token

    assert await b.engine.release(key) == 0
    assert await raw.get(name) == token
    assert not await b.leases.try_acquire(key)

    # a holder whose lease was taken over (expired, then re-acquired elsewhere) keeps off it
    await raw.set(name, b"someone-else", px=10_000)
    await a.leases.release(key)
    assert await raw.get(name) == b"someone-else"
    await raw.delete(name)

    # the real holder's release deletes it
    assert await a.leases.try_acquire(key)
    await a.leases.release(key)
    assert await raw.exists(name) == 0
    assert await b.leases.try_acquire(key)


async def _silent_server() -> tuple[asyncio.Server, int]:
    """Accepts connections and never answers (a hung Redis)."""

    async def ignore(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(-1)
        writer.close()

    server = await asyncio.start_server(ignore, "127.0.0.1", 0)
    return server, int(server.sockets[0].getsockname()[1])


@pytest.mark.parametrize("failure", ["refused", "silent"])
async def test_unreachable_redis_falls_back_to_local_leases(
    make_sidecar: Callable[..., Any], failure: str
) -> None:
    server = None
    if failure == "silent":
        server, port = await _silent_server()
    else:
        port = free_port()
    try:
        s: Sidecar = await make_sidecar(f"redis://127.0.0.1:{port}/0", shared_tier=False)
        leases: Leases = s.leases
        started = time.monotonic()
        with pytest.raises(TierError):
            await s.leases.open()
        key = b"v1:r:offline"
        first = await s.engine.lookup(key, coalesce_wait_ms=2000)
        assert first.fill_lease
        waiters = [
            asyncio.create_task(s.engine.lookup(key, coalesce_wait_ms=2000)) for _ in range(3)
        ]
        await asyncio.sleep(0.02)
        assert (await s.engine.store(key, entry())).waiters_released == 3
        results = await asyncio.wait_for(asyncio.gather(*waiters), 1)
        assert all(r.outcome is Outcome.HIT and r.coalesced for r in results)
        assert (await s.engine.lookup(b"v1:r:other", coalesce_wait_ms=2000)).fill_lease
        assert await leases.release(b"v1:r:other") == 0
        assert not await leases.wait(b"v1:r:none", 2.0)  # no lease anywhere: no blocking
        assert time.monotonic() - started < 1.0
        errors = [e for e in s.observer.events if e[0] == "tier_error"]
        assert errors and all(e[1] == OBSERVER_TIER for e in errors)
    finally:
        if server is not None:
            server.close()


# -- private servers (killed by their own handle) ------------------------------------------


async def test_leases_come_back_to_redis_after_an_outage(
    make_sidecar: Callable[..., Any],
    namespace: str,
    short_tmp: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(leases_redis, "RETRY_AFTER_S", 0.05)
    port = free_port()
    s: Sidecar = await make_sidecar(f"redis://127.0.0.1:{port}/0", shared_tier=False)
    assert await s.leases.try_acquire(b"early")  # refused: a local lease
    proc = start_redis(port, short_tmp)
    try:
        await asyncio.sleep(0.1)
        assert not await s.leases.try_acquire(b"early")  # the local lease still counts
        assert await s.leases.try_acquire(b"late")
        with redis.Redis("127.0.0.1", port) as admin:
            assert admin.exists(f"{namespace}:l:late") == 1
    finally:
        proc.kill()
        proc.wait(5)


async def test_leases_on_a_redis_cluster(short_tmp: Path) -> None:
    """A one-node cluster owning every slot: SET NX, EXISTS and the EVAL are routed by key."""
    port, proc = start_cluster_node(short_tmp)
    url = f"redis+cluster://127.0.0.1:{port}"
    a = RedisLeases(url, CLOCK, namespace="c", timeout_s=0.5)
    b = RedisLeases(url, CLOCK, namespace="c", timeout_s=0.5)
    try:
        with redis.Redis("127.0.0.1", port) as admin:
            admin.execute_command("CLUSTER", "ADDSLOTSRANGE", 0, 16383)
            deadline = time.monotonic() + 5
            while b"cluster_state:ok" not in admin.execute_command("CLUSTER", "INFO"):
                assert time.monotonic() < deadline, "cluster did not become ok"
                await asyncio.sleep(0.05)
        await a.open()
        assert await a.try_acquire(b"k")
        assert not await b.try_acquire(b"k")
        waiter = asyncio.create_task(b.wait(b"k", 2.0))
        await asyncio.sleep(0.05)
        assert await b.release(b"k") == 1  # wakes b's own waiter, keeps a's lease
        assert await waiter
        assert not await b.try_acquire(b"k")
        waiter = asyncio.create_task(b.wait(b"k", 2.0))
        await asyncio.sleep(0.05)  # polling a live lease (a wait that starts later: False)
        await a.release(b"k")
        assert await asyncio.wait_for(waiter, 1)
        assert await b.try_acquire(b"k")
    finally:
        await a.close()
        await b.close()
        proc.kill()
        proc.wait(5)
