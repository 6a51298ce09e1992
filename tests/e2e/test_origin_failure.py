"""stale-if-error when the origin cannot be reached at all, through kongsim and the real
plugin server: Kong answers 502 (refused) or 504 (timed out) itself and never runs the
plugin's ``response`` phase, so the plugin learns of the failure in ``log`` and answers
later requests from stored copies in ``access``, probing the origin with back-off.
"""

from __future__ import annotations

import asyncio
import signal
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
import yaml
from aiohttp import web

from kongsim.testing import KongSim
from tests.support.sidecar import example_stack, unix_sidecar
from tools.stack import free_port

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="module")]

URLS = [f"/sie/{i}" for i in range(6)]
CLIENTS = 8
#: Failed answers allowed while the origin fails: two waves of in-flight requests and the
#: probes (without the origin marked down: one per client per request time, 80+ here).
MAX_FAILED = 2 * CLIENTS + 6


class Origin:
    """An origin on a fixed port that can be stopped (refused), hung, and started again."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.hang_s = 0.0
        self.failing_path = ""  # this path answers 503
        self.requests = 0
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        async def handle(request: web.Request) -> web.Response:
            self.requests += 1
            if self.hang_s:
                await asyncio.sleep(self.hang_s)
            if request.path == self.failing_path:
                return web.Response(status=503, text="down")
            if request.path.startswith("/sie/swr"):  # refreshed in the background
                return web.Response(
                    body=f"body of {request.path} at {time.monotonic_ns()}".encode(),
                    headers={
                        "Cache-Control": "max-age=1, stale-while-revalidate=30",
                        "ETag": f'"{time.monotonic_ns()}"',
                        "Content-Type": "text/plain",
                    },
                )
            if request.path.startswith("/sie/must-revalidate"):  # never to be served stale
                return web.Response(
                    body=f"body of {request.path}".encode(),
                    headers={
                        "Cache-Control": "max-age=1, must-revalidate",
                        "ETag": '"mr"',  # kept past its lifetime, to be revalidated
                        "Content-Type": "text/plain",
                    },
                )
            return web.Response(
                body=f"body of {request.path}".encode(),
                headers={"Cache-Control": "max-age=1", "Content-Type": "text/plain"},
            )

        app = web.Application()
        app.router.add_get("/{tail:.*}", handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port, reuse_address=True).start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None


class World:
    def __init__(self, origin: Origin, sim: KongSim) -> None:
        self.origin = origin
        self.sim = sim


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def world() -> AsyncIterator[World]:
    with tempfile.TemporaryDirectory(prefix="strata-origin-", dir="/tmp") as d:
        tmp = Path(d)
        origin = Origin(free_port())
        await origin.start()
        sidecar = unix_sidecar(tmp / "sidecar.sock", {})
        await asyncio.to_thread(sidecar.start)
        config: dict[str, Any] = {
            "_format_version": "3.0",
            "services": [
                {
                    "name": "origin",
                    "url": f"http://127.0.0.1:{origin.port}",
                    "read_timeout": 400,
                    "routes": [
                        {
                            "name": "sie",
                            "paths": ["/sie"],
                            "strip_path": False,
                            "plugins": [
                                {
                                    "name": "strata-cache",
                                    "config": {
                                        "cache_control": True,
                                        "stale_if_error": 60,
                                        "sidecar": {
                                            "address": sidecar.address,
                                            "timeout_ms": 200,
                                        },
                                    },
                                }
                            ],
                        }
                    ],
                }
            ],
        }
        path = tmp / "kong.yml"
        path.write_text(yaml.safe_dump(config))
        try:
            async with KongSim(path, strict=True, prefix=str(tmp / "kong")) as sim:
                yield World(origin, sim)
        finally:
            await origin.stop()
            await asyncio.to_thread(sidecar.stop)


async def _prime_stale(world: World, http: aiohttp.ClientSession) -> dict[str, bytes]:
    """Store every URL, then let them go stale (max-age=1)."""
    bodies = {}
    for url in URLS:
        async with http.get(world.sim.base_url + url) as resp:
            assert resp.status == 200
            bodies[url] = await resp.read()
    await asyncio.sleep(0.1)
    for url in URLS:  # stored?
        async with http.get(world.sim.base_url + url) as resp:
            assert resp.headers["X-Cache-Status"] == "Hit", url
    await asyncio.sleep(1.1)
    return bodies


async def _load(world: World, seconds: float) -> list[tuple[float, int, str, bytes, str]]:
    """CLIENTS concurrent clients over URLS for `seconds`: (t, status, word, body, url)."""
    out: list[tuple[float, int, str, bytes, str]] = []
    t0 = time.monotonic()

    async def client(n: int) -> None:
        timeout = aiohttp.ClientTimeout(total=10)
        async with aiohttp.ClientSession(timeout=timeout) as http:
            i = n
            while time.monotonic() - t0 < seconds:
                url = URLS[i % len(URLS)]
                i += 1
                async with http.get(world.sim.base_url + url) as resp:
                    body = await resp.read()
                    word = resp.headers.get("X-Cache-Status", "")
                    out.append((time.monotonic() - t0, resp.status, word, body, url))

    await asyncio.gather(*(client(n) for n in range(CLIENTS)))
    return out


async def test_refused_origin_is_answered_from_stale_copies_with_back_off(world: World) -> None:
    async with aiohttp.ClientSession() as http:
        bodies = await _prime_stale(world, http)
    await world.origin.stop()  # connections are refused from now on
    try:
        results = await _load(world, 2.5)
    finally:
        await world.origin.start()
    statuses = Counter(r[1] for r in results)
    failed = [r for r in results if r[1] != 200]
    # Only requests already on their way (up to two waves: the log phase that marks the
    # origin down runs after the response), and the back-off probes, meet Kong's 502.
    assert len(failed) <= MAX_FAILED, (statuses, len(results))
    assert all(r[1] == 502 for r in failed)
    served = [r for r in results if r[1] == 200]
    assert len(served) >= 0.9 * len(results), statuses
    assert all(r[2] == "Stale" and r[3] == bodies[r[4]] for r in served)

    # The origin is back: the next probe finds it, and copies are refreshed again.
    deadline = time.monotonic() + 10
    async with aiohttp.ClientSession() as http:
        while True:
            async with http.get(world.sim.base_url + URLS[0]) as resp:
                word = resp.headers.get("X-Cache-Status")
                await resp.read()
            if word in ("Refresh", "Hit", "Miss"):
                break
            assert time.monotonic() < deadline, "origin never probed again"
            await asyncio.sleep(0.1)
    assert world.sim.issues == []


async def test_hanging_origin_times_out_once_then_stale_is_served(world: World) -> None:
    async with aiohttp.ClientSession() as http:
        bodies = await _prime_stale(world, http)
        before = world.origin.requests
        world.origin.hang_s = 2.0  # beyond the service's read_timeout of 400 ms
        try:
            results = await _load(world, 4.0)
        finally:
            world.origin.hang_s = 0.0
    statuses = Counter(r[1] for r in results)
    timed_out = [r for r in results if r[1] == 504]
    assert len(timed_out) <= MAX_FAILED, statuses
    served = [r for r in results if r[1] == 200]
    assert all(r[2] == "Stale" and r[3] == bodies[r[4]] for r in served)
    assert len(served) >= 0.8 * len(results), statuses
    # the failing origin saw the first wave and the probes, not every stale answer
    assert world.origin.requests - before <= MAX_FAILED


async def test_a_hung_sidecar_costs_its_timeout_not_the_coalescing_wait() -> None:
    """Coalescing is on by default (5 s): a sidecar that stops answering must not hold a
    request for the whole wait (the waiting lookup is sent only after a plain one answered)."""
    with tempfile.TemporaryDirectory(prefix="strata-hung-", dir="/tmp") as d:
        async with example_stack(Path(d)) as stack, aiohttp.ClientSession() as http:
            assert stack.sidecar.proc is not None
            async with http.get(stack.base_url + "/counter?t=connected") as resp:
                assert resp.headers["X-Cache-Status"] == "Miss"  # the channel is up
            stack.sidecar.proc.send_signal(signal.SIGSTOP)
            try:

                async def timed(url: str) -> tuple[float, int, str]:
                    t0 = time.monotonic()
                    async with http.get(stack.base_url + url) as resp:
                        await resp.read()
                        assert resp.headers["Cache-Status"].endswith("detail=sidecar-unavailable")
                        return time.monotonic() - t0, resp.status, resp.headers["X-Cache-Status"]

                onset = await asyncio.gather(*(timed(f"/counter?t=hung{i}") for i in range(4)))
                later = [await timed(f"/counter?t=later{i}") for i in range(3)]
            finally:
                stack.sidecar.proc.send_signal(signal.SIGCONT)
            assert all(r[1:] == (200, "Bypass") for r in onset + later)
            # the stack's sidecar timeout is 200 ms; the coalescing wait 5 s
            assert max(r[0] for r in onset + later) < 2.5, (onset, later)


async def test_one_failing_url_does_not_make_the_rest_of_the_route_stale(world: World) -> None:
    """Only the URL that fails is answered from its stale copy; the others keep being
    refreshed from the healthy origin."""
    async with aiohttp.ClientSession() as http:
        # an earlier test may have left the origin marked down: a URL without a stored copy
        # goes upstream whatever, and its answer marks the origin up
        async with http.get(world.sim.base_url + "/sie/never-stored?x=1") as resp:
            assert resp.status == 200
        await _prime_stale(world, http)
        world.origin.failing_path = URLS[0]
        try:
            words: dict[str, Counter[str]] = {url: Counter() for url in URLS}
            for _ in range(3):
                for url in URLS:
                    async with http.get(world.sim.base_url + url) as resp:
                        await resp.read()
                        assert resp.status == 200
                        words[url][resp.headers["X-Cache-Status"]] += 1
                await asyncio.sleep(1.1)  # stale again (max-age=1)
        finally:
            world.origin.failing_path = ""
    assert words[URLS[0]]["Stale"] == 3
    for url in URLS[1:]:
        assert words[url]["Stale"] == 0, (url, words[url])


async def test_a_must_revalidate_entry_gets_504_once_its_origin_cannot_be_reached(
    world: World,
) -> None:
    """RFC 9111 §5.2.2.2: a stale must-revalidate entry is never served when the origin
    cannot be reached; the first request meets Kong's own 502 (no response phase), the
    next ones a 504 from the plugin without contacting the dead origin, and when the origin
    is back the entry is fetched again."""
    url = world.sim.base_url + "/sie/must-revalidate-1"
    async with aiohttp.ClientSession() as http:
        async with http.get(url) as resp:
            assert resp.status == 200
        await asyncio.sleep(1.2)  # stale; the route's stale_if_error does not apply to it
        await world.origin.stop()
        try:
            async with http.get(url) as resp:
                first = resp.status
            await asyncio.sleep(0.3)  # the log phase marks the key unreachable
            async with http.get(url) as resp:
                second, detail = resp.status, resp.headers.get("Cache-Status", "")
                body = await resp.read()
        finally:
            await world.origin.start()
        assert first == 502
        assert (second, body) == (504, b"")
        assert "detail=origin-unreachable" in detail
        deadline = time.monotonic() + 10
        while True:  # the probe after the back-off finds the origin again
            async with http.get(url) as resp:
                if resp.status == 200:
                    break
            assert time.monotonic() < deadline, "origin never probed again"
            await asyncio.sleep(0.2)


async def test_background_refresh_under_load_while_the_origin_dies_and_comes_back(
    world: World,
) -> None:
    """8 clients inside stale-while-revalidate windows while the origin is refused mid-run:
    every answer is a stored copy (refreshed in the background before the kill, stale after
    it, as the refreshes then fail and leave it), none is an error; once the origin is
    back, a refresh lands and the copies are new."""
    urls = [f"/sie/swr-{i}" for i in range(4)]
    old: dict[str, bytes] = {}
    async with aiohttp.ClientSession() as http:
        for url in urls:
            async with http.get(world.sim.base_url + url) as resp:
                assert resp.status == 200
                old[url] = await resp.read()
        await asyncio.sleep(1.3)  # all stale, inside their 30 s windows
    t0 = time.monotonic()
    results: list[tuple[float, int, str, bytes, str]] = []

    async def client(n: int) -> None:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http:
            i = n
            while time.monotonic() - t0 < 2.0:
                url = urls[i % len(urls)]
                i += 1
                async with http.get(world.sim.base_url + url) as resp:
                    body = await resp.read()
                    word = resp.headers.get("X-Cache-Status", "")
                    results.append((time.monotonic() - t0, resp.status, word, body, url))

    async def kill_mid_run() -> None:
        await asyncio.sleep(0.3)
        await world.origin.stop()

    try:
        await asyncio.gather(kill_mid_run(), *(client(n) for n in range(CLIENTS)))
    finally:
        await world.origin.start()
    assert len(results) >= 40, len(results)
    # nobody got the dead origin's failure: stored copies only (refreshed ones before the
    # kill, then stale ones whose background refreshes fail)
    assert all(r[1] == 200 and r[2] in ("Hit", "Stale") for r in results), Counter(
        (r[1], r[2]) for r in results
    )
    late = [r for r in results if r[0] > 1.6]  # every copy stale again, the origin dead
    assert late and all(r[2] == "Stale" for r in late), Counter(r[2] for r in late)
    # the origin is back: within the window, a background refresh stores a new copy
    deadline = time.monotonic() + 10
    async with aiohttp.ClientSession() as http:
        while True:
            async with http.get(world.sim.base_url + urls[0]) as resp:
                body = await resp.read()
            if resp.status == 200 and body != old[urls[0]]:
                break
            assert time.monotonic() < deadline, "no refresh landed after the origin came back"
            await asyncio.sleep(0.2)
