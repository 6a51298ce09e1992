"""The plugin under the answers Kong 3.9 really gives an external plugin (kongsim, strict).

A scripted origin sets exactly the headers each case needs. Cases (issue: "on Kong the plugin
stores nothing"):

* the upstream's headers come from ``kong.response`` (``kong.service.response.get_headers()``
  is ``{}`` on Kong) and the body is pulled only for a response that may be stored;
* a stale-if-error answer does not inherit the failed response's headers;
* an exit without a body does not claim ``Content-Length: 0``;
* keys use the matched route, also for a plugin attached to a service;
* anonymous consumers share one scope that is not "authenticated"; credentials hidden by an
  auth plugin still count as credentials;
* a rejected configuration and an unreachable sidecar reach Kong's error log (``kong.log``);
* ids of a restarted plugin server never select another route's instance.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
import yaml
from aiohttp import web

from kong_plugin.cache_key import route_prefix
from kongsim.errors import RpcError
from kongsim.protocol.rpc import RpcClient
from kongsim.protocol.spec import PluginServerSpec, default_spec
from kongsim.testing import KongSim
from tests.support.sidecar import clean_env, unix_sidecar
from tools.stack import REPO, SidecarProcess, free_port

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="module")]

ALICE_KEY = "alice-fidelity-key"
WHO_PATH = "/anon/who"
BOB_KEY = "bob-fidelity-key"


@dataclass
class Reply:
    status: int = 200
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b"ok"


@dataclass
class Origin:
    """Answers each path with its scripted replies in turn (the last one repeats)."""

    scripts: dict[str, list[Reply]] = field(default_factory=dict)
    hits: dict[str, int] = field(default_factory=dict)

    def script(self, path: str, *replies: Reply) -> None:
        self.scripts[path] = list(replies)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        path = request.path
        self.hits[path] = self.hits.get(path, 0) + 1
        if path.startswith(WHO_PATH):  # whose page: the consumer key-auth named upstream
            who = request.headers.get("X-Consumer-Username", "nobody")
            return web.Response(
                body=f"{path}:{who}".encode(),
                headers={"Content-Type": "text/plain", "Cache-Control": "max-age=60"},
            )
        replies = self.scripts.get(path) or [Reply(404, [("Content-Type", "text/plain")], b"")]
        reply = replies.pop(0) if len(replies) > 1 else replies[0]
        resp = web.Response(status=reply.status, body=reply.body)
        resp.headers.popall("Content-Type", None)
        for name, value in reply.headers:
            resp.headers.add(name, value)
        return resp


def kong_yml(origin: str, sidecar: str) -> dict[str, Any]:
    side = {"address": sidecar, "timeout_ms": 500}

    def strata(**config: Any) -> dict[str, Any]:
        return {"name": "strata-cache", "config": {"sidecar": side, **config}}

    return {
        "_format_version": "3.0",
        "services": [
            {
                # one plugin on the service, two routes: each route keys on its own
                "name": "shared-plugin",
                "url": origin,
                "plugins": [strata(cache_ttl=60)],
                "routes": [
                    {"name": "route-a", "paths": ["/a"], "strip_path": True},
                    {"name": "route-b", "paths": ["/b"], "strip_path": True},
                ],
            },
            {
                "name": "origin",
                "url": origin,
                "routes": [
                    {
                        "name": "sie",
                        "paths": ["/sie"],
                        "strip_path": False,
                        "plugins": [strata(cache_control=True, stale_if_error=300)],
                    },
                    {
                        "name": "plain",
                        "paths": ["/plain"],
                        "strip_path": False,
                        "plugins": [
                            strata(
                                cache_control=True,
                                max_body_bytes=1000,
                                response_code=[200, 204],
                            )
                        ],
                    },
                    {
                        "name": "anon",
                        "paths": ["/anon"],
                        "strip_path": False,
                        "plugins": [
                            {
                                "name": "key-auth",
                                "config": {"anonymous": "anonymous", "hide_credentials": True},
                            },
                            strata(cache_control=True),
                        ],
                    },
                    {
                        "name": "hidden",
                        "paths": ["/hidden"],
                        "strip_path": False,
                        "plugins": [
                            {"name": "key-auth", "config": {"hide_credentials": True}},
                            strata(cache_control=True, consumer_scope="never"),
                        ],
                    },
                    {
                        "name": "decorated",
                        "paths": ["/decorated"],
                        "strip_path": False,
                        "plugins": [{"name": "ks-who"}, strata(cache_control=True)],
                    },
                    {
                        # valid for Kong's schema, refused by the plugin's cross-field rules
                        "name": "badcfg",
                        "paths": ["/badcfg"],
                        "strip_path": False,
                        "plugins": [strata(cache_ttl=60, storage_ttl=10)],
                    },
                ],
            },
        ],
        "consumers": [
            {"username": "alice", "keyauth_credentials": [{"key": ALICE_KEY}]},
            {"username": "bob", "keyauth_credentials": [{"key": BOB_KEY}]},
            {"username": "anonymous"},
        ],
    }


@dataclass
class Env:
    sim: KongSim
    origin: Origin
    sidecar: SidecarProcess
    http: aiohttp.ClientSession

    async def get(
        self, path: str, method: str = "GET", **kw: Any
    ) -> tuple[int, dict[str, str], bytes, list[str]]:
        async with self.http.request(method, self.sim.base_url + path, **kw) as resp:
            body = await resp.read()
            names = [k.decode().lower() for k, _ in resp.raw_headers]
            headers = {k.lower(): v for k, v in resp.headers.items()}
        if headers.get("x-cache-status") in ("Miss", "Refresh"):
            await asyncio.sleep(0.05)  # the store runs after the response
        return resp.status, headers, body, names

    async def wait_for_cache(self, timeout: float = 20.0) -> None:
        """Until the plugin reaches the (restarted) sidecar again (bounded)."""
        self.origin.script("/plain/probe", Reply(200, [TEXT], b"p"))
        deadline = time.monotonic() + timeout
        while True:
            _, headers, _, _ = await self.get("/plain/probe")
            if "x-cache-key" in headers:
                return
            assert time.monotonic() < deadline, "the plugin did not reach the sidecar again"
            await asyncio.sleep(0.1)

    async def events(self) -> dict[str, list[str]]:
        record = await self.sim.last_request()
        return {e["phase"]: e["pdk_calls"] for e in record["events"]}


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def env() -> AsyncIterator[Env]:
    with tempfile.TemporaryDirectory(prefix="strata-fid-", dir="/tmp") as d:
        tmp = Path(d)
        origin = Origin()
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", origin.handle)
        runner = web.AppRunner(app, access_log=None, max_headers=5000)
        await runner.setup()
        port = free_port()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        sidecar = unix_sidecar(tmp / "sidecar.sock", clean_env())
        await asyncio.to_thread(sidecar.start)
        path = tmp / "kong.yml"
        path.write_text(yaml.safe_dump(kong_yml(f"http://127.0.0.1:{port}", sidecar.address)))
        who = Path(__file__).parent / "plugins" / "ks_who.py"
        servers: list[PluginServerSpec | str] = [
            default_spec(),
            f"ks-who={{python}} {who} -p {{prefix}} --socket-name ks-who.socket;"
            f"{{python}} {who} --dump",
        ]
        sim = KongSim(path, strict=True, prefix=str(tmp / "kong"), plugin_servers=servers)
        await sim.__aenter__()
        try:
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http:
                yield Env(sim, origin, sidecar, http)
        finally:
            await sim.__aexit__(None, None, None)
            await asyncio.to_thread(sidecar.stop)
            await runner.cleanup()


TEXT = ("Content-Type", "text/plain")


async def test_upstream_headers_are_read_where_kong_has_them(env: Env) -> None:
    env.origin.script("/plain/stored", Reply(200, [TEXT, ("Cache-Control", "max-age=60")], b"v"))
    _, h1, _, _ = await env.get("/plain/stored")
    assert h1["x-cache-status"] == "Miss" and h1["cache-status"].endswith("stored")
    calls = await env.events()
    assert "kong.service.response.get_headers" not in calls["response"]  # {} on Kong
    assert "kong.nginx.get_ctx" in calls["response"]  # ngx.ctx.buffered_headers
    assert "kong.service.response.get_raw_body" in calls["response"]
    _, h2, body, _ = await env.get("/plain/stored")
    assert (h2["x-cache-status"], body) == ("Hit", b"v")
    assert env.sim.issues == []


@pytest.mark.parametrize(
    ("path", "reply", "reason"),
    [
        ("/plain/private", Reply(200, [TEXT, ("Cache-Control", "private")], b"p"), "private"),
        ("/plain/html", Reply(200, [("Content-Type", "text/html")], b"<p>"), "content-type"),
        ("/plain/teapot", Reply(418, [TEXT], b"t"), "status"),
        ("/plain/big", Reply(200, [TEXT, ("Cache-Control", "max-age=60")], b"x" * 5000), "large"),
    ],
)
async def test_a_response_that_cannot_be_stored_is_never_pulled_across(
    env: Env, path: str, reply: Reply, reason: str
) -> None:
    env.origin.script(path, reply)
    status, headers, body, _ = await env.get(path)
    assert (status, body) == (reply.status, reply.body)
    assert headers["x-cache-status"] == "Bypass"
    calls = await env.events()
    assert "kong.service.response.get_raw_body" not in calls["response"], calls
    assert reason in headers["cache-status"]


async def test_stale_if_error_does_not_inherit_the_failed_response(env: Env) -> None:
    good = Reply(
        200, [TEXT, ("Cache-Control", "max-age=1"), ("ETag", '"v1"'), ("X-Good", "1")], b"good"
    )
    bad = Reply(
        503,
        [
            ("Content-Type", "text/html"),
            ("Content-Encoding", "gzip"),
            ("Set-Cookie", "session=evil"),
            ("Cache-Control", "no-store"),
            ("ETag", '"broken"'),
            ("X-Error", "boom"),
        ],
        b"\x1f\x8b not really gzip",
    )
    env.origin.script("/sie/page", good, bad)
    _, h, _, _ = await env.get("/sie/page")
    assert h["x-cache-status"] == "Miss"
    await asyncio.sleep(1.3)  # stale now; it has a validator and a stale-if-error window
    status, headers, body, names = await env.get("/sie/page")
    assert (status, body, headers["x-cache-status"]) == (200, b"good", "Stale")
    assert headers["content-type"] == "text/plain" and headers["etag"] == '"v1"'
    assert headers["x-good"] == "1" and headers["cache-control"] == "max-age=1"
    for inherited in ("content-encoding", "set-cookie", "x-error"):
        assert inherited not in names, (inherited, headers)
    assert headers["content-length"] == "4"
    assert env.sim.issues == []


async def test_exits_without_a_body_do_not_claim_an_empty_representation(env: Env) -> None:
    env.origin.script(
        "/plain/etag",
        Reply(200, [TEXT, ("Cache-Control", "max-age=60"), ("ETag", '"e1"')], b"hello"),
    )
    await env.get("/plain/etag")
    status, headers, body, names = await env.get("/plain/etag", headers={"If-None-Match": '"e1"'})
    assert (status, body) == (304, b"")
    assert headers["etag"] == '"e1"' and headers["x-cache-status"] == "Hit"
    assert "content-length" not in names, headers  # Kong would have sent Content-Length: 0
    status, headers, body, _ = await env.get("/plain/etag", method="HEAD")
    assert (status, body, headers["x-cache-status"]) == (200, b"", "Hit")
    assert headers["content-length"] == "5"  # the stored representation's length
    calls = await env.events()
    assert "kong.response.exit" in calls["access"]
    assert env.sim.issues == []


async def test_a_stored_no_content_response_has_no_length(env: Env) -> None:
    env.origin.script("/plain/none", Reply(204, [TEXT, ("Cache-Control", "max-age=60")], b""))
    await env.get("/plain/none")
    status, headers, _, names = await env.get("/plain/none")
    assert (status, headers["x-cache-status"]) == (204, "Hit")
    assert "content-length" not in names
    assert env.sim.issues == []


async def test_a_plugin_on_a_service_keys_each_route_apart(env: Env) -> None:
    env.origin.script("/same", Reply(200, [TEXT], b"same upstream path"))
    _, ha, _, _ = await env.get("/a/same")
    _, hb, _, _ = await env.get("/b/same")
    assert ha["x-cache-status"] == "Miss"
    assert hb["x-cache-status"] == "Miss", "route b must not be served route a's entry"
    routes = {r.name: r.id for r in env.sim.gateway.runtime.decl.routes}
    assert ha["x-cache-key"].startswith(route_prefix(routes["route-a"]))
    assert hb["x-cache-key"].startswith(route_prefix(routes["route-b"]))
    _, hb2, _, _ = await env.get("/b/same")
    assert hb2["x-cache-status"] == "Hit" and hb2["x-cache-key"] == hb["x-cache-key"]
    calls = await env.events()
    assert "kong.router.get_route" in calls["access"]


async def test_anonymous_consumers_share_one_scope(env: Env) -> None:
    env.origin.script("/anon/doc", Reply(200, [TEXT, ("Cache-Control", "max-age=60")], b"pub"))
    _, h1, _, _ = await env.get("/anon/doc")
    _, h2, _, _ = await env.get("/anon/doc")
    assert (h1["x-cache-status"], h2["x-cache-status"]) == ("Miss", "Hit")
    _, ha, _, _ = await env.get("/anon/doc", headers={"apikey": ALICE_KEY})
    assert ha["x-cache-status"] == "Miss" and ha["x-cache-key"] != h1["x-cache-key"]
    # a client cannot make itself anonymous: key-auth clears the header on success
    _, hs, _, _ = await env.get(
        "/anon/doc", headers={"apikey": ALICE_KEY, "X-Anonymous-Consumer": "true"}
    )
    assert hs["x-cache-key"] == ha["x-cache-key"]


async def test_a_failed_login_falling_back_to_anonymous_is_not_shared(env: Env) -> None:
    env.origin.script(
        "/anon/private-ish", Reply(200, [TEXT, ("Cache-Control", "max-age=60")], b"x")
    )
    _, h, _, _ = await env.get("/anon/private-ish", headers={"Authorization": "Bearer wrong"})
    # anonymous is not an authenticated consumer: RFC 9111 §3.5 applies, nothing shared
    assert h["x-cache-status"] == "Bypass" and "authorization" in h["cache-status"]


async def test_hidden_credentials_are_still_credentials(env: Env) -> None:
    env.origin.script(
        "/hidden/account",
        Reply(200, [TEXT, ("Cache-Control", "max-age=60")], b"alice's account"),
        Reply(200, [TEXT, ("Cache-Control", "max-age=60")], b"bob's account"),
    )
    _, ha, body_a, _ = await env.get("/hidden/account", headers={"apikey": ALICE_KEY})
    assert body_a == b"alice's account"
    assert ha["x-cache-status"] == "Bypass" and "authorization" in ha["cache-status"]
    _, hb, body_b, _ = await env.get("/hidden/account", headers={"apikey": BOB_KEY})
    assert body_b == b"bob's account" and hb["x-cache-status"] != "Hit"


async def test_a_rejected_configuration_reaches_kongs_error_log(env: Env) -> None:
    env.origin.script("/badcfg", Reply(200, [TEXT], b"fine"))
    status, headers, _, _ = await env.get("/badcfg")
    assert (status, headers["x-cache-status"]) == (200, "Bypass")
    calls = await env.events()
    assert "kong.log.err" in calls["access"]


async def test_an_unreachable_sidecar_reaches_kongs_error_log(env: Env) -> None:
    env.origin.script("/plain/down", Reply(200, [TEXT, ("Cache-Control", "max-age=60")], b"d"))
    await asyncio.to_thread(env.sidecar.kill)
    try:
        status, headers, body, _ = await env.get("/plain/down")
        assert (status, body, headers["x-cache-status"]) == (200, b"d", "Bypass")
        calls = await env.events()
        assert "kong.log.warn" in calls["access"]
    finally:
        await asyncio.to_thread(env.sidecar.start)
        await env.wait_for_cache()


async def test_each_route_keeps_its_configuration_across_a_plugin_server_restart(
    env: Env,
) -> None:
    env.origin.script("/r", Reply(200, [TEXT], b"r"))
    before = {p: (await env.get(p))[1]["x-cache-key"] for p in ("/a/r", "/b/r")}
    server = env.sim.plugin_server("strata-cache")
    old_pid = server.pid
    server.kill(signal.SIGKILL)
    deadline = time.monotonic() + 20
    while server.pid == old_pid or not server.ready:
        assert time.monotonic() < deadline, "plugin server was not respawned"
        await asyncio.sleep(0.05)
    for p in ("/b/r", "/a/r", "/b/r"):  # the stale ids Kong kept are tried first
        _, h, _, _ = await env.get(p)
        assert h["x-cache-key"] == before[p], p
        assert h["x-cache-status"] == "Hit"
    env.sim.clear()


async def test_other_plugins_response_headers_are_neither_stored_nor_replayed(env: Env) -> None:
    """A plugin that sets per-request response headers before the upstream answers: the
    stored entry holds the upstream's headers only, so a hit shows this request's values."""
    env.origin.script("/decorated", Reply(200, [TEXT, ("Cache-Control", "public, max-age=60")]))
    _, h1, _, _ = await env.get("/decorated", headers={"X-Who-Am-I": "alice"})
    _, h2, _, _ = await env.get("/decorated", headers={"X-Who-Am-I": "bob"})
    assert (h1["x-cache-status"], h2["x-cache-status"]) == ("Miss", "Hit")
    assert h2["x-who"] == "bob" and h2["x-nonce"] != h1["x-nonce"]
    calls = await env.events()
    assert "kong.response.exit" in calls["access"]


async def test_a_request_with_more_header_lines_than_kong_hands_over_bypasses(env: Env) -> None:
    """Kong gives a plugin at most 1000 request header lines and drops the rest silently: the
    credentials an auth plugin added could be beyond them, so nothing is looked up or stored."""
    env.origin.script(
        "/hidden/padded", Reply(200, [TEXT, ("Cache-Control", "public, max-age=60")], b"bob")
    )
    padding = [(f"X-Pad-{i:04d}", "p") for i in range(1000)]
    _, h, body, _ = await env.get("/hidden/padded", headers=[*padding, ("apikey", BOB_KEY)])
    assert body == b"bob" and h["x-cache-status"] == "Bypass"
    _, h2, _, _ = await env.get("/hidden/padded", headers={"apikey": ALICE_KEY})
    assert h2["x-cache-status"] != "Hit"


async def test_header_blocks_nginx_would_refuse_are_refused(env: Env) -> None:
    """Kong keeps nginx's buffers: a request header line over 8k is a 400 ("Request header or
    cookie too large", Kong's 494 handling) before any plugin runs; an upstream header block
    over one page (proxy_buffer_size) is a 502."""
    status, _, body, _ = await env.get("/plain/x", headers={"Cookie": "c" * 9000})
    assert status == 400 and b"Request header or cookie too large" in body
    env.origin.script("/plain/bigheader", Reply(200, [TEXT, ("X-Big", "b" * 5000)], b"x"))
    status, _, body, _ = await env.get("/plain/bigheader")
    assert status == 502 and b"invalid response was received from the upstream" in body


async def test_eight_clients_and_a_killed_plugin_server_never_cross_routes_or_consumers(
    env: Env,
) -> None:
    """Steady load from 8 clients on two routes sharing a service plugin and on per-consumer
    pages, over 2 simulated workers, Kong-like (not strict: failures fail open), while the
    plugin server is killed once: no client error, every cache key carries its own route,
    every page its own consumer, and hits come back after the respawn."""
    env.origin.script("/load", Reply(200, [TEXT, ("Cache-Control", "max-age=60")], b"l"))
    routes = {r.name: r.id for r in env.sim.gateway.runtime.decl.routes}
    keys = {"alice": ALICE_KEY, "bob": BOB_KEY, "anonymous": None}
    problems: list[str] = []
    hits_after: list[int] = []
    stop = asyncio.Event()
    async with KongSim(
        env.sim.options.config_path,
        strict=False,
        workers=2,
        plugin_servers=env.sim.options.plugin_servers,
        prefix=str(Path(env.sim.options.config_path).parent / "load"),
    ) as sim:

        async def client(n: int) -> None:
            i = 0
            while not stop.is_set():
                i += 1
                if i % 2:
                    route = "route-a" if n % 2 else "route-b"
                    path = f"/{route[-1]}/load?u={i % 7}"
                    headers: dict[str, str] = {}
                else:
                    who = list(keys)[(n + i) % 3]
                    path = f"{WHO_PATH}/{i % 5}"
                    key_of = keys[who]
                    headers = {"apikey": key_of} if key_of else {}
                async with env.http.get(sim.base_url + path, headers=headers) as resp:
                    body = await resp.read()
                    word = resp.headers.get("X-Cache-Status")
                    key = resp.headers.get("X-Cache-Key", "")
                if resp.status != 200:
                    problems.append(f"{path}: {resp.status} {body[:80]!r}")
                elif i % 2 and key and not key.startswith(route_prefix(routes[route])):
                    problems.append(f"{path}: key {key} is not route {route}'s")
                elif not i % 2 and body != f"{path}:{who}".encode():
                    problems.append(f"{path} as {who}: got {body!r}")
                if killed.is_set() and word == "Hit":
                    hits_after.append(1)

        killed = asyncio.Event()
        tasks = [asyncio.create_task(client(n)) for n in range(8)]
        await asyncio.sleep(1.5)
        server = sim.plugin_server("strata-cache")
        old_pid = server.pid
        server.kill(signal.SIGKILL)
        killed.set()
        deadline = time.monotonic() + 20
        while server.pid == old_pid or not server.ready:
            assert time.monotonic() < deadline, "plugin server was not respawned"
            await asyncio.sleep(0.05)
        await asyncio.sleep(1.5)
        stop.set()
        await asyncio.gather(*tasks)
    assert problems == [], problems[:10]
    assert len(hits_after) > 10, "the cache did not come back after the respawn"


def _start_plugin_server(prefix: Path) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "kong_plugin", "-p", str(prefix), "--socket-name", "s.socket"],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 20
    while not (prefix / "s.socket").exists():
        assert proc.poll() is None and time.monotonic() < deadline, "plugin server did not start"
        time.sleep(0.05)
    return proc


async def test_a_restarted_plugin_server_never_reuses_an_instance_id(tmp_path: Path) -> None:
    """kong-pdk numbers instances from 0 in every process while Kong keeps the ids it had:
    the id Kong holds for route A must not name route B's instance in the new process."""
    config_a = json.dumps({"route_id": "route-a", "cache_ttl": 10})
    config_b = json.dumps({"route_id": "route-b", "cache_ttl": 20})
    socket = str(tmp_path / "s.socket")
    proc = _start_plugin_server(tmp_path)
    try:
        client = RpcClient(socket, timeout=5)
        a = await client.call("plugin.StartInstance", {"Name": "strata-cache", "Config": config_a})
        await client.close()
    finally:
        proc.kill()
        proc.wait(10)
    os.unlink(socket)
    proc = _start_plugin_server(tmp_path)
    try:
        client = RpcClient(socket, timeout=5)
        b = await client.call("plugin.StartInstance", {"Name": "strata-cache", "Config": config_b})
        assert b["Id"] != a["Id"]
        with pytest.raises(RpcError, match="no plugin instance"):
            await client.call("plugin.HandleEvent", {"InstanceId": a["Id"], "EventName": "access"})
        await client.close()
    finally:
        proc.kill()
        proc.wait(10)
