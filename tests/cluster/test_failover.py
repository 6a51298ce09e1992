"""NGINX in front of two gateway nodes under steady load (8 clients): node 1's sidecar is
stopped (its plugin fails open), then node 1 whole (kongsim and its plugin server). NGINX's
passive failover passes what failed on node 1 to node 2: no client sees an error, every
body is right. NGINX skips a failed node for 1 s here (5 s in `make cluster`), so that it
tries the dead node, and passes requests on, several times during the test."""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest
import pytest_asyncio

from tests.cluster.support import cluster, cluster_dir, get, report
from tools.cluster import Balancing, Cluster

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="module")]

CLIENTS = 8
#: seconds of load before the sidecar stops, between the two stops, after the node stops
PHASE_S = 2.0


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def behind_nginx(services_up: None) -> AsyncIterator[Cluster]:
    with cluster_dir() as d:
        async with cluster(d, balancing=Balancing(fail_timeout_s=1)) as running:
            yield running


@dataclass
class Load:
    requests: int = 0
    errors: list[str] = field(default_factory=list)
    caches: Counter[str] = field(default_factory=Counter)


async def _client(
    http: aiohttp.ClientSession, c: Cluster, n: int, load: Load, stop: asyncio.Event
) -> None:
    i = n
    while not stop.is_set():
        pid = i % 5 + 1
        path = f"/products/{pid}?client={i % 40}"
        i += CLIENTS
        try:
            answer = await get(http, c.gateway_url, path)
        except (aiohttp.ClientError, TimeoutError) as exc:
            load.errors.append(f"{path}: {exc!r}")
            continue
        load.requests += 1
        load.caches[answer.cache] += 1
        expected = json.dumps(c.origin.state.products[pid], sort_keys=True).encode()
        if answer.status != 200 or answer.body != expected:
            load.errors.append(f"{path}: {answer.status} {answer.body[:200]!r}")


def passed_on(c: Cluster) -> int:
    """Requests NGINX sent to more than one node (its access log lists every node tried)."""
    assert c.nginx is not None
    log = (c.nginx.prefix / "access.log").read_text()
    return sum(1 for line in log.splitlines() if "upstream=" in line and ", " in line)


async def test_stopping_a_sidecar_then_its_node_under_load_loses_no_request(
    behind_nginx: Cluster, http: aiohttp.ClientSession, capsys: Any, record_property: Any
) -> None:
    c = behind_nginx
    load, stop = Load(), asyncio.Event()
    clients = [asyncio.create_task(_client(http, c, n, load, stop)) for n in range(CLIENTS)]
    phases = []
    try:
        started = time.monotonic()
        await asyncio.sleep(PHASE_S)  # steady load, both nodes whole
        phases.append(load.requests)
        await c.stop_sidecar(0)  # node 1's plugin fails open (Bypass) from now on
        await asyncio.sleep(PHASE_S)
        phases.append(load.requests)
        await c.stop_node(0)  # kongsim + plugin server of node 1 (its sidecar is down)
        assert c.nodes[0].running() == []
        await asyncio.sleep(PHASE_S)
    finally:
        stop.set()
        await asyncio.wait_for(asyncio.gather(*clients), 30)
    elapsed = time.monotonic() - started
    retried = passed_on(c)
    report(
        capsys,
        record_property,
        "failover",
        f"{load.requests} requests in {elapsed:.1f} s ({phases[0]} whole,"
        f" {phases[1] - phases[0]} with node-1's sidecar down,"
        f" {load.requests - phases[1]} with node-1 down), {len(load.errors)} errors,"
        f" {retried} passed on to node-2 by NGINX,"
        f" cache {dict(load.caches)}",
    )
    assert load.errors == []
    assert phases[0] > 0 and phases[1] > phases[0] and load.requests > phases[1]
    assert load.caches["Bypass"] > 0  # the sidecar stop was seen by node 1's plugin
    assert retried > 0  # and the node stop by NGINX, which hid it from the clients
