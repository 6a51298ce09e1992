"""What only the Redis tier does: its key layout, TTLs, tag index, purge of corrupt values,
glob escaping, recovery from a server that dies and comes back, and Redis Cluster.

Most tests use the services' Redis with a namespace of their own; the restart and cluster
tests start private `redis-server` processes on free ports (and always kill them).
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
import time
import uuid
from collections.abc import AsyncIterator
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import redis
import redis.asyncio

from sidecar.core.clock import SystemClock
from sidecar.core.errors import TierError
from sidecar.core.model import CachedResponse
from sidecar.core.observer import RecordingObserver
from sidecar.tiers.base import SetStatus, Tier
from sidecar.tiers.redis import RedisTier, escape_glob
from sidecar.tiers.redis_conn import parse_cluster_url
from tests.integration.servers import service, start_cluster_node, start_redis
from tests.support import entries
from tools.stack import free_port

pytestmark = pytest.mark.integration

HOST = "127.0.0.1"


entry = partial(entries.entry, body=b"x", headers=())


@pytest.fixture
def namespace() -> str:
    return "r" + uuid.uuid4().hex[:12]


@pytest.fixture
async def observer() -> RecordingObserver:
    return RecordingObserver()


@pytest.fixture
async def tier(namespace: str, observer: RecordingObserver) -> AsyncIterator[RedisTier]:
    t = RedisTier(
        service("STRATA_TEST_REDIS_URL"), SystemClock(), namespace=namespace, observer=observer
    )
    await t.open()
    try:
        yield t
    finally:
        await t.close()


async def test_corrupt_value_is_a_miss_is_purged_and_is_counted(
    tier: RedisTier, raw: redis.asyncio.Redis, namespace: str, observer: RecordingObserver
) -> None:
    name = f"{namespace}:e:k".encode()
    await raw.set(name, b"S1\x01\x00garbage", px=60_000)
    assert await tier.get(b"k") is None
    assert await raw.exists(name) == 0
    assert ("evicted", "redis", "corrupt", 1) in observer.events
    assert tier.snapshot().misses == 1


async def test_key_ttl_is_the_remaining_lifetime(
    tier: RedisTier, raw: redis.asyncio.Redis, namespace: str
) -> None:
    e = entry(ttl_ms=30_000, stale_if_error_ms=20_000, tags=("a",))
    await tier.set(b"k", e)
    expected = e.expires_at_ms - SystemClock().now_ms()  # 50 s
    for kind in ("e", "k"):
        pttl = await raw.pttl(f"{namespace}:{kind}:k")
        # generous below (loaded machines); above, 1-2 ms of rounding between our
        # millisecond clock and Redis's
        assert expected - 5000 <= pttl <= expected + 2, kind


async def test_already_expired_entry_is_not_admitted(
    tier: RedisTier, raw: redis.asyncio.Redis, namespace: str
) -> None:
    old = CachedResponse(200, (), b"", stored_at_ms=SystemClock().now_ms() - 10_000, ttl_ms=5)
    assert await tier.set(b"gone", old) is SetStatus.NOT_ADMITTED
    assert await raw.exists(f"{namespace}:e:gone") == 0


async def test_tag_set_ttl_covers_the_longest_lived_member(
    tier: RedisTier, raw: redis.asyncio.Redis, namespace: str
) -> None:
    index = f"{namespace}:t:users"
    await tier.set(b"a", entry(ttl_ms=10_000, tags=("users",)))
    assert 9_000 <= await raw.pttl(index) <= 10_000
    await tier.set(b"b", entry(ttl_ms=100_000, tags=("users",)))
    assert 99_000 <= await raw.pttl(index) <= 100_000
    await tier.set(b"c", entry(ttl_ms=5_000, tags=("users",)))  # never shortened
    assert 99_000 <= await raw.pttl(index) <= 100_000
    assert await raw.smembers(index) == {b"a", b"b", b"c"}


async def test_tag_index_follows_replacements_and_skips_stale_members(
    tier: RedisTier, raw: redis.asyncio.Redis, namespace: str
) -> None:
    await tier.set(b"k", entry(tags=("old", "both")))
    await tier.set(b"k", entry(tags=("both", "new")))
    assert await raw.smembers(f"{namespace}:t:old") == set()
    assert await raw.smembers(f"{namespace}:t:both") == {b"k"}
    assert await raw.smembers(f"{namespace}:k:k") == {b"both", b"new"}
    await tier.set(b"k", entry())  # untagged: no tag record left behind
    assert await raw.exists(f"{namespace}:k:k") == 0
    assert await tier.delete_tag("both") == 0  # stale member, entry kept
    assert await tier.get(b"k") is not None
    await tier.set(b"d", entry(tags=("t",)))
    await tier.delete(b"d")
    assert await tier.delete_tag("t") == 0
    assert await raw.exists(f"{namespace}:t:t") == 0


async def test_bulk_deletes_run_in_batches(tier: RedisTier) -> None:
    n = 1_200  # > 2 batches of 500
    for i in range(n):
        await tier.set(b"tag:%d" % i, entry(tags=("bulk",)))
        await tier.set(b"pfx:%d" % i, entry())
    assert await tier.delete_tag("bulk") == n
    assert await tier.delete_prefix(b"pfx:") == n
    assert await tier.get(b"tag:7") is None and await tier.get(b"pfx:7") is None


async def test_prefix_with_glob_metacharacters_is_literal(tier: RedisTier) -> None:
    prefix = b"a*[x]?\\:"
    victims = [prefix + b"1", prefix + b"2*"]
    survivors = [b"ab[x]?\\:3", b"a*[y]?\\:4", b"a*x:5", b"a*[x]?:6", b"a*[x]?\\"]
    for k in victims + survivors:
        await tier.set(k, entry())
    assert await tier.delete_prefix(prefix) == 2
    for k in survivors:
        assert await tier.get(k) is not None, k
    assert escape_glob(b"a*?[]\\b") == b"a\\*\\?\\[\\]\\\\b"


def test_construction_does_no_io_and_gives_a_tier() -> None:
    for url in (f"redis://{HOST}:{free_port()}/0", f"redis+cluster://{HOST}:{free_port()}"):
        tier: Tier = RedisTier(url, SystemClock())  # nothing listens there
        assert tier.name == "redis" and tier.capabilities == {
            "prefix_delete",
            "tag_delete",
            "shared_ram",
            "measurable",
        }


def test_cluster_urls_are_parsed() -> None:
    nodes, options = parse_cluster_url("redis+cluster://u:p%40ss@h1:7000,[::1]:7001/")
    assert [(n.host, n.port) for n in nodes] == [("h1", 7000), ("::1", 7001)]
    assert options == {"ssl": False, "username": "u", "password": "p@ss"}
    assert parse_cluster_url("rediss+cluster://h:1")[1] == {"ssl": True}
    for bad in ("redis://h:1", "redis+cluster://h", "redis+cluster://"):
        with pytest.raises(ValueError):
            parse_cluster_url(bad)


# -- private servers --------------------------------------------------------------------


async def _raises_tier_error_quickly(op: Any, limit_s: float) -> None:
    t0 = time.monotonic()
    with pytest.raises(TierError):
        await op
    assert time.monotonic() - t0 < limit_s


async def test_server_that_disappears_and_comes_back(
    short_tmp: Path, processes: list[subprocess.Popen[bytes]]
) -> None:
    port = free_port()
    tier = RedisTier(f"redis://127.0.0.1:{port}/0", SystemClock(), timeout_s=0.2)
    try:
        await _raises_tier_error_quickly(tier.open(), 1.0)  # not started yet
        processes.append(start_redis(port, short_tmp))
        await tier.open()
        # several pooled connections, so that idle ones go stale when the server dies
        await asyncio.gather(*(tier.set(b"k%d" % i, entry(tags=("t",))) for i in range(8)))
        assert await tier.get(b"k1") is not None

        processes[0].send_signal(signal.SIGSTOP)  # hung: connects, never answers
        for op in (tier.get(b"k1"), tier.set(b"k1", entry()), tier.delete(b"k9")):
            await _raises_tier_error_quickly(op, 1.0)
        processes[0].send_signal(signal.SIGCONT)
        assert await tier.get(b"k2") is not None

        processes[0].kill()
        processes[0].wait(5)
        for op in (tier.get(b"k1"), tier.set(b"k1", entry()), tier.delete(b"k1")):
            await _raises_tier_error_quickly(op, 1.0)
        await _raises_tier_error_quickly(tier.delete_tag("t"), 1.0)
        await _raises_tier_error_quickly(tier.delete_prefix(b"k"), 1.0)

        processes.append(start_redis(port, short_tmp))  # same port, empty
        assert await tier.get(b"k1") is None
        for i in range(8):
            assert await tier.set(b"k%d" % i, entry(tags=("t",))) is SetStatus.STORED
        assert await tier.get(b"k1") is not None
        assert await tier.delete_tag("t") == 8
    finally:
        await tier.close()


async def test_redis_cluster(short_tmp: Path, processes: list[subprocess.Popen[bytes]]) -> None:
    """A one-node cluster owning all 16384 slots: the server still refuses commands whose
    keys span slots (CROSSSLOT), so this checks the cluster code path and key layout."""
    port, proc = start_cluster_node(short_tmp)
    processes.append(proc)
    with redis.Redis(HOST, port) as admin:
        admin.execute_command("CLUSTER", "ADDSLOTSRANGE", 0, 16383)
        deadline = time.monotonic() + 5
        while b"cluster_state:ok" not in admin.execute_command("CLUSTER", "INFO"):
            assert time.monotonic() < deadline, "cluster did not become ok"
            time.sleep(0.05)
    tier = RedisTier(f"redis+cluster://127.0.0.1:{port}", SystemClock(), timeout_s=0.5)
    try:
        await tier.open()
        await tier.set(b"v1:a:1", entry(tags=("users", "u1")))
        await tier.set(b"v1:a:2", entry(tags=("users",)))
        await tier.set(b"v1:b:1", entry(tags=("orders",)))
        assert await tier.get(b"v1:a:1") is not None
        await tier.set(b"v1:b:1", entry(tags=("new",)))  # unlisted from "orders"
        assert await tier.delete_tag("orders") == 0
        assert await tier.delete_tag("users") == 2
        assert await tier.delete_prefix(b"v1:b:") == 1
        assert await tier.delete(b"v1:a:1") is False
        await tier.set(b"v1:c", entry())
        assert await tier.delete(b"v1:c") is True
    finally:
        await tier.close()
