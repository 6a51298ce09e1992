"""The hit path through kongsim and the real plugin server (two workers) against a real
sidecar: hot hits make no sidecar call, a purge reaches every worker's near-cache within
the push bound, a response is visible to the next request as soon as its client has it,
and one worker killed under load costs no client an error."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import grpc
import pytest
import pytest_asyncio
from strata.v1 import cache_pb2 as pb
from strata.v1 import cache_pb2_grpc as pb_grpc

from kong_plugin.client import SidecarClient
from kongsim.protocol.rpc import RpcClient
from tests.support.sidecar import example_stack
from tools.stack import Stack

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="module")]

CLIENTS = 8


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def stack() -> AsyncIterator[Stack]:
    with tempfile.TemporaryDirectory(prefix="strata-hit-", dir="/tmp") as d:
        async with example_stack(Path(d)) as s:
            yield s


async def _get(http: aiohttp.ClientSession, url: str) -> tuple[int, str, bytes]:
    async with http.get(url) as resp:
        return resp.status, resp.headers.get("X-Cache-Status", ""), await resp.read()


def _lookups(address: str) -> int:
    with grpc.insecure_channel(address) as channel:
        stats = pb_grpc.CacheServiceStub(channel).Stats(pb.StatsRequest(), timeout=5)
    return int(stats.lookups)


def _workers(stack: Stack) -> list[int]:
    assert stack.sim is not None
    server = stack.sim.plugin_server("strata-cache")
    out = subprocess.run(
        ["pgrep", "-P", str(server.pid)], capture_output=True, text=True, check=False
    )
    return [int(p) for p in out.stdout.split()]


async def test_the_plugin_server_runs_one_worker_per_cpu(stack: Stack) -> None:
    expected = max(1, min(len(os.sched_getaffinity(0)), 64))
    if expected == 1:
        assert _workers(stack) == []  # the server is the one worker
    else:
        assert len(_workers(stack)) == expected


async def test_hot_hits_make_no_sidecar_call(stack: Stack) -> None:
    url = stack.base_url + "/products/1?t=near-hot"
    async with aiohttp.ClientSession() as http:
        assert (await _get(http, url))[1] == "Miss"
        for _ in range(20):  # every worker asks twice and keeps it
            await _get(http, url)
        before = await asyncio.to_thread(_lookups, stack.sidecar.address)
        words = [(await _get(http, url))[1] for _ in range(100)]
        after = await asyncio.to_thread(_lookups, stack.sidecar.address)
    assert words == ["Hit"] * 100
    # the near-caches' copies live 1 s: a few refreshing lookups at most, never one per hit
    assert after - before <= 10, after - before


async def test_a_purge_reaches_every_workers_near_cache(stack: Stack) -> None:
    url = stack.base_url + "/products/2?t=near-purge"
    async with aiohttp.ClientSession() as http:
        await _get(http, url)
        for _ in range(20):
            await _get(http, url)
        assert (await _get(http, url))[1] == "Hit"
        key = None
        async with http.get(url, headers={"kong-debug": "1"}) as resp:
            key = resp.headers["X-Cache-Key"]
        client = SidecarClient(stack.sidecar.address, 5.0)
        try:
            await asyncio.to_thread(client.invalidate, key=key.encode())
        finally:
            client.close()
        await asyncio.sleep(0.05)  # the push: p99 under 10 ms (tests/integration)
        words = [(await _get(http, url))[1] for _ in range(12)]
    assert words[0] == "Miss", words
    assert "Miss" not in words[1:], words  # stored again by the first, visible at once


async def test_a_response_is_visible_when_its_client_has_it(stack: Stack) -> None:
    """With 8 clients, each fetching a new URL and asking for it again at once: the second
    answer is always a hit (the store lands before the first response goes out)."""

    async def client(n: int, http: aiohttp.ClientSession) -> list[tuple[str, str]]:
        pairs = []
        for i in range(15):
            url = f"{stack.base_url}/products/{n}?t=visible-{n}-{i}-{time.monotonic_ns()}"
            first = (await _get(http, url))[1]
            second = (await _get(http, url))[1]
            pairs.append((first, second))
        return pairs

    async with aiohttp.ClientSession() as http:
        results = await asyncio.gather(*(client(n, http) for n in range(CLIENTS)))
    pairs = [p for r in results for p in r]
    assert all(p == ("Miss", "Hit") for p in pairs), [p for p in pairs if p != ("Miss", "Hit")]


@pytest_asyncio.fixture(loop_scope="module")
async def lenient() -> AsyncIterator[Stack]:
    """kongsim failing open on plugin-server errors, as Kong does (strict mode would turn
    the RPC errors of the killed worker's connections into 500s)."""
    with tempfile.TemporaryDirectory(prefix="strata-kill-", dir="/tmp") as d:
        async with example_stack(Path(d), strict=False) as s:
            yield s


async def test_a_worker_killed_under_load_costs_no_client_an_error(lenient: Stack) -> None:
    stack = lenient
    workers = _workers(stack)
    if not workers:
        pytest.skip("one CPU: the plugin server has no separate workers")
    stop = asyncio.Event()
    problems: list[str] = []
    served = [0]

    async def client(n: int) -> None:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http:
            i = 0
            while not stop.is_set():
                i += 1
                url = f"{stack.base_url}/products/{i % 5 + 1}?t=kill-{n % 3}"
                try:
                    status, _, body = await _get(http, url)
                except Exception as exc:
                    problems.append(f"{url}: {exc!r}")
                    continue
                if status != 200 or not body:
                    problems.append(f"{url}: {status}")
                served[0] += 1

    tasks = [asyncio.create_task(client(n)) for n in range(CLIENTS)]
    await asyncio.sleep(1.0)
    os.kill(workers[0], signal.SIGKILL)
    deadline = time.monotonic() + 10
    while len(_workers(stack)) < len(workers) or set(_workers(stack)) == set(workers):
        assert time.monotonic() < deadline, "the killed worker was not started again"
        await asyncio.sleep(0.1)
    await asyncio.sleep(1.0)
    stop.set()
    await asyncio.gather(*tasks)
    assert problems == [], problems[:10]
    assert served[0] > 50
    # the new worker serves: every worker answers GetStatus over Kong's socket
    assert stack.sim is not None
    sock = stack.sim.plugin_server("strata-cache").socket_path
    seen = set()
    for _ in range(40):
        rpc = RpcClient(sock, timeout=5)
        seen.add((await rpc.call("plugin.GetStatus"))["Pid"])
        await rpc.close()
    assert seen <= set(_workers(stack)) and len(seen) >= 1


async def test_a_header_value_that_is_not_utf8_passes_through_and_is_cached(
    stack: Stack,
) -> None:
    """Kong hands a header's raw bytes to the plugin server as a msgpack str: neither side
    may fail on bytes that are not UTF-8."""
    host, port = stack.base_url.removeprefix("http://").split(":")
    raw = (
        b"GET /products/3?t=raw-bytes HTTP/1.1\r\nHost: x\r\nX-Junk: a\xffb\xe9\r\n"
        b"Connection: close\r\n\r\n"
    )
    words = []
    for _ in range(2):
        reader, writer = await asyncio.open_connection(host, int(port))
        writer.write(raw)
        await writer.drain()
        head = (await reader.read()).split(b"\r\n\r\n", 1)[0].decode("latin-1")
        writer.close()
        status = head.split("\r\n", 1)[0]
        assert " 200 " in status, head
        words.append(next(h for h in head.split("\r\n") if h.lower().startswith("x-cache-status")))
    assert words[1].endswith("Hit"), words


async def test_a_sidecar_killed_under_load_costs_no_client_an_error(lenient: Stack) -> None:
    """8 clients on hot URLs (near-cache hits) while the sidecar is killed and started again:
    every answer is a 200 with the right body, the near-caches stop answering once the
    stream breaks (then Bypass), and hits come back after the restart."""
    stack = lenient
    stop = asyncio.Event()
    problems: list[str] = []
    words: list[tuple[float, str]] = []
    async with aiohttp.ClientSession() as http:
        expected = {i: (await _get(http, f"{stack.base_url}/products/{i}?t=sk"))[2] for i in (1, 2)}

    async def client(n: int) -> None:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http:
            i = n
            while not stop.is_set():
                i += 1
                which = i % 2 + 1
                status, word, body = await _get(http, f"{stack.base_url}/products/{which}?t=sk")
                if status != 200 or body != expected[which]:
                    problems.append(f"{which}: {status} {body[:60]!r}")
                words.append((time.monotonic(), word))

    tasks = [asyncio.create_task(client(n)) for n in range(CLIENTS)]
    await asyncio.sleep(1.0)
    await asyncio.to_thread(stack.sidecar.kill)
    killed_at = time.monotonic()
    await asyncio.sleep(1.5)
    starting_at = time.monotonic()  # from here the sidecar may answer again
    await asyncio.to_thread(stack.sidecar.start)
    restarted_at = time.monotonic()
    await asyncio.sleep(2.5)
    stop.set()
    await asyncio.gather(*tasks)
    assert problems == [], problems[:10]
    down = [w for t, w in words if killed_at + 0.5 < t < starting_at]
    assert down and set(down) == {"Bypass"}, sorted(set(down))
    assert "Hit" in [w for t, w in words if t > restarted_at + 1.5]
