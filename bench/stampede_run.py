"""What `bench stampede` runs: one `tools.cluster.Cluster` per mode (NGINX in front of kongsim
nodes, each with the real plugin server and a sidecar; the counting origin), a route without
any cache plugin added to every node for the baseline, and the bursts.

The baseline route: after the cluster starts, each node's kong.yml gets one more route on
the same service, ``/slow`` for the host `NO_CACHE_HOST` and no plugin, and kongsim reloads
it (``POST /_kongsim/reload``). Kong's router prefers the route that also names a host, so
the same path through the same node, NGINX and origin is proxied uncached: the N of Kong's
proxy-cache, which stores only after the answer (see `bench.stampede`), measured.

Not guaranteed: that the requests of a burst reach the gateway at the same instant (they are
sent together from one event loop over kept-alive connections); that NGINX spreads a burst
evenly over the nodes (round-robin, but per NGINX worker and connection).
"""

from __future__ import annotations

import asyncio
import sys
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import yaml

from bench.procs import clean_env
from bench.stampede_verdict import CACHED, NO_CACHE, Burst, ModeSpec, Reply, burst_of
from tools.cluster import Cluster, CountingOrigin, Mode

#: The Host of cached bursts (part of the cache key; NGINX passes it on unchanged).
CACHED_HOST = "stampede.example"
#: The Host the added no-cache route matches.
NO_CACHE_HOST = "nocache.stampede.example"
NO_CACHE_ROUTE = "stampede-no-cache"
ENTRIES = ("direct", "nginx")
#: Each burst must be over within this long (a hung gateway fails the run, not the machine).
BURST_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class Plan:
    """What to measure in every mode: burst sizes, fresh URLs per size and entry and route,
    the origin's delay, the plugin's sidecar deadline, the plugin-server workers per node
    and the entries to use."""

    sizes: Sequence[int]
    urls: int
    origin_ms: int
    sidecar_timeout_ms: int
    #: plugin-server worker processes per node: "auto" (one per CPU) or a number
    plugin_workers: str = "auto"
    entries: Sequence[str] = ENTRIES


def progress(text: str) -> None:
    print(f"[stampede] {text}", file=sys.stderr, flush=True)


def no_cache_config(config: dict[str, Any]) -> dict[str, Any]:
    """`config` (a decK document) with `NO_CACHE_ROUTE` added to the service that routes
    ``/slow``: the same path and service for `NO_CACHE_HOST`, without any plugin."""
    for service in config.get("services", []):
        routes = service.get("routes", [])
        if any("/slow" in r.get("paths", []) for r in routes):
            routes.append(
                {
                    "name": NO_CACHE_ROUTE,
                    "hosts": [NO_CACHE_HOST],
                    "paths": ["/slow"],
                    "strip_path": False,
                }
            )
            return config
    raise ValueError("no service routes /slow in the gateway's kong.yml")


async def add_no_cache_route(cluster: Cluster, http: aiohttp.ClientSession) -> None:
    """Add `NO_CACHE_ROUTE` to every node's kong.yml and have its kongsim reload it."""
    for node in cluster.nodes:
        path = node.directory / "kong.yml"
        path.write_text(yaml.safe_dump(no_cache_config(yaml.safe_load(path.read_text()))))
        async with http.post(f"{node.proxy_url}/_kongsim/reload") as resp:
            if resp.status != 200:
                raise RuntimeError(f"{node.node_id}: reload refused: {await resp.text()}")


async def _one(http: aiohttp.ClientSession, url: str, host: str) -> Reply:
    sent = time.monotonic()
    try:
        async with http.get(url, headers={"Host": host}) as resp:
            body = await resp.read()
            cache = resp.headers.get("X-Cache-Status", "")
            status = resp.headers.get("Cache-Status", "")
            return Reply(resp.status, body, cache, sent, time.monotonic(), "", status)
    except (aiohttp.ClientError, TimeoutError) as exc:
        return Reply(0, b"", "", sent, time.monotonic(), type(exc).__name__)


def bases(cluster: Cluster, entry: str) -> list[str]:
    """Where a burst's requests go: every node's own port in turn, or NGINX."""
    if entry == "direct":
        return [n.proxy_url for n in cluster.nodes]
    return [cluster.gateway_url]


async def burst(
    cluster: Cluster,
    http: aiohttp.ClientSession,
    spec: ModeSpec,
    entry: str,
    route: str,
    n: int,
) -> Burst:
    """`n` concurrent GETs of one fresh ``/slow`` URL (spread evenly over `bases`)."""
    path = f"/slow?stampede={uuid.uuid4().hex}"
    host = CACHED_HOST if route == CACHED else NO_CACHE_HOST
    targets = bases(cluster, entry)
    calls = [_one(http, targets[i % len(targets)] + path, host) for i in range(n)]
    replies = await asyncio.wait_for(asyncio.gather(*calls), BURST_TIMEOUT_S)
    origin = cluster.origin
    return burst_of(
        spec.name, entry, route, path, replies, origin.hits(path), origin.answered(path)
    )


async def warm_up(cluster: Cluster, http: aiohttp.ClientSession) -> None:
    """One request per entry point and route on a URL of its own, all at once, so that
    connections, plugin instances and sidecar channels exist before the first measured
    burst (not counted)."""
    calls = [
        _one(http, f"{base}/slow?warm={uuid.uuid4().hex}", host)
        for entry in ENTRIES
        for base in bases(cluster, entry)
        for host in (CACHED_HOST, NO_CACHE_HOST)
    ]
    for reply in await asyncio.wait_for(asyncio.gather(*calls), BURST_TIMEOUT_S):
        if reply.status != 200:
            raise RuntimeError(f"warm-up request failed: {reply.status} {reply.error}")


def make_cluster(workdir: Path, spec: ModeSpec, plan: Plan) -> Cluster:
    """The cluster of `spec`, its origin keeping the bodies it answers (for the body check)."""
    cluster = Cluster(
        workdir,
        nodes=spec.nodes,
        mode=Mode.SHARED if spec.shared else Mode.MEMORY,
        plugin_sidecar={"timeout_ms": plan.sidecar_timeout_ms},
        plugin_workers=plan.plugin_workers,
        sidecar_env=clean_env(),
        slow_ms=plan.origin_ms,
    )
    # the same origin, built before `start` (which is when the nodes learn its URL)
    cluster.origin = CountingOrigin(cluster.origin.listen, slow_ms=plan.origin_ms, keep_bodies=True)
    return cluster


async def measure_mode(workdir: Path, spec: ModeSpec, plan: Plan) -> list[Burst]:
    """Start `spec`'s cluster, add the no-cache route, warm up, then for every size and
    entry alternate cached and no-cache bursts on fresh URLs; stop the cluster."""
    cluster = make_cluster(workdir, spec, plan)
    started = time.monotonic()
    out: list[Burst] = []
    async with cluster:
        progress(f"{spec.name}: cluster up in {time.monotonic() - started:.1f} s")
        timeout = aiohttp.ClientTimeout(total=BURST_TIMEOUT_S)
        connector = aiohttp.TCPConnector(limit=0, force_close=False)
        async with aiohttp.ClientSession(timeout=timeout, connector=connector) as http:
            await add_no_cache_route(cluster, http)
            await warm_up(cluster, http)
            for n in plan.sizes:
                for entry in plan.entries:
                    for _ in range(plan.urls):
                        for route in (CACHED, NO_CACHE):
                            out.append(await burst(cluster, http, spec, entry, route, n))
                    got = [b.fetches for b in out[-2 * plan.urls :] if b.route == CACHED]
                    base = [b.fetches for b in out[-2 * plan.urls :] if b.route == NO_CACHE]
                    progress(f"{spec.name} N={n} {entry}: cached {got}, no cache {base}")
    return out
