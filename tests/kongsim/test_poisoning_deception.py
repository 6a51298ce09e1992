"""Cache poisoning through unkeyed request headers, and cache deception with ``Cookie`` /
``Authorization``, through kongsim, the real strata-cache plugin server and a real sidecar.

The origin here does what many real ones do: it honours override headers (method override,
URL rewrite, host and scheme overrides) and writes what they said into its answer, and it
answers ``/account/...`` with the page of whoever the ``Cookie`` or ``Authorization`` says
is logged in -- whatever the path's extension. Each test uses its own path, so tests
sharing the module's stack never see each other's entries.
"""

from __future__ import annotations

import asyncio
import json
import os
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
import yaml
from aiohttp import web

from kongsim.testing import KongSim
from tests.support.sidecar import unix_sidecar
from tools.stack import free_port

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="module")]

#: Override headers an attacker sends, with the value the origin must never act on.
OVERRIDES = {
    "X-Original-URL": "/admin",
    "X-Rewrite-URL": "/admin",
    "X-HTTP-Method-Override": "DELETE",
    "X-HTTP-Method": "DELETE",
    "X-Method-Override": "DELETE",
    "Forwarded": "host=evil.example;proto=http",
    "X-Host": "evil.example",
    "X-Forwarded-Server": "evil.example",
    "X-Original-Host": "evil.example",
    "X-HTTP-Host-Override": "evil.example",
    "X-Forwarded-Scheme": "http",
    "X-Forwarded-SSL": "off",
    "Front-End-Https": "off",
    "X-Url-Scheme": "http",
    "X-Forwarded-Protocol": "http",
}
ATTACK_VALUES = ("/admin", "DELETE", "evil.example", "proto=http")


class Origin:
    """An origin that honours override headers and serves per-user ``/account`` pages.

    Every answer is JSON (``application/json``): the path it served, the override headers it
    saw, the user (``Cookie: session=<user>`` or ``Authorization: Bearer <user>``) and a
    counter. ``?cc=...`` becomes the answer's ``Cache-Control``; ``?delay=S`` waits first.
    """

    def __init__(self) -> None:
        self.runner: web.AppRunner | None = None
        self.port = 0
        self.count = 0
        self.seen: list[dict[str, str]] = []

    async def _handle(self, request: web.Request) -> web.Response:
        self.count += 1
        self.seen.append({k.lower(): v for k, v in request.headers.items()})
        delay = float(request.query.get("delay", "0"))
        if delay:
            await asyncio.sleep(delay)
        # read as a CGI-style server does: `_` and `-` are one (HTTP_X_ORIGINAL_URL)
        family = {k.lower().replace("_", "-"): v for k, v in request.headers.items()}
        path = family.get("x-original-url") or family.get("x-rewrite-url")
        user = "nobody"
        cookie = request.cookies.get("session")
        auth = request.headers.get("Authorization", "")
        if cookie:
            user = cookie
        elif auth.startswith("Bearer "):
            user = auth[7:]
        honoured = {
            k: v
            for k, v in request.headers.items()
            if k.lower().replace("_", "-") in LOWER_OVERRIDES
        }
        body = {
            "served": path or request.path,
            "overrides": honoured,
            "user": user,
            "page": f"account of {user}" if user != "nobody" else "please log in",
            "n": self.count,
        }
        headers = {"Content-Type": "application/json"}
        if "cc" in request.query:
            headers["Cache-Control"] = request.query["cc"]
        return web.Response(body=json.dumps(body).encode(), headers=headers)

    async def start(self) -> Origin:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        self.port = free_port()
        await web.TCPSite(self.runner, "127.0.0.1", self.port).start()
        return self

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()


LOWER_OVERRIDES = frozenset(n.lower() for n in OVERRIDES)


def kong_yml(origin_port: int, sidecar_address: str) -> dict[str, Any]:
    sidecar = {"address": sidecar_address, "timeout_ms": 500}

    def route(name: str, path: str, *plugins: dict[str, Any], **config: Any) -> dict[str, Any]:
        cache = {"name": "strata-cache", "config": {"sidecar": sidecar, **config}}
        return {"name": name, "paths": [path], "strip_path": False, "plugins": [*plugins, cache]}

    return {
        "_format_version": "3.0",
        "services": [
            {
                "name": "origin",
                "url": f"http://127.0.0.1:{origin_port}",
                "routes": [
                    # every default: cache_control false, consumer_scope auto, no auth plugin
                    route("poison", "/poison"),
                    route("account", "/account"),
                    route("rfc", "/rfc", cache_control=True, coalesce_wait_ms=3000),
                    route("keyed", "/keyed", vary_headers=["X-Host", "Cookie"]),
                    route("me", "/me", {"name": "key-auth"}),
                    route("bypass", "/bypass", cookie_requests="bypass"),
                    route("ignore", "/ignore", cookie_requests="ignore", strip_request_headers=[]),
                ],
            }
        ],
        "consumers": [
            {"username": "alice", "keyauth_credentials": [{"key": "alice-key"}]},
            {"username": "bob", "keyauth_credentials": [{"key": "bob-key"}]},
        ],
    }


class Env:
    def __init__(self, sim: KongSim, origin: Origin) -> None:
        self.sim = sim
        self.origin = origin
        self.base = sim.base_url


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def env() -> AsyncIterator[Env]:
    with tempfile.TemporaryDirectory(prefix="strata-poison-", dir="/tmp") as d:
        tmp = Path(d)
        origin = await Origin().start()
        env = {k: v for k, v in os.environ.items() if not k.startswith("STRATA_")}
        sidecar = unix_sidecar(tmp / "sidecar.sock", env)
        await asyncio.to_thread(sidecar.start)
        try:
            path = tmp / "kong.yml"
            path.write_text(yaml.safe_dump(kong_yml(origin.port, sidecar.address)))
            async with KongSim(path, strict=True, prefix=str(tmp / "kong")) as sim:
                yield Env(sim, origin)
        finally:
            await asyncio.to_thread(sidecar.stop)
            await origin.stop()


@pytest_asyncio.fixture(loop_scope="module")
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    # no cookie jar: every request carries exactly the headers a test gives it
    jar = aiohttp.DummyCookieJar()
    timeout = aiohttp.ClientTimeout(total=10)
    async with aiohttp.ClientSession(timeout=timeout, cookie_jar=jar) as session:
        yield session


async def get(
    http: aiohttp.ClientSession, url: str, headers: dict[str, str] | None = None
) -> tuple[dict[str, str], dict[str, Any]]:
    async with http.get(url, headers=headers or {}) as resp:
        assert resp.status == 200, await resp.text()
        body = await resp.json(content_type=None)
        h = {k.lower(): v for k, v in resp.headers.items()}
    if h.get("x-cache-status") in ("Miss", "Refresh"):
        await asyncio.sleep(0.05)  # the store runs after the response went out
    return h, body


# --- poisoning ------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(OVERRIDES))
async def test_override_headers_never_shape_a_shared_entry(
    env: Env, http: aiohttp.ClientSession, name: str
) -> None:
    url = f"{env.base}/poison/{name.lower()}"
    before = len(env.origin.seen)
    h1, poisoned = await get(http, url, {name: OVERRIDES[name]})
    h2, clean = await get(http, url)
    assert (h1["x-cache-status"], h2["x-cache-status"]) == ("Miss", "Hit")
    text = json.dumps(clean)
    assert not any(v in text for v in ATTACK_VALUES), f"poisoned entry served: {text}"
    assert clean["served"] == f"/poison/{name.lower()}"
    assert clean["overrides"] == {}, f"poisoned entry served: {text}"
    assert name.lower() not in env.origin.seen[before], "the override reached the origin"
    assert poisoned == clean


@pytest.mark.parametrize(
    "name", ["X_Original_URL", "x_rewrite_url", "X_Host", "X-HTTP_Method-Override"]
)
async def test_underscore_spellings_never_shape_a_shared_entry(
    env: Env, http: aiohttp.ClientSession, name: str
) -> None:
    """Kong's nginx passes `X_Original_URL` on (underscores_in_headers on) and CGI-style
    origins read it as X-Original-URL: it is the same override."""
    url = f"{env.base}/poison/underscore-{name.lower()}"
    before = len(env.origin.seen)
    h1, _ = await get(http, url, {name: "/admin"})
    h2, clean = await get(http, url)
    assert (h1["x-cache-status"], h2["x-cache-status"]) == ("Miss", "Hit")
    assert clean["served"] == f"/poison/underscore-{name.lower()}", clean
    assert clean["overrides"] == {}, clean
    assert name.lower() not in env.origin.seen[before], "the override reached the origin"


async def test_a_keyed_header_reaches_the_origin_and_keeps_its_own_entry(
    env: Env, http: aiohttp.ClientSession
) -> None:
    url = f"{env.base}/keyed/x-host"
    h1, evil = await get(http, url, {"X-Host": "evil.example"})
    assert h1["x-cache-status"] == "Miss"
    assert evil["overrides"] == {"X-Host": "evil.example"}  # keyed by vary_headers: kept
    h2, clean = await get(http, url)
    assert h2["x-cache-status"] == "Miss"
    assert clean["overrides"] == {}


async def test_kongs_own_forwarded_headers_are_not_the_clients(
    env: Env, http: aiohttp.ClientSession
) -> None:
    """Kong overwrites X-Forwarded-Host/-Proto/-Port/-Path/-Prefix from untrusted clients,
    so they are not on the strip list and cannot poison either."""
    url = f"{env.base}/poison/kong-forwarded"
    before = len(env.origin.seen)
    await get(http, url, {"X-Forwarded-Host": "evil.example", "X-Forwarded-Proto": "http"})
    seen = env.origin.seen[before]
    assert seen["x-forwarded-host"] != "evil.example"
    assert seen["x-forwarded-proto"] == "http"  # kongsim listens on plain http


# --- deception: Cookie ----------------------------------------------------------------


async def test_a_cookie_response_is_not_served_to_a_request_without_one(
    env: Env, http: aiohttp.ClientSession
) -> None:
    url = f"{env.base}/account/x.css"
    h1, mine = await get(http, url, {"Cookie": "session=alice"})
    assert mine["page"] == "account of alice"
    assert "stored" not in h1["cache-status"]
    h2, other = await get(http, url)
    assert other["page"] == "please log in", other
    assert h2["x-cache-status"] == "Miss"


async def test_a_shared_entry_is_not_served_to_a_request_with_a_cookie(
    env: Env, http: aiohttp.ClientSession
) -> None:
    url = f"{env.base}/account/y.css"
    h1, anon = await get(http, url)
    assert (h1["x-cache-status"], anon["page"]) == ("Miss", "please log in")
    h2, _ = await get(http, url)
    assert h2["x-cache-status"] == "Hit"  # an ordinary shared entry
    count = env.origin.count
    h3, mine = await get(http, url, {"Cookie": "session=alice"})
    assert mine["page"] == "account of alice", mine
    assert h3["x-cache-status"] == "Bypass"
    assert h3["cache-status"] == "strata; fwd=bypass; detail=cookie"
    assert env.origin.count == count + 1
    h4, anon2 = await get(http, url)  # the stored entry was left alone
    assert h4["x-cache-status"] == "Hit" and anon2 == anon


async def test_a_public_response_to_a_cookie_request_is_shared(
    env: Env, http: aiohttp.ClientSession
) -> None:
    url = f"{env.base}/account/logo.css?cc=public"
    h1, first = await get(http, url, {"Cookie": "session=alice"})
    assert h1["x-cache-status"] == "Miss" and "stored" in h1["cache-status"]
    h2, again = await get(http, url)
    assert h2["x-cache-status"] == "Hit" and again == first
    h3, again = await get(http, url, {"Cookie": "session=bob"})
    assert h3["x-cache-status"] == "Hit" and again == first


async def test_a_cookie_request_is_never_handed_another_clients_fill(
    env: Env, http: aiohttp.ClientSession
) -> None:
    url = f"{env.base}/rfc/slow?delay=0.6&cc=max-age%3D60"
    anon = asyncio.create_task(get(http, url))
    await asyncio.sleep(0.2)  # the anonymous request holds the fill lease by now
    h, mine = await get(http, url, {"Cookie": "session=alice"})
    assert mine["page"] == "account of alice", (h, mine)
    _, theirs = await anon
    assert theirs["page"] == "please log in"


async def test_a_key_holding_the_cookie_caches_per_cookie(
    env: Env, http: aiohttp.ClientSession
) -> None:
    url = f"{env.base}/keyed/cookie"
    h1, a = await get(http, url, {"Cookie": "session=alice"})
    h2, a2 = await get(http, url, {"Cookie": "session=alice"})
    assert (h1["x-cache-status"], h2["x-cache-status"]) == ("Miss", "Hit") and a2 == a
    h3, b = await get(http, url, {"Cookie": "session=bob"})
    assert h3["x-cache-status"] == "Miss" and b["page"] == "account of bob"


# --- deception: Authorization ---------------------------------------------------------


async def test_a_shared_entry_is_not_served_to_a_request_with_authorization(
    env: Env, http: aiohttp.ClientSession
) -> None:
    url = f"{env.base}/account/z.css"
    await get(http, url)
    h, mine = await get(http, url, {"Authorization": "Bearer alice"})
    assert mine["page"] == "account of alice", mine
    assert h["cache-status"] == "strata; fwd=bypass; detail=authorization"
    h, anon = await get(http, url)
    assert h["x-cache-status"] == "Hit" and anon["page"] == "please log in"


async def test_an_authorization_response_is_not_served_to_others(
    env: Env, http: aiohttp.ClientSession
) -> None:
    url = f"{env.base}/account/w.css?cc=max-age%3D0%2C%20must-revalidate"
    await get(http, url, {"Authorization": "Bearer alice"})
    _, other = await get(http, url)
    assert other["page"] == "please log in", other


async def test_a_credentialed_request_cannot_turn_coalescing_off_for_others(
    env: Env, http: aiohttp.ClientSession
) -> None:
    """Its answer is not stored because of who asked, not because the URL is uncacheable:
    the next anonymous misses of that URL must still wait for one fill."""
    url = f"{env.base}/rfc/coalesce?delay=0.4&cc=max-age%3D60"
    for credential in ({"Authorization": "Bearer alice"}, {"Cookie": "session=alice"}):
        await get(http, url, credential)
    count = env.origin.count
    results = await asyncio.gather(*(get(http, url) for _ in range(3)))
    assert env.origin.count == count + 1, [h["cache-status"] for h, _ in results]


# --- consumer scope -------------------------------------------------------------------


async def test_a_consumer_scoped_route_still_caches_for_authenticated_consumers(
    env: Env, http: aiohttp.ClientSession
) -> None:
    url = f"{env.base}/me/page"
    alice = {"apikey": "alice-key", "Cookie": "session=alice"}
    bob = {"apikey": "bob-key", "Cookie": "session=bob"}
    h1, a = await get(http, url, alice)
    h2, a2 = await get(http, url, alice)
    assert (h1["x-cache-status"], h2["x-cache-status"]) == ("Miss", "Hit") and a2 == a
    h3, b = await get(http, url, bob)
    assert h3["x-cache-status"] == "Miss" and b["page"] == "account of bob"
    assert env.sim.issues == []


# --- settings -------------------------------------------------------------------------


async def test_cookie_requests_bypass_keeps_the_cache_out_of_cookie_requests(
    env: Env, http: aiohttp.ClientSession
) -> None:
    url = f"{env.base}/bypass/page?cc=public"
    h, mine = await get(http, url, {"Cookie": "session=alice"})
    assert h["cache-status"] == "strata; fwd=bypass; detail=cookie"
    assert mine["page"] == "account of alice"
    h1, _ = await get(http, url)
    h2, _ = await get(http, url)
    assert (h1["x-cache-status"], h2["x-cache-status"]) == ("Miss", "Hit")
    h, mine = await get(http, url, {"Cookie": "session=alice"})  # even a public entry
    assert h["x-cache-status"] == "Bypass" and mine["page"] == "account of alice"


async def test_the_old_behaviour_stays_available_per_route(
    env: Env, http: aiohttp.ClientSession
) -> None:
    """cookie_requests: ignore and strip_request_headers: [] -- what the README calls
    unsafe for personalised pages, kept for routes whose origin never personalises."""
    url = f"{env.base}/ignore/page"
    _, first = await get(http, url, {"Cookie": "session=alice", "X-Host": "evil.example"})
    assert first["overrides"] == {"X-Host": "evil.example"}
    h, shared = await get(http, url)
    assert h["x-cache-status"] == "Hit" and shared == first


async def test_stripping_costs_one_pdk_call_per_header_present_and_none_otherwise(
    env: Env, http: aiohttp.ClientSession
) -> None:
    def access_steps(request: dict[str, Any]) -> int:
        return sum(e["step_round_trips"] for e in request["events"] if e["phase"] == "access")

    await get(http, f"{env.base}/poison/cost-warm-up")  # the route's read_timeout, once
    await get(http, f"{env.base}/poison/cost-clean")
    clean_miss = access_steps(await env.sim.last_request())
    await get(http, f"{env.base}/poison/cost-clean")
    clean_hit = access_steps(await env.sim.last_request())
    two = {"X-Host": "evil.example", "X-HTTP-Method-Override": "DELETE"}
    await get(http, f"{env.base}/poison/cost-two", two)
    poisoned_miss = access_steps(await env.sim.last_request())
    await get(http, f"{env.base}/poison/cost-two", two)
    poisoned_hit = access_steps(await env.sim.last_request())
    print(
        f"access steps: clean miss {clean_miss}, hit {clean_hit}; two overrides: "
        f"miss {poisoned_miss}, hit {poisoned_hit}"
    )
    assert poisoned_miss == clean_miss + 2
    assert poisoned_hit == clean_hit <= 3


async def test_eight_clients_mixing_cookies_overrides_and_anonymous_requests(
    env: Env, http: aiohttp.ClientSession
) -> None:
    """Under concurrency, where fills overlap and requests coalesce: nobody is ever served
    another client's page or an override's answer. 8 clients x 12 requests over 3 URLs
    whose origin takes 20 ms, each client alternating its own session cookie, a plain
    anonymous request and an anonymous one carrying X-Original-URL."""
    urls = [f"{env.base}/account/load-{n}.css?delay=0.02" for n in range(3)]
    seen: list[tuple[str, str, dict[str, Any], dict[str, str]]] = []

    async def client(i: int) -> None:
        for n in range(12):
            url = urls[n % 3]
            kind = ("cookie", "anonymous", "override")[n % 3 - (i % 3)]
            headers = {
                "cookie": {"Cookie": f"session=user{i}"},
                "anonymous": {},
                "override": {"X-Original-URL": "/admin"},
            }[kind]
            async with http.get(url, headers=headers) as resp:
                assert resp.status == 200
                body = await resp.json(content_type=None)
                h = {k.lower(): v for k, v in resp.headers.items()}
            seen.append((kind, f"user{i}", body, h))

    await asyncio.wait_for(asyncio.gather(*(client(i) for i in range(8))), 60)
    assert len(seen) == 96
    for kind, user, body, h in seen:
        if kind == "cookie":
            assert body["page"] == f"account of {user}", (kind, user, body, h)
        else:
            assert body["page"] == "please log in", (kind, user, body, h)
            assert body["served"].startswith("/account/load-"), (kind, body, h)
            assert body["overrides"] == {}, (kind, body, h)
    assert any(h.get("x-cache-status") == "Hit" for _, _, _, h in seen)  # the cache did work
