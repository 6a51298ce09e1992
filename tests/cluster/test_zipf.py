"""Origin requests per 1,000 client requests for a seeded Zipf workload (alpha 1.0, 2,000
keys, 3,000 requests alternating between the two nodes, 8 at a time): two nodes sharing
Redis, Memcached and PostgreSQL against two nodes with their memory tier only.

Both modes give each sidecar the same memory budget, large enough that neither evicts
anything (checked): a memory-only node then misses each key once at most, its best case,
which more memory could not improve; what is left between the two figures is what sharing
saves (a key fetched through one node is a hit on the other)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aiohttp
import pytest

from tests.cluster.support import cluster, cluster_dir, get, metric_sum, report, zipf_keys
from tools.cluster import Cluster, Mode

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="module")]

KEYS, REQUESTS, ALPHA, SEED = 2000, 3000, 1.0, 14
CONCURRENCY = 8
MEMORY = 64 * 1024 * 1024  # per sidecar; the workload's entries take a few MB


async def _origin_per_1000(mode: Mode, http: aiohttp.ClientSession) -> tuple[float, float]:
    """Run the workload on a fresh 2-node cluster in `mode`: (origin requests per 1,000
    client requests, memory-tier evictions on all nodes)."""
    keys = zipf_keys(KEYS, REQUESTS, ALPHA, SEED)
    with cluster_dir() as d:
        async with cluster(d, mode=mode, nginx=False, memory_max_bytes=MEMORY) as c:
            bases = [n.proxy_url for n in c.nodes]
            queue: asyncio.Queue[int] = asyncio.Queue()
            for j in range(REQUESTS):
                queue.put_nowait(j)
            bad: list[str] = []

            async def client() -> None:
                while not queue.empty():
                    j = queue.get_nowait()
                    path = f"/products/{keys[j] % 5 + 1}?key={keys[j]}"
                    answer = await get(http, bases[j % 2], path)
                    if answer.status != 200:
                        bad.append(f"{path}: {answer.status}")

            await asyncio.wait_for(asyncio.gather(*(client() for _ in range(CONCURRENCY))), 90)
            assert bad == []
            evicted = 0.0
            for node in c.nodes:
                evicted += await metric_sum(
                    http, node.sidecar_metrics_url, "strata_evictions_total", tier="memory"
                )
            return _per_1000(c), evicted


def _per_1000(c: Cluster) -> float:
    return 1000 * c.origin.total / REQUESTS


async def test_shared_tiers_send_fewer_requests_to_the_origin_than_memory_only_nodes(
    services_up: None, http: aiohttp.ClientSession, capsys: Any, record_property: Any
) -> None:
    started = time.monotonic()
    shared, shared_evicted = await _origin_per_1000(Mode.SHARED, http)
    memory, memory_evicted = await _origin_per_1000(Mode.MEMORY, http)
    distinct = len(set(zipf_keys(KEYS, REQUESTS, ALPHA, SEED)))
    report(
        capsys,
        record_property,
        "zipf_origin_per_1000",
        f"shared {shared:.0f}, memory-only {memory:.0f} (ratio {shared / memory:.2f});"
        f" {distinct} distinct keys = {1000 * distinct / REQUESTS:.0f} per 1,000 at best;"
        f" evictions {shared_evicted:.0f} / {memory_evicted:.0f};"
        f" {time.monotonic() - started:.0f} s",
    )
    assert memory_evicted == 0  # the memory-only figure is its best case
    assert shared < memory
