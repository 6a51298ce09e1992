"""What the shared tiers count for `strata cost` against the real servers: the bytes a write
put in, by stage (a compressible body is stored smaller than it is; Redis stores a shared
body once, so the second write of it adds no body)."""

from __future__ import annotations

import contextlib
import json
import uuid

import pytest

from sidecar.core.clock import SystemClock
from sidecar.core.errors import TierError
from sidecar.core.model import CachedResponse, Written, logical_bytes
from sidecar.core.observer import NullObserver
from sidecar.tiers.memcached import MemcachedTier, parse_servers
from sidecar.tiers.postgres import PostgresTier
from sidecar.tiers.redis import RedisTier
from tests.integration.servers import service
from tests.support.entries import JSON_HEADERS, entry

pytestmark = pytest.mark.integration

#: Compressible, and above Redis' `BODY_REF_MIN_BYTES` once compressed (content-addressed).
BODY = json.dumps([{"id": i, "sku": uuid.UUID(int=i * 7919).hex} for i in range(400)]).encode()


class WrittenLog(NullObserver):
    def __init__(self) -> None:
        self.seen: list[tuple[str, Written]] = []

    def written(self, tier: str, written: Written) -> None:
        self.seen.append((tier, written))


def _entry() -> CachedResponse:
    return entry(body=BODY, headers=JSON_HEADERS, ttl_ms=60_000)


async def test_redis_counts_a_shared_body_once() -> None:
    obs = WrittenLog()
    tier = RedisTier(
        service("STRATA_TEST_REDIS_URL"),
        SystemClock(),
        namespace="c" + uuid.uuid4().hex[:12],
        observer=obs,
    )
    await tier.open()
    try:
        await tier.set(b"a", _entry())
        await tier.set(b"b", _entry())
        await tier.delete(b"a")
        await tier.delete(b"b")
    finally:
        await tier.close()
    (_, first), (_, second) = obs.seen
    assert first.logical == logical_bytes(b"a", _entry())
    assert first.body == second.body == len(BODY)
    assert first.body_new == len(BODY) and second.body_new == 0  # deduplicated
    assert 1024 <= first.body_stored < len(BODY) and second.body_stored == 0  # compressed
    assert first.stored > first.body_stored > 0
    assert second.stored < first.stored - first.body_stored + 64  # the entry's value only


@pytest.mark.parametrize("name", ["memcached", "postgres"])
async def test_memcached_and_postgres_count_compressed_copies(name: str) -> None:
    obs = WrittenLog()
    namespace = "c" + uuid.uuid4().hex[:12]
    tier: MemcachedTier | PostgresTier
    if name == "memcached":
        servers = parse_servers(service("STRATA_TEST_MEMCACHED_SERVERS"))
        tier = MemcachedTier(servers, SystemClock(), namespace=namespace, observer=obs)
    else:
        dsn = service("STRATA_TEST_POSTGRES_DSN")
        tier = PostgresTier(dsn, SystemClock(), namespace=namespace, observer=obs)
    await tier.open()
    try:
        await tier.set(b"a", _entry())
        await tier.set(b"b", _entry())
    finally:
        with contextlib.suppress(TierError):
            await tier.delete(b"a")
            await tier.delete(b"b")
        await tier.close()
    assert [t for t, _ in obs.seen] == [name, name]
    for _, w in obs.seen:
        assert w.body_new == w.body == len(BODY)  # no deduplication in these tiers
        assert 0 < w.body_stored < len(BODY)  # compressed
        assert w.stored > w.body_stored
