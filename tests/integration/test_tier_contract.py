"""One contract, every tier: the same behaviour from memory, Redis, Memcached and PostgreSQL.

Remote tiers run against the real servers of `make services-up`; each test gets its own
namespace so runs and tests never see each other's keys. What a tier cannot do (prefix or
tag deletes on Memcached) is declared in its `capabilities` and checked as declared.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest

from sidecar.core.clock import SystemClock
from sidecar.core.errors import TierError
from sidecar.core.model import CachedResponse
from sidecar.tiers.base import SetStatus, Tier
from tests.integration.servers import service

pytestmark = pytest.mark.integration

TIERS = ["memory", "redis", "memcached", "postgres"]


async def make_tier(name: str, namespace: str) -> Tier:
    clock = SystemClock()
    if name == "memory":
        from sidecar.tiers.memory import MemoryTier  # noqa: PLC0415

        tier: Any = MemoryTier(64 * 1024 * 1024, clock, admission="always")
    elif name == "redis":
        from sidecar.tiers.redis import RedisTier  # noqa: PLC0415

        tier = RedisTier(service("STRATA_TEST_REDIS_URL"), clock, namespace=namespace)
    elif name == "memcached":
        from sidecar.tiers.memcached import MemcachedTier, parse_servers  # noqa: PLC0415

        servers = parse_servers(service("STRATA_TEST_MEMCACHED_SERVERS"))
        tier = MemcachedTier(servers, clock, namespace=namespace)
    elif name == "postgres":
        from sidecar.tiers.postgres import PostgresTier  # noqa: PLC0415

        tier = PostgresTier(service("STRATA_TEST_POSTGRES_DSN"), clock, namespace=namespace)
    else:
        raise AssertionError(name)
    await tier.open()
    return tier  # type: ignore[no-any-return]


@pytest.fixture(params=TIERS)
async def tier(request: pytest.FixtureRequest) -> AsyncIterator[Tier]:
    t = await make_tier(request.param, "t" + uuid.uuid4().hex[:12])
    try:
        yield t
    finally:
        await t.close()


def entry(body: bytes = b'{"ok":true}', ttl_ms: int = 60_000, **kw: Any) -> CachedResponse:
    now = SystemClock().now_ms()
    return CachedResponse(
        status=200,
        headers=((b"content-type", b"application/json"), (b"x-a", b"1"), (b"x-a", b"2")),
        body=body,
        stored_at_ms=now,
        ttl_ms=ttl_ms,
        **kw,
    )


async def test_get_set_replace_delete(tier: Tier) -> None:
    assert await tier.get(b"k") is None
    e = entry(tags=("t1",), vary=("accept",), stale_if_error_ms=5000)
    assert await tier.set(b"k", e) is SetStatus.STORED
    assert await tier.get(b"k") == e
    e2 = entry(body=b"second")
    await tier.set(b"k", e2)
    assert await tier.get(b"k") == e2
    assert await tier.delete(b"k") is True
    assert await tier.get(b"k") is None
    assert await tier.delete(b"k") is False


@pytest.mark.parametrize(
    "body",
    [b"", bytes(range(256)) * 8, b"\x00" * 10, os.urandom(700 * 1024)],
    ids=["empty", "all-bytes", "nuls", "700KiB-random"],
)
async def test_bodies_round_trip_exactly(tier: Tier, body: bytes) -> None:
    e = entry(body=body)
    assert await tier.set(b"body", e) is SetStatus.STORED
    got = await tier.get(b"body")
    assert got is not None and got.body == body


async def test_keys_are_binary_safe_and_distinct(tier: Tier) -> None:
    keys = [b"v1:r:a", b"v1:r:a ", b"v1:r:\xc3\xa9", b"v1:r:a\x1fv00:11", b"x" * 1500]
    for i, k in enumerate(keys):
        await tier.set(k, entry(body=str(i).encode()))
    for i, k in enumerate(keys):
        got = await tier.get(k)
        assert got is not None and got.body == str(i).encode(), k


async def test_expired_entries_are_never_returned(tier: Tier) -> None:
    e = entry(ttl_ms=1000)  # expires_at = stored_at + 1 s
    await tier.set(b"short", e)
    await tier.set(b"long", entry(ttl_ms=60_000))
    assert await tier.get(b"short") == e
    await asyncio.sleep(2.1)  # Memcached's expiry has 1 s granularity
    assert await tier.get(b"short") is None
    assert await tier.get(b"long") is not None
    await tier.sweep()  # never drops live entries
    assert await tier.get(b"long") is not None


async def test_delete_by_tag(tier: Tier) -> None:
    if "tag_delete" not in tier.capabilities:
        assert await tier.delete_tag("t") == 0
        return
    await tier.set(b"a", entry(tags=("users", "u1")))
    await tier.set(b"b", entry(tags=("users",)))
    await tier.set(b"c", entry(tags=("orders",)))
    assert await tier.delete_tag("users") == 2
    assert await tier.get(b"a") is None and await tier.get(b"b") is None
    assert await tier.get(b"c") is not None
    assert await tier.delete_tag("users") == 0
    # replacing an entry moves it from its old tags to its new ones
    await tier.set(b"c", entry(tags=("new",)))
    assert await tier.delete_tag("orders") == 0
    assert await tier.delete_tag("new") == 1


async def test_delete_by_prefix(tier: Tier) -> None:
    if "prefix_delete" not in tier.capabilities:
        assert await tier.delete_prefix(b"v1:") == 0
        return
    await tier.set(b"v1:routeA:1", entry())
    await tier.set(b"v1:routeA:2", entry())
    await tier.set(b"v1:routeB:1", entry())
    await tier.set(b"v1:routeA%:x", entry())  # LIKE / glob metacharacters are literal
    assert await tier.delete_prefix(b"v1:routeA:") == 2
    assert await tier.get(b"v1:routeB:1") is not None
    assert await tier.get(b"v1:routeA%:x") is not None


async def test_concurrent_writers_leave_one_whole_value(tier: Tier) -> None:
    bodies = [f"writer-{i}".encode() * 100 for i in range(20)]
    await asyncio.gather(*(tier.set(b"race", entry(body=b)) for b in bodies))
    got = await tier.get(b"race")
    assert got is not None and got.body in bodies


async def test_snapshot_names_the_tier(tier: Tier) -> None:
    await tier.set(b"k", entry())
    snap = tier.snapshot()
    assert snap.name == tier.name
    if tier.name == "memory":  # the shared tiers cannot count without asking their server
        assert snap.entries == 1 and snap.bytes > 0


@pytest.mark.parametrize("name", [t for t in TIERS if t != "memory"])
async def test_unreachable_server_raises_tier_error_quickly(name: str) -> None:
    """A tier whose server is gone answers TierError within its timeout, never hangs or
    leaks another exception type (the engine then skips it)."""
    from tests.conftest import free_port  # noqa: PLC0415

    port = free_port()  # nothing listens here
    clock = SystemClock()
    if name == "redis":
        from sidecar.tiers.redis import RedisTier  # noqa: PLC0415

        tier: Any = RedisTier(f"redis://127.0.0.1:{port}/0", clock, timeout_s=0.2)
    elif name == "memcached":
        from sidecar.tiers.memcached import MemcachedTier  # noqa: PLC0415

        tier = MemcachedTier([("127.0.0.1", port)], clock, timeout_s=0.2)
    else:
        from sidecar.tiers.postgres import PostgresTier  # noqa: PLC0415

        tier = PostgresTier(f"postgresql://postgres@127.0.0.1:{port}/strata", clock, timeout_s=0.2)
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    with contextlib.suppress(TierError):  # opening may already say so; the operations must too
        await tier.open()
    for op in (tier.get(b"k"), tier.set(b"k", entry()), tier.delete(b"k")):
        with pytest.raises(TierError):
            await op
    assert loop.time() - t0 < 5.0
    await tier.close()
