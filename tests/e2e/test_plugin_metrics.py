"""The plugin server's ``/metrics`` through kongsim, a real sidecar and two workers: a miss,
hits and a bypass are counted where they were decided, PDK and phase times are observed,
and a worker killed mid-way leaves the node's totals where they were (never lower)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
import pytest_asyncio
import yaml
from aiohttp import web
from prometheus_client.parser import text_string_to_metric_families

from deploy.upstream.app import State, build_app
from kongsim.protocol.spec import PluginServerSpec
from kongsim.testing import KongSim
from tests.support.sidecar import clean_env, stack_config, unix_sidecar
from tools.services.procs import free_port

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="module")]


class Node:
    def __init__(self, sim: KongSim, metrics_url: str) -> None:
        self.sim = sim
        self.metrics_url = metrics_url


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def node() -> AsyncIterator[Node]:
    with tempfile.TemporaryDirectory(prefix="strata-metrics-", dir="/tmp") as d:
        tmp = Path(d)
        upstream_port = free_port()
        runner = web.AppRunner(build_app(State(slow_ms=300)), access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", upstream_port).start()
        sidecar = unix_sidecar(tmp / "sidecar.sock", clean_env())
        await asyncio.to_thread(sidecar.start)
        metrics_port = free_port()
        config = stack_config(f"http://127.0.0.1:{upstream_port}", sidecar.address)
        (tmp / "kong.yml").write_text(yaml.safe_dump(config))
        spec = PluginServerSpec(
            name="strata-cache",
            start_cmd="{python} -m kong_plugin -p {prefix} --socket-name strata-cache.socket "
            f"--workers 2 --metrics-listen 127.0.0.1:{metrics_port}",
            query_cmd="{python} -m kong_plugin --dump",
        )
        sim = KongSim(tmp / "kong.yml", plugin_servers=[spec], prefix=str(tmp / "kong"))
        try:
            await sim.__aenter__()
            yield Node(sim, f"http://127.0.0.1:{metrics_port}/metrics")
        finally:
            await sim.__aexit__(None, None, None)
            await asyncio.to_thread(sidecar.stop)
            await runner.cleanup()


async def scrape(
    http: aiohttp.ClientSession, url: str
) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    async with http.get(url) as resp:
        assert resp.status == 200
        text = await resp.text()
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def get(m: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str) -> float:
    return m.get((name, tuple(sorted(labels.items()))), 0.0)


async def until_workers(http: aiohttp.ClientSession, url: str, n: int) -> dict:  # type: ignore[type-arg]
    for _ in range(100):
        try:
            m = await scrape(http, url)
            if (
                get(m, "strata_plugin_workers") == n
                and ("strata_plugin_near_cache_feed_up", ()) in m
            ):
                return m
        except aiohttp.ClientError:
            pass
        await asyncio.sleep(0.2)
    raise AssertionError("the workers never all answered a scrape")


async def test_decisions_are_counted_and_a_worker_restart_never_lowers_a_total(node: Node) -> None:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http:
        before = await until_workers(http, node.metrics_url, 2)
        base = node.sim.base_url + "/products/1?t=metrics"
        words = []
        for _ in range(4):
            async with http.get(base) as resp:
                await resp.read()
                words.append(resp.headers.get("x-cache-status"))
            await asyncio.sleep(0.05)
        async with http.get(base, headers={"If-Match": '"x"'}) as resp:  # a precondition
            await resp.read()
            assert resp.headers.get("x-cache-status") == "Bypass"
        await node.sim.wait_idle()
        assert words[0] == "Miss" and set(words[1:]) == {"Hit"}, words
        m = await scrape(http, node.metrics_url)
        await asyncio.sleep(0.6)  # past the reuse window of an answer
        m = await scrape(http, node.metrics_url)

        def grew(name: str, **labels: str) -> float:
            return get(m, name, **labels) - get(before, name, **labels)

        assert grew("strata_plugin_requests_total", result="miss") == 1
        assert grew("strata_plugin_requests_total", result="hit") == 3
        assert grew("strata_plugin_stores_total", outcome="stored") == 1
        hits_by_tier = sum(
            grew("strata_plugin_hits_total", tier=t)
            for t in ("near", "memory", "redis", "memcached", "postgres", "other")
        )
        assert hits_by_tier == 3
        assert grew("strata_plugin_requests_total", result="bypass") == 1
        assert grew("strata_plugin_bypass_total", reason="precondition") == 1
        assert grew("strata_plugin_pdk_seconds_count", phase="access") >= 5 * 2
        assert grew("strata_plugin_phase_seconds_count", phase="access") == 5
        assert grew("strata_plugin_phase_seconds_count", phase="log") == 5

        # kill a worker: the node's totals stay (its last counts are kept), never lower
        sup = node.sim.plugin_server("strata-cache")
        out = subprocess.run(
            ["pgrep", "-P", str(sup.pid)], capture_output=True, text=True, check=False
        )
        os.kill(int(out.stdout.split()[0]), signal.SIGKILL)
        for _ in range(60):
            await asyncio.sleep(0.25)
            after = await scrape(http, node.metrics_url)
            if (
                get(after, "strata_plugin_worker_restarts_total") >= 1
                and get(after, "strata_plugin_workers") == 2
            ):
                break
        else:
            raise AssertionError("the killed worker was never counted as restarted")
        for key, value in m.items():
            if key[0].endswith(("_total", "_count", "_bucket")):
                assert after.get(key, 0.0) >= value, key
