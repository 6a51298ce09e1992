"""The Redis tier's content-addressed bodies: ``ns:b:<sha256>`` shared by entries, TTLs
raised never lowered, a missing body is a miss that purges the entry, deletes keep bodies,
small bodies stay inline, and the two-round-trip path of Redis Cluster."""

from __future__ import annotations

import hashlib
import json
import subprocess
import time
import uuid
from collections.abc import AsyncIterator
from functools import partial
from pathlib import Path

import pytest
import redis
import redis.asyncio

from sidecar.core.clock import SystemClock
from sidecar.tiers.redis import BODY_REF_MIN_BYTES, RedisTier
from tests.integration.servers import service, start_redis
from tests.support import entries
from tools.stack import free_port

pytestmark = pytest.mark.integration

BODY = json.dumps(
    [{"id": i, "sku": f"{i * 7919:08x}", "price": i * 3.25} for i in range(400)]
).encode()
DIGEST = hashlib.sha256(BODY).hexdigest()


entry = partial(entries.entry, body=BODY, headers=())


@pytest.fixture
def namespace() -> str:
    return "rb" + uuid.uuid4().hex[:12]


@pytest.fixture
async def raw(namespace: str) -> AsyncIterator[redis.asyncio.Redis]:
    client = redis.asyncio.Redis.from_url(service("STRATA_TEST_REDIS_URL"))
    try:
        yield client
    finally:
        names = [k async for k in client.scan_iter(match=f"{namespace}:*")]
        if names:
            await client.unlink(*names)
        await client.aclose()


@pytest.fixture
async def tier(namespace: str) -> AsyncIterator[RedisTier]:
    t = RedisTier(service("STRATA_TEST_REDIS_URL"), SystemClock(), namespace=namespace)
    await t.open()
    try:
        yield t
    finally:
        await t.close()


async def body_keys(raw: redis.asyncio.Redis, namespace: str) -> set[bytes]:
    return {k async for k in raw.scan_iter(match=f"{namespace}:b:*")}


async def test_two_keys_with_one_body_store_one_body_key(
    tier: RedisTier, raw: redis.asyncio.Redis, namespace: str
) -> None:
    await tier.set(b"a", entry())
    await tier.set(b"b", entry(tags=("t",)))
    assert await body_keys(raw, namespace) == {f"{namespace}:b:{DIGEST}".encode()}
    blob = await raw.get(f"{namespace}:b:{DIGEST}")
    assert blob is not None and len(blob) < len(BODY) // 2  # compressed once
    for key in (b"a", b"b"):
        value = await raw.get(f"{namespace}:e:".encode() + key)
        assert value is not None and len(value) < 200  # meta + digest, no body
        got = await tier.get(key)
        assert got is not None and got.body == BODY


async def test_small_bodies_stay_inline(
    tier: RedisTier, raw: redis.asyncio.Redis, namespace: str
) -> None:
    small = b'{"ok":true}' * 10
    await tier.set(b"s", entry(body=small))
    assert await body_keys(raw, namespace) == set()
    got = await tier.get(b"s")
    assert got is not None and got.body == small
    assert BODY_REF_MIN_BYTES > 0


async def test_missing_body_is_a_miss_and_purges_the_entry(
    tier: RedisTier, raw: redis.asyncio.Redis, namespace: str
) -> None:
    await tier.set(b"a", entry(tags=("t",)))
    await raw.unlink(f"{namespace}:b:{DIGEST}")
    assert await tier.get(b"a") is None
    assert await raw.exists(f"{namespace}:e:a", f"{namespace}:k:a") == 0
    assert tier.snapshot().misses == 1


async def test_body_failing_its_digest_is_a_miss_and_is_purged(
    tier: RedisTier, raw: redis.asyncio.Redis, namespace: str
) -> None:
    await tier.set(b"a", entry())
    name = f"{namespace}:b:{DIGEST}"
    await raw.set(name, b"SB\x00" + len(BODY).to_bytes(4, "big") + b"x" * len(BODY))
    assert await tier.get(b"a") is None
    assert await raw.exists(name, f"{namespace}:e:a") == 0


async def test_body_ttl_covers_the_longest_lived_entry(
    tier: RedisTier, raw: redis.asyncio.Redis, namespace: str
) -> None:
    name = f"{namespace}:b:{DIGEST}"
    await tier.set(b"a", entry(ttl_ms=10_000))
    assert 9_000 <= await raw.pttl(name) <= 10_000
    await tier.set(b"b", entry(ttl_ms=100_000))
    assert 99_000 <= await raw.pttl(name) <= 100_000
    await tier.set(b"c", entry(ttl_ms=5_000))  # never shortened
    assert 99_000 <= await raw.pttl(name) <= 100_000
    await raw.persist(name)  # a body without a TTL (not written by the tier) gets one
    await tier.set(b"d", entry(ttl_ms=20_000))
    assert 19_000 <= await raw.pttl(name) <= 20_000


async def test_deletes_keep_bodies_for_other_entries(
    tier: RedisTier, raw: redis.asyncio.Redis, namespace: str
) -> None:
    await tier.set(b"p:1", entry(tags=("t",)))
    await tier.set(b"p:2", entry())
    await tier.set(b"q", entry())
    assert await tier.delete_tag("t") == 1
    assert await tier.delete_prefix(b"p:") == 1
    got = await tier.get(b"q")
    assert got is not None and got.body == BODY
    assert await tier.delete(b"q")
    # no entry left, the body stays until its TTL ends (documented cost)
    assert await body_keys(raw, namespace) == {f"{namespace}:b:{DIGEST}".encode()}


async def test_redis_cluster_reads_referenced_bodies_in_two_round_trips(
    short_tmp: Path, processes: list[subprocess.Popen[bytes]]
) -> None:
    port = free_port()
    conf = ["--cluster-enabled", "yes", "--cluster-config-file", str(short_tmp / "nodes.conf")]
    conf += ["--cluster-port", str(free_port())]
    processes.append(start_redis(port, short_tmp, *conf))
    with redis.Redis("127.0.0.1", port) as admin:
        admin.execute_command("CLUSTER", "ADDSLOTSRANGE", 0, 16383)
        deadline = time.monotonic() + 5
        while b"cluster_state:ok" not in admin.execute_command("CLUSTER", "INFO"):
            assert time.monotonic() < deadline, "cluster did not become ok"
            time.sleep(0.05)
    tier = RedisTier(f"redis+cluster://127.0.0.1:{port}", SystemClock(), timeout_s=0.5)
    try:
        await tier.open()
        await tier.set(b"v1:a", entry())
        await tier.set(b"v1:b", entry())
        for key in (b"v1:a", b"v1:b"):
            got = await tier.get(key)
            assert got is not None and got.body == BODY
        with redis.Redis("127.0.0.1", port) as admin:
            assert admin.exists(f"strata:b:{DIGEST}") == 1
            admin.unlink(f"strata:b:{DIGEST}")
        assert await tier.get(b"v1:a") is None
    finally:
        await tier.close()
