"""HTTP through kongsim and the real strata-cache plugin server, against a real sidecar.

Each test uses its own URL (a `?t=` query or its own path) so that tests sharing the
module's stack do not see each other's entries.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
import yaml
from strata.v1 import cache_pb2 as pb

from kong_plugin.client import SidecarClient
from kongsim.errors import ConfigError as KongsimConfigError
from kongsim.testing import KongSim
from tests.support.sidecar import example_stack, stack_config
from tools.stack import Stack

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="module")]

#: Headers allowed to differ between a miss and the hit it stored: the cache's own, and
#: those Kong itself writes differently on proxied and plugin-generated responses.
CACHE_HEADERS = {
    "server",
    "x-cache-status",
    "x-cache-key",
    "cache-status",
    "age",
    "date",
    "x-kong-upstream-latency",
    "x-kong-proxy-latency",
    "x-kong-response-latency",
    "x-kong-request-id",
    "via",
}


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def stack() -> AsyncIterator[Stack]:
    with tempfile.TemporaryDirectory(prefix="strata-e2e-", dir="/tmp") as d:
        async with example_stack(Path(d)) as s:
            yield s


@pytest_asyncio.fixture(loop_scope="module")
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
        yield session


async def get(
    http: aiohttp.ClientSession, url: str, **kw: Any
) -> tuple[int, dict[str, str], bytes, list[tuple[str, str]]]:
    async with http.get(url, **kw) as resp:
        body = await resp.read()
        raw = [(k.decode().lower(), v.decode()) for k, v in resp.raw_headers]
        headers = {k.lower(): v for k, v in resp.headers.items()}
    if headers.get("x-cache-status") in ("Miss", "Refresh"):
        # The plugin stores after the response has gone out (as Kong's proxy-cache does, from
        # a timer); give that store a moment before the next request expects a hit.
        await asyncio.sleep(0.05)
    return resp.status, headers, body, raw


async def test_miss_then_hit_is_byte_identical(stack: Stack, http: aiohttp.ClientSession) -> None:
    url = stack.base_url + "/products/1?t=identical"
    s1, h1, b1, raw1 = await get(http, url)
    s2, h2, b2, raw2 = await get(http, url)
    assert (h1["x-cache-status"], h2["x-cache-status"]) == ("Miss", "Hit")
    assert s1 == s2 == 200
    assert b1 == b2
    assert [x for x in raw1 if x[0] not in CACHE_HEADERS] == [
        x for x in raw2 if x[0] not in CACHE_HEADERS
    ]
    assert h2["cache-status"].startswith("strata; hit")
    assert h2["age"].isdigit()
    assert h1["x-cache-key"] == h2["x-cache-key"]
    assert stack.sim is not None and stack.sim.issues == []


async def test_hit_does_not_touch_the_upstream(stack: Stack, http: aiohttp.ClientSession) -> None:
    url = stack.base_url + "/counter?t=upstream"
    _, _, b1, _ = await get(http, url)
    for _ in range(5):
        _, h, b, _ = await get(http, url)
        assert h["x-cache-status"] == "Hit" and b == b1
    # utm_* are ignored by the route's key: still the same entry
    _, h, b, _ = await get(http, url + "&utm_source=mail")
    assert h["x-cache-status"] == "Hit" and b == b1


async def test_vary_keeps_variants_apart(stack: Stack, http: aiohttp.ClientSession) -> None:
    url = stack.base_url + "/vary?t=vary"
    fr = {"Accept-Language": "fr"}
    en = {"Accept-Language": "en"}
    _, h, b_fr, _ = await get(http, url, headers=fr)
    assert h["x-cache-status"] == "Miss"
    _, h, b_en, _ = await get(http, url, headers=en)
    assert h["x-cache-status"] == "Miss" and b"hello" in b_en
    _, h, b, _ = await get(http, url, headers=fr)
    assert h["x-cache-status"] == "Hit" and b == b_fr and b"bonjour" in b
    _, h, b, _ = await get(http, url, headers=en)
    assert h["x-cache-status"] == "Hit" and b == b_en


async def test_one_consumers_response_never_reaches_another(
    stack: Stack, http: aiohttp.ClientSession
) -> None:
    url = stack.base_url + "/me?shared=1&t=consumers"
    alice = {"apikey": "alice-secret-key"}
    bob = {"apikey": "bob-secret-key"}
    _, h, b, _ = await get(http, url, headers=alice)
    assert h["x-cache-status"] == "Miss" and b"alice" in b
    _, h, b, _ = await get(http, url, headers=bob)
    assert h["x-cache-status"] == "Miss" and b"bob" in b and b"alice" not in b
    _, h, b, _ = await get(http, url, headers=alice)
    assert h["x-cache-status"] == "Hit" and b"alice" in b
    _, h, b, _ = await get(http, url, headers=bob)
    assert h["x-cache-status"] == "Hit" and b"bob" in b
    status, _, _, _ = await get(http, url)
    assert status == 401  # key-auth runs before the cache


@pytest.mark.parametrize(
    ("path", "headers", "reason"),
    [
        ("/counter?cc=no-store&t=ns", {}, "no-store"),
        ("/me?t=private", {"apikey": "alice-secret-key"}, "private"),
        ("/cookie?t=cookie", {}, "set-cookie"),
        ("/counter?cc=max-age%3D60&t=auth", {"Authorization": "Bearer x"}, "authorization"),
    ],
)
async def test_responses_that_must_not_be_shared_are_not_stored(
    stack: Stack, http: aiohttp.ClientSession, path: str, headers: dict[str, str], reason: str
) -> None:
    url = stack.base_url + path
    bodies = set()
    for _ in range(3):
        status, h, b, _ = await get(http, url, headers=headers)
        assert status == 200
        assert h["x-cache-status"] == "Bypass"
        assert reason in h["cache-status"]
        bodies.add(b)
    if reason != "private":  # the /me body is the same every time; the others count
        assert len(bodies) == 3


async def test_authorization_with_public_response_is_shared(
    stack: Stack, http: aiohttp.ClientSession
) -> None:
    url = stack.base_url + "/counter?cc=public%2C%20max-age%3D60&t=authpublic"
    auth = {"Authorization": "Bearer x"}
    await get(http, url, headers=auth)
    _, h, _, _ = await get(http, url, headers=auth)
    assert h["x-cache-status"] == "Hit"


@pytest.mark.parametrize("method", ["PUT", "PATCH", "DELETE", "POST"])
async def test_writes_invalidate_the_target(
    stack: Stack, http: aiohttp.ClientSession, method: str
) -> None:
    pid = {"PUT": 1, "PATCH": 2, "DELETE": 3, "POST": 4}[method]
    item = stack.base_url + f"/products/{pid}"
    listing = stack.base_url + "/products"
    for url in (item, listing):
        await get(http, url)
        _, h, _, _ = await get(http, url)
        assert h["x-cache-status"] == "Hit"
    if method == "POST":
        async with http.post(listing, json={"name": "new"}) as resp:
            assert resp.status == 201
    else:
        async with http.request(method, item, json={"price": 1}) as resp:
            assert resp.status in (200, 204)
            assert resp.headers["X-Cache-Status"] == "Bypass"
    # the listing is purged by URI (POST) or by the `products` tag (all writes)
    _, h, _, _ = await get(http, listing)
    assert h["x-cache-status"] == "Miss"
    if method != "POST":
        _, h, body, _ = await get(http, item)
        assert h["x-cache-status"] in ("Miss", "Bypass")
        if method != "DELETE":
            assert b'"price": 1' in body


async def test_stale_if_error_serves_the_stored_copy(
    stack: Stack, http: aiohttp.ClientSession
) -> None:
    url = stack.base_url + "/flaky?t=sie"
    _, h, body, _ = await get(http, url)
    assert h["x-cache-status"] == "Miss"
    await asyncio.sleep(1.1)  # max-age=1 has passed; the route allows stale-if-error=60
    stack.upstream_state.flaky_down = True
    try:
        status, h, stale_body, _ = await get(http, url)
    finally:
        stack.upstream_state.flaky_down = False
    assert status == 200
    assert h["x-cache-status"] == "Stale"
    assert "stale-if-error" in h["cache-status"]
    assert stale_body == body


async def test_stale_while_revalidate_and_304_refresh(
    stack: Stack, http: aiohttp.ClientSession
) -> None:
    url = stack.base_url + "/products/5?maxage=1&t=swr"
    _, h, body, _ = await get(http, url)
    assert h["x-cache-status"] == "Miss"
    await asyncio.sleep(1.1)
    before = stack.upstream_state.not_modified
    _, h, stale, _ = await get(http, url)  # holds the refresh lease: answered stale at once
    assert h["x-cache-status"] == "Stale"
    assert stale == body
    for _ in range(40):  # the background refresh revalidates (304) and stores it again
        if stack.upstream_state.not_modified == before + 1:
            break
        await asyncio.sleep(0.05)
    assert stack.upstream_state.not_modified == before + 1
    await asyncio.sleep(0.1)
    _, h, again, _ = await get(http, url)
    assert h["x-cache-status"] == "Hit" and again == body


async def test_conditional_request_answered_from_cache(
    stack: Stack, http: aiohttp.ClientSession
) -> None:
    url = stack.base_url + "/products/2?t=cond"
    _, h, _, _ = await get(http, url)
    etag = h["etag"]
    await asyncio.sleep(0.1)
    status, h, body, _ = await get(http, url, headers={"If-None-Match": etag})
    assert status == 304 and body == b""
    assert h["x-cache-status"] == "Hit"
    assert h["etag"] == etag


async def test_head_is_answered_from_a_stored_get(
    stack: Stack, http: aiohttp.ClientSession
) -> None:
    url = stack.base_url + "/products/2?t=head"
    _, _, body, _ = await get(http, url)
    async with http.head(url) as resp:
        assert resp.status == 200
        assert resp.headers["X-Cache-Status"] == "Hit"
        assert int(resp.headers["Content-Length"]) == len(body)


async def test_range_requests_pass_through(stack: Stack, http: aiohttp.ClientSession) -> None:
    """A Range miss goes upstream as a bypass; once a plain GET stored the 200, ranges are
    answered from it (tests/e2e/http_semantics/test_ranges.py)."""
    url = stack.base_url + "/products/4?t=range"
    status, h, _, _ = await get(http, url, headers={"Range": "bytes=0-3"})
    assert h["x-cache-status"] == "Bypass"  # a miss: nothing stored for a range
    assert h["cache-status"] == "strata; fwd=bypass; detail=range"  # and says why
    assert status in (200, 206)
    await get(http, url)
    await get(http, url)
    status, h, body, _ = await get(http, url, headers={"Range": "bytes=0-3"})
    assert (status, h["x-cache-status"], len(body)) == (206, "Hit", 4)


async def test_pdk_round_trips_per_request(stack: Stack, http: aiohttp.ClientSession) -> None:
    assert stack.sim is not None
    # The first store of a route in 60 s also reads the route's and its service's names
    # for the entry's event tags (kong_plugin.route_facts): at most 2 more, once a minute.
    await get(http, stack.base_url + "/counter?t=rpcs-warm")
    first = await stack.sim.last_request()
    assert first["step_round_trips"] <= 12, first["events"]
    url = stack.base_url + "/counter?t=rpcs"
    await get(http, url)
    miss = await stack.sim.last_request()
    await get(http, url)
    hit = await stack.sim.last_request()

    def steps(request: dict[str, Any], phase: str) -> int:
        return sum(e["step_round_trips"] for e in request["events"] if e["phase"] == phase)

    # access: request line, headers, consumer, exit (the first rides on HandleEvent)
    assert steps(hit, "access") <= 3, hit["events"]
    # log (a Kong timer, after the response went out): ctx.get, to learn whether the
    # upstream could be reached
    assert steps(hit, "log") <= 1, hit["events"]
    assert hit["step_round_trips"] <= 4, hit["events"]
    # access 3 + service (once per route) + ctx.set; response: ctx.get, status, headers,
    # body, set_headers; log: ctx.get
    assert steps(miss, "access") + steps(miss, "response") <= 10, miss["events"]
    assert miss["step_round_trips"] <= 11, miss["events"]
    print(
        f"PDK round trips: hit {hit['step_round_trips']} (RPCs {hit['rpc_count']}), "
        f"miss {miss['step_round_trips']} (RPCs {miss['rpc_count']})"
    )


async def test_stored_entries_carry_the_event_tags(
    stack: Stack, http: aiohttp.ClientSession
) -> None:
    """What the sidecar holds for a miss: the tags an event's urls, prefixes and flush
    reach, next to the plugin's own (path tag with invalidate_on_write, static tags)."""
    url = stack.base_url + "/products/./7?b=2&t=evtags&a=1"
    _, h, _, _ = await get(http, url)
    assert h["x-cache-status"] == "Miss"
    client = SidecarClient(stack.sidecar.address, timeout_s=5.0)
    try:
        found = await asyncio.to_thread(client.lookup, h["x-cache-key"].encode())
    finally:
        client.close()
    assert found.outcome == pb.OUTCOME_HIT
    tags = set(found.entry.tags)
    expected = {
        "url:/products/7?a=1&b=2&t=evtags",
        "path:/",
        "path:/products/",
        "path:/products/7",
        "route-name:products",
        "service:catalogue",
        "catalogue",
    }
    assert expected <= tags, tags
    assert any(t.startswith("uri:") and t.endswith("/products/7") for t in tags), tags


async def test_killed_sidecar_gives_no_client_errors() -> None:
    with tempfile.TemporaryDirectory(prefix="strata-kill-", dir="/tmp") as d:
        async with example_stack(Path(d)) as stack, aiohttp.ClientSession() as http:
            url = stack.base_url + "/counter?t=kill"
            statuses: list[tuple[int, str]] = []
            for i in range(40):
                if i == 20:
                    await asyncio.to_thread(stack.sidecar.kill)
                status, h, _, _ = await get(http, url)
                statuses.append((status, h.get("x-cache-status", "")))
            await asyncio.to_thread(stack.sidecar.start)
            # The client's channel reconnects within its backoff (at most 1 s).
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline:
                status, h, _, _ = await get(http, url)
                statuses.append((status, h.get("x-cache-status", "")))
                if statuses[-1][1] == "Hit":
                    break
                await asyncio.sleep(0.05)
            assert all(s == 200 for s, _ in statuses), statuses
            words = [w for _, w in statuses]
            assert words[19] == "Hit"
            # the sidecar is gone: fail open; a worker's near-cache may answer the hot URL
            # until its feed sees the stream break (a few ms), never after a Bypass
            after = words[20:40]
            held = len(after) - len("".join("x" if w == "Hit" else "." for w in after).lstrip("x"))
            assert set(after[held:]) == {"Bypass"} and held <= 5, after
            assert words[-1] == "Hit"  # recovered after the restart
            assert stack.sim is not None and stack.sim.issues == []


async def test_invalid_plugin_config_is_rejected_with_a_clear_message(tmp_path: Path) -> None:
    config = stack_config("http://127.0.0.1:9", "unix:/tmp/nowhere.sock", cache_ttl=-5)
    path = tmp_path / "kong.yml"
    path.write_text(yaml.safe_dump(config))
    with pytest.raises(KongsimConfigError) as info:
        async with KongSim(path, strict=True, prefix=str(tmp_path / "k")):
            pass
    message = str(info.value)
    assert "strata-cache" in message
    assert "products" in message
    assert "config.cache_ttl" in message


async def test_slow_upstream_coalesced_and_hit_is_fast(
    stack: Stack, http: aiohttp.ClientSession
) -> None:
    url = stack.base_url + "/slow?t=coalesce"
    before = stack.upstream_state.hits
    t0 = time.monotonic()
    results = await asyncio.gather(*(get(http, url) for _ in range(5)))
    assert all(r[0] == 200 for r in results)
    assert stack.upstream_state.hits - before == 1  # one fill for five concurrent misses
    words = sorted(r[1]["x-cache-status"] for r in results)
    assert words.count("Miss") == 1 and words.count("Hit") == 4
    t1 = time.monotonic()
    _, h, _, _ = await get(http, url)
    assert h["x-cache-status"] == "Hit"
    assert time.monotonic() - t1 < (t1 - t0)  # the hit skips the 300 ms upstream


async def test_stale_while_revalidate_one_refreshes_the_others_get_stale(
    stack: Stack, http: aiohttp.ClientSession
) -> None:
    url = stack.base_url + "/products/5?maxage=1&t=swr-concurrent"
    await get(http, url)
    await asyncio.sleep(1.1)  # stale now; the route allows stale-while-revalidate=30
    before = stack.upstream_state.catalogue_hits
    results = await asyncio.gather(*(get(http, url) for _ in range(4)))
    words = [r[1]["x-cache-status"] for r in results]
    assert all(r[0] == 200 for r in results)
    # the lease holder too is answered stale; it refreshes the entry in the background
    assert set(words) <= {"Stale", "Hit"}, words
    for _ in range(40):
        if stack.upstream_state.catalogue_hits - before >= 1:
            break
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.2)
    assert stack.upstream_state.catalogue_hits - before == 1  # one upstream revalidation


async def test_coalescing_is_on_by_default(stack: Stack, http: aiohttp.ClientSession) -> None:
    # the `misc` route does not set coalesce_wait_ms: the default applies
    url = stack.base_url + "/counter?t=stampede"
    before = stack.upstream_state.hits
    results = await asyncio.gather(*(get(http, url) for _ in range(30)))
    assert all(r[0] == 200 for r in results)
    assert stack.upstream_state.hits - before == 1  # thirty concurrent misses, one fetch
    words = [r[1]["x-cache-status"] for r in results]
    assert words.count("Miss") == 1 and words.count("Hit") == 29, words
