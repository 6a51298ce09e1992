"""Background refresh within stale-while-revalidate (RFC 5861 §3) end to end: every request
inside the window is answered stale at once, the fill-lease holder included, while one
refresh per key runs from the plugin server. The origin holds the refresh's answer back
(`Reply.gate`), so an answer that arrives before the gate opens cannot have waited for it.

The module's routes forward ``X-Api-Key`` on refreshes (``forward_headers``); entries say
``public`` so that requests carrying a ``Cookie`` may be served them.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import aiohttp
import pytest

from tests.e2e.http_semantics.conftest import BASE_OVERRIDES, Answer, fetch
from tests.support.scripted_origin import Reply, ScriptedOrigin
from tools.stack import Stack

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="module")]

JSON = ("Content-Type", "application/json")
#: Stale after 1 s, served stale for 30 s more.
SWR = ("Cache-Control", "public, max-age=1, stale-while-revalidate=30")


@pytest.fixture(scope="module")
def plugin_overrides() -> dict[str, Any]:
    return {**BASE_OVERRIDES, "background_refresh": {"forward_headers": ["X-Api-Key"]}}


async def until(check: Callable[[], bool], timeout_s: float = 3.0) -> bool:
    """Poll `check` every 50 ms until it holds or `timeout_s` passed."""
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() >= deadline:
            return False
        await asyncio.sleep(0.05)
    return True


async def test_nobody_waits_and_one_refresh_carries_the_right_headers(
    stack: Stack, origin: ScriptedOrigin, http: aiohttp.ClientSession
) -> None:
    path = "/products/bg-headers?b=2&a=%20x"
    route = path.split("?", maxsplit=1)[0]
    gate = asyncio.Event()
    first = [JSON, SWR, ("ETag", '"v1"'), ("Vary", "Accept-Language")]
    second = [JSON, ("Cache-Control", "public, max-age=60"), ("ETag", '"v2"')]
    second.append(("Vary", "Accept-Language"))
    origin.script(route, Reply(200, first, b'{"v":1}'), Reply(200, second, b'{"v":2}', gate=gate))
    client = {"Accept-Language": "en", "X-Api-Key": "k1", "Cookie": "session=s", "X-Other": "o"}
    primed = await fetch(http, stack, path, headers={"Accept-Language": "en"})
    assert primed.cache == "Miss"
    await asyncio.sleep(1.5)
    try:
        answers: list[Answer] = await asyncio.wait_for(
            asyncio.gather(*(fetch(http, stack, path, headers=client) for _ in range(8))), 5
        )
    finally:
        gate.set()
    assert [a.cache for a in answers] == ["Stale"] * 8
    assert all(a.body == b'{"v":1}' for a in answers)
    assert all("detail=stale-while-revalidate" in a.headers["cache-status"] for a in answers)
    assert await until(lambda: origin.hits(route) >= 2)
    prime, refresh = origin.requests(route)[:2]
    assert refresh.method == "GET" and refresh.path_qs == prime.path_qs == path
    assert refresh.header("Host") == prime.header("Host")
    assert refresh.header("If-None-Match") == '"v1"'
    assert refresh.header("Accept-Language") == "en"
    assert refresh.header("X-Api-Key") == "k1"
    assert refresh.header("Cookie") is None and refresh.header("X-Other") is None
    fresh = await fetch(http, stack, path, headers={"Accept-Language": "en"})
    for _ in range(40):
        if fresh.cache == "Hit" and fresh.body == b'{"v":2}':
            break
        await asyncio.sleep(0.05)
        fresh = await fetch(http, stack, path, headers={"Accept-Language": "en"})
    assert (fresh.cache, fresh.body) == ("Hit", b'{"v":2}')
    assert origin.hits(route) == 2  # the refresh was the only request after the prime
    assert stack.sim is not None and stack.sim.issues == []  # no PDK call after an exit


async def test_a_failed_refresh_keeps_the_stale_copy_and_is_tried_once_per_lease(
    stack: Stack, origin: ScriptedOrigin, http: aiohttp.ClientSession
) -> None:
    path = "/products/bg-error"
    gate = asyncio.Event()
    failing = Reply(500, [("Content-Type", "text/plain")], b"boom", gate=gate)
    origin.script(path, Reply(200, [JSON, SWR, ("ETag", '"e1"')], b'{"e":1}'), failing)
    assert (await fetch(http, stack, path)).cache == "Miss"
    await asyncio.sleep(1.5)
    try:
        answers = await asyncio.wait_for(
            asyncio.gather(*(fetch(http, stack, path) for _ in range(5))), 5
        )
        assert [a.cache for a in answers] == ["Stale"] * 5
        assert await until(lambda: origin.hits(path) == 2)
    finally:
        gate.set()
    await asyncio.sleep(0.3)  # the refresh got its 500 and gave the lease up
    assert origin.hits(path) == 2
    again = await fetch(http, stack, path)  # takes the lease again: one more refresh
    assert (again.cache, again.body) == ("Stale", b'{"e":1}')
    assert await until(lambda: origin.hits(path) == 3)
    await asyncio.sleep(0.3)
    assert origin.hits(path) == 3


async def test_a_head_request_holding_the_lease_refreshes_with_get(
    stack: Stack, origin: ScriptedOrigin, http: aiohttp.ClientSession
) -> None:
    path = "/products/bg-head"
    origin.script(path, Reply(200, [JSON, SWR, ("ETag", '"h1"')], b'{"h":1}'))
    assert (await fetch(http, stack, path)).cache == "Miss"
    await asyncio.sleep(1.5)
    head = await fetch(http, stack, path, method="HEAD")
    assert head.cache == "Stale" and head.body == b""
    assert await until(lambda: origin.hits(path) == 2)
    assert [r.method for r in origin.requests(path)] == ["GET", "GET"]


async def test_after_the_window_the_stale_copy_is_not_served(
    stack: Stack, origin: ScriptedOrigin, http: aiohttp.ClientSession
) -> None:
    path = "/products/bg-expired"
    short = ("Cache-Control", "public, max-age=1, stale-while-revalidate=1")
    origin.script(
        path,
        Reply(200, [JSON, short, ("ETag", '"x1"')], b'{"x":1}'),
        Reply(200, [JSON, short, ("ETag", '"x2"')], b'{"x":2}'),
    )
    assert (await fetch(http, stack, path)).cache == "Miss"
    await asyncio.sleep(2.5)
    late = await fetch(http, stack, path)
    assert late.cache != "Stale"
    assert late.body == b'{"x":2}'  # the client waited for the origin's answer
    assert origin.hits(path) == 2
