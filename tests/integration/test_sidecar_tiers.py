"""A sidecar process over the real Redis, Memcached and PostgreSQL of `make services-up`."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
import redis
from pymemcache.client.base import Client as MemcacheClient
from strata.v1 import cache_pb2 as pb

from kong_plugin.client import SidecarClient
from sidecar.tiers.memcached import parse_servers
from sidecar.tiers.memcached import storage_key as memcached_key
from tests.integration.servers import services_env
from tools.stack import SidecarProcess, free_port

pytestmark = pytest.mark.integration


@pytest.fixture
def tiered_env(sidecar_env: dict[str, str]) -> dict[str, str]:
    svc = services_env()
    return {
        **sidecar_env,
        "STRATA_REDIS_URL": svc["STRATA_TEST_REDIS_URL"],
        "STRATA_MEMCACHED_SERVERS": svc["STRATA_TEST_MEMCACHED_SERVERS"],
        "STRATA_POSTGRES_DSN": svc["STRATA_TEST_POSTGRES_DSN"],
        "STRATA_NAMESPACE": "it" + uuid.uuid4().hex[:10],
        "STRATA_POSTGRES_TIMEOUT_MS": "2000",
    }


@pytest.fixture
def sidecar(short_tmp: Path, tiered_env: dict[str, str]) -> Iterator[SidecarProcess]:
    proc = SidecarProcess(f"unix:{short_tmp}/s.sock", env=tiered_env, metrics_listen="off")
    yield proc
    proc.stop()


def entry(body: bytes) -> pb.Entry:
    return pb.Entry(status=200, body=body, ttl_ms=600_000, tags=["shared"])


def test_a_restarted_sidecar_is_served_from_the_shared_tiers(sidecar: SidecarProcess) -> None:
    sidecar.start()
    client = SidecarClient(sidecar.address, timeout_s=3.0)
    for _ in range(2):  # hot: placement puts it in shared RAM (Redis) too
        assert client.lookup(b"v1:r:shared").outcome == pb.OUTCOME_MISS
    assert client.store(b"v1:r:shared", entry(b"one copy for every node")).result == (
        pb.STORE_RESULT_STORED
    )
    assert client.lookup(b"v1:r:shared").tier == "memory"
    client.close()
    sidecar.stop()

    sidecar.start()  # a new process: its memory tier is empty
    client = SidecarClient(sidecar.address, timeout_s=3.0)
    first = client.lookup(b"v1:r:shared")
    assert first.outcome == pb.OUTCOME_HIT
    assert first.tier == "redis"
    assert first.entry.body == b"one copy for every node"
    assert client.lookup(b"v1:r:shared").tier == "memory"  # backfilled
    # a tag purge: one generation bump in Redis, plus the memory copy dropped now
    assert client.invalidate(tag="shared").dropped == 1
    assert client.lookup(b"v1:r:shared").outcome == pb.OUTCOME_MISS
    client.close()
    sidecar.stop()

    sidecar.start()  # and it misses on a fresh node too (Redis, Memcached, PostgreSQL)
    client = SidecarClient(sidecar.address, timeout_s=3.0)
    assert client.lookup(b"v1:r:shared").outcome == pb.OUTCOME_MISS
    client.close()


def test_memcached_serves_and_route_purges_reach_it(
    short_tmp: Path, tiered_env: dict[str, str]
) -> None:
    """A sidecar without PostgreSQL: a large hot entry another sidecar stored (placed in
    Memcached, not Redis) is served from Memcached, and a route purge (a bump in Redis, no
    key walk) makes it miss there. (Generations stay in Redis: a sidecar with node-local
    ones cannot vouch for entries another process stamped, and misses them.)"""
    proc = SidecarProcess(f"unix:{short_tmp}/s3.sock", env=tiered_env, metrics_listen="off")
    proc.start()
    try:
        client = SidecarClient(proc.address, timeout_s=3.0)
        for _ in range(2):
            client.lookup(b"v1:m:1")
        big = os.urandom(100 * 1024)  # incompressible, above redis_max_entry_bytes
        stored = client.store(b"v1:m:1", entry(big), route="v1:m:")
        assert stored.result == pb.STORE_RESULT_STORED
        client.close()
        proc.stop()
        proc.env = {**tiered_env, "STRATA_POSTGRES_DSN": ""}
        proc.start()
        client = SidecarClient(proc.address, timeout_s=3.0)
        hit = client.lookup(b"v1:m:1")
        assert hit.outcome == pb.OUTCOME_HIT
        assert hit.tier == "memcached"
        assert hit.entry.body == big
        assert client.invalidate(route="v1:m:").dropped == 1  # the memory copy
        assert client.lookup(b"v1:m:1").outcome == pb.OUTCOME_MISS
        client.close()
    finally:
        proc.stop()


def test_an_unreachable_tier_is_skipped(short_tmp: Path, tiered_env: dict[str, str]) -> None:
    env = {
        **tiered_env,
        "STRATA_REDIS_URL": f"redis://127.0.0.1:{free_port()}/0",
        "STRATA_MEMCACHED_SERVERS": "",
    }
    proc = SidecarProcess(f"unix:{short_tmp}/s2.sock", env=env, metrics_listen="off")
    proc.start()
    try:
        client = SidecarClient(proc.address, timeout_s=3.0)
        assert client.store(b"v1:r:pg", entry(b"durable")).result == pb.STORE_RESULT_STORED
        client.close()
        proc.stop()
        out = proc.output().text
        assert "tier unreachable at start-up" in out
        proc.start()
        client = SidecarClient(proc.address, timeout_s=3.0)
        # stamped with generations local to the first process (Redis was unreachable):
        # no one can prove it unpurged now, so it is a miss rather than a risk
        assert client.lookup(b"v1:r:pg").outcome == pb.OUTCOME_MISS
        assert client.store(b"v1:r:pg", entry(b"durable")).result == pb.STORE_RESULT_STORED
        hit = client.lookup(b"v1:r:pg")
        assert hit.outcome == pb.OUTCOME_HIT
        client.close()
    finally:
        proc.stop()


def test_placement_cold_entries_go_to_postgres_hot_ones_to_redis_too(
    sidecar: SidecarProcess, tiered_env: dict[str, str]
) -> None:
    """Checked in the services themselves: a key stored after one lookup is in
    PostgreSQL but not in Redis nor Memcached; one stored after two lookups is in Redis
    and PostgreSQL (small: not Memcached)."""
    ns = tiered_env["STRATA_NAMESPACE"]
    sidecar.start()
    client = SidecarClient(sidecar.address, timeout_s=3.0)
    try:
        client.lookup(b"v1:p:cold")
        assert client.store(b"v1:p:cold", entry(b"cold")).result == pb.STORE_RESULT_STORED
        for _ in range(2):
            client.lookup(b"v1:p:hot")
        assert client.store(b"v1:p:hot", entry(b"hot")).result == pb.STORE_RESULT_STORED
    finally:
        client.close()

    r = redis.Redis.from_url(tiered_env["STRATA_REDIS_URL"])
    (host, port), *_ = parse_servers(tiered_env["STRATA_MEMCACHED_SERVERS"])
    mc = MemcacheClient((host, port))
    try:
        assert r.exists(f"{ns}:e:v1:p:cold".encode()) == 0
        assert r.exists(f"{ns}:e:v1:p:hot".encode()) == 1
        assert mc.get(memcached_key(ns, b"v1:p:cold")) is None
        assert mc.get(memcached_key(ns, b"v1:p:hot")) is None
    finally:
        r.close()
        mc.close()
    with psycopg.connect(tiered_env["STRATA_POSTGRES_DSN"]) as conn:
        rows = conn.execute(
            "SELECT key FROM strata_entries WHERE namespace = %s ORDER BY key", (ns,)
        ).fetchall()
    assert [bytes(k) for (k,) in rows] == [b"v1:p:cold", b"v1:p:hot"]
