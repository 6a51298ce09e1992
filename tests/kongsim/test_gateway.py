"""kongsim end to end: real plugin servers, an echo upstream, one strict kongsim for the module."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio

from kongsim.testing import KongSim

from .conftest import ALL_PLUGINS, Upstream, header_dict, write_config

pytestmark = pytest.mark.asyncio(loop_scope="module")

CONFIG = """
_format_version: "3.0"
services:
- name: echo
  url: {upstream}/base
  routes:
  - {{name: plain, paths: [/plain]}}
  - {{name: nostrip, paths: [/nostrip], strip_path: false}}
  - {{name: keephost, paths: [/keephost], preserve_host: true}}
  - {{name: hosted, hosts: [api.test], methods: [GET]}}
  - name: exit
    paths: [/exit]
    plugins: [{{name: ks-exit, config: {{tag: route}}}}]
  - name: resp
    paths: [/resp]
    plugins: [{{name: ks-response}}]
  - name: rewrite
    paths: [/rewrite]
    plugins: [{{name: ks-response, config: {{rewrite_body: true}}}}]
  - name: auth
    paths: [/auth]
    plugins: [{{name: key-auth}}, {{name: ks-boom, config: {{mode: echo_pdk}}}}]
  - name: auth-exit
    paths: [/auth-exit]
    plugins: [{{name: key-auth}}, {{name: ks-exit, config: {{tag: route}}}}]
  - name: hide
    paths: [/hide]
    plugins:
    - {{name: key-auth, config: {{hide_credentials: true, key_names: [apikey, x-api-key]}}}}
  - {{name: unknown-pdk, paths: [/unknown-pdk],
      plugins: [{{name: ks-boom, config: {{mode: unknown_pdk}}}}]}}
  - {{name: bad-phase, paths: [/bad-phase],
      plugins: [{{name: ks-boom, config: {{mode: bad_phase}}}}]}}
  - name: raise
    paths: [/raise]
    plugins: [{{name: ks-boom, config: {{mode: raise_after_call}}}}]
  - {{name: nil-arg, paths: [/nil-arg], plugins: [{{name: ks-boom, config: {{mode: nil_arg}}}}]}}
  - {{name: log-timer, paths: [/log-timer],
      plugins: [{{name: ks-boom, config: {{mode: log_timer}}}}]}}
- name: dead
  url: http://127.0.0.1:1
  routes:
  - {{name: dead, paths: [/dead]}}
  - {{name: dead-buffered, paths: [/dead-buffered], plugins: [{{name: ks-response}}]}}
- name: slow
  url: {upstream}
  read_timeout: 300
  routes: [{{name: slow, paths: [/slow], strip_path: false}}]
consumers:
- username: alice
  custom_id: a-1
  keyauth_credentials: [{{key: secret-a}}]
  plugins: [{{name: ks-exit, config: {{tag: alice}}}}]
"""


class Env:
    def __init__(self, sim: KongSim, up: Upstream, http: aiohttp.ClientSession) -> None:
        self.sim, self.up, self.http = sim, up, http

    async def get(
        self, path: str, method: str = "GET", **kw: Any
    ) -> tuple[int, dict[str, str], bytes]:
        async with self.http.request(method, self.sim.base_url + path, **kw) as resp:
            return resp.status, dict(resp.headers), await resp.read()

    def echoed(self, body: bytes) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(body)
        data["h"] = header_dict(data["headers"])
        return data


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def env(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Env]:
    up = await Upstream().start()
    path = write_config(Path(tmp_path_factory.mktemp("gw")), CONFIG.format(upstream=up.url))
    async with (
        KongSim(path, strict=True, plugin_servers=ALL_PLUGINS, rpc_timeout=1.0) as sim,
        aiohttp.ClientSession() as http,
    ):
        yield Env(sim, up, http)
    await up.stop()


async def test_proxying_strips_the_path_and_adds_kongs_headers(env: Env) -> None:
    status, headers, body = await env.get(
        "/plain/x/y?q=1&q=2", headers={"X-Forwarded-For": "9.9.9.9"}
    )
    assert status == 200
    seen = env.echoed(body)
    assert seen["path"] == "/base/x/y?q=1&q=2"
    h = seen["h"]
    assert h["host"] == f"127.0.0.1:{env.up.port}"
    assert h["x-forwarded-for"] == "9.9.9.9, 127.0.0.1"
    assert h["x-forwarded-proto"] == "http"
    assert h["x-forwarded-host"] == "127.0.0.1"
    assert h["x-forwarded-port"] == str(env.sim.gateway.port)
    assert h["x-forwarded-path"] == "/plain/x/y"
    assert h["x-forwarded-prefix"] == "/plain"
    assert h["x-real-ip"] == "127.0.0.1"
    assert h["via"] == "1.1 kong/3.9.3"
    assert h["x-kong-request-id"] == headers["X-Kong-Request-Id"]
    assert headers["Via"] == "1.1 upstream, 1.1 kong/3.9.3"
    assert headers["X-Upstream-Secret"] == "s"
    assert int(headers["X-Kong-Upstream-Latency"]) >= 0
    assert int(headers["X-Kong-Proxy-Latency"]) >= 0
    assert "X-Kong-Response-Latency" not in headers


async def test_strip_path_false_and_preserve_host(env: Env) -> None:
    _, _, body = await env.get("/nostrip/a")
    assert env.echoed(body)["path"] == "/base/nostrip/a"
    _, _, body = await env.get("/keephost/a", headers={"Host": "client.test:8443"})
    assert env.echoed(body)["h"]["host"] == "client.test:8443"


async def test_hosts_and_methods(env: Env) -> None:
    status, _, body = await env.get("/anything", headers={"Host": "API.test"})
    assert status == 200 and env.echoed(body)["path"] == "/base/anything"
    status, headers, body = await env.get("/anything", "POST", headers={"Host": "api.test"})
    assert status == 404
    assert json.loads(body)["message"] == "no Route matched with those values"
    assert headers["Server"] == "kong/3.9.3"
    assert headers["Content-Type"] == "application/json; charset=utf-8"


async def test_key_auth(env: Env) -> None:
    status, headers, body = await env.get("/auth/x")
    assert (status, json.loads(body)["message"]) == (401, "No API key found in request")
    assert headers["WWW-Authenticate"] == "Key"
    status, _, body = await env.get("/auth/x", headers={"apikey": "wrong"})
    assert (status, json.loads(body)["message"]) == (401, "Unauthorized")
    status, _, body = await env.get("/auth/x", headers=[("apikey", "a"), ("apikey", "b")])
    assert (status, json.loads(body)["message"]) == (401, "Duplicate API key found")

    status, headers, body = await env.get("/auth/x?apikey=secret-a")
    assert status == 200
    h = env.echoed(body)["h"]
    consumer = env.sim.gateway.runtime.decl.consumers[0]
    credential = env.sim.gateway.runtime.decl.credentials[0]
    assert h["x-consumer-id"] == consumer.id
    assert h["x-consumer-username"] == "alice"
    assert h["x-consumer-custom-id"] == "a-1"
    assert h["x-credential-identifier"] == credential.id
    assert "x-anonymous-consumer" not in h
    assert headers["X-Boom-Consumer"] == "alice"  # kong.client.get_consumer() in the plugin


async def test_hide_credentials(env: Env) -> None:
    status, _, body = await env.get("/hide/p?apikey=secret-a&keep=1")
    assert status == 200 and env.echoed(body)["path"] == "/base/p?keep=1"
    status, _, body = await env.get("/hide/p", headers={"X-Api-Key": "secret-a"})
    assert status == 200 and "x-api-key" not in env.echoed(body)["h"]


async def test_consumer_scoped_config_is_chosen_after_key_auth(env: Env) -> None:
    _, headers, _ = await env.get("/exit", headers={"x-exit": "1"})
    assert headers["X-Tag"] == "route"
    _, headers, _ = await env.get("/auth-exit", headers={"x-exit": "1", "apikey": "secret-a"})
    assert headers["X-Tag"] == "alice"


async def test_access_exit_and_its_pdk_round_trips(env: Env) -> None:
    await env.get("/exit", headers={"x-exit": "warm-up"})  # instance started
    before = len(env.up.requests)
    status, headers, body = await env.get("/exit/x", headers={"x-exit": "hello"})
    assert (status, body) == (200, b"exited:hello")
    assert headers["X-Exit"] == "1" and headers["X-Tag"] == "route"
    assert headers["Server"] == "kong/3.9.3"
    assert int(headers["X-Kong-Response-Latency"]) >= 0
    assert "Content-Type" not in headers  # a string body gets no Content-Type, like nginx
    assert len(env.up.requests) == before
    record = await env.sim.last_request()
    access = next(e for e in record["events"] if e["phase"] == "access")
    assert access["pdk_calls"] == ["kong.request.get_header", "kong.response.exit"]
    assert access["rpc_methods"] == ["plugin.HandleEvent", "plugin.Step"]
    assert (access["rpcs"], access["step_round_trips"], access["outcome"]) == (2, 1, "exit")
    log = next(e for e in record["events"] if e["phase"] == "log")
    assert log["pdk_calls"][:2] == ["kong.ctx.shared.get", "kong.response.get_status"]
    assert record["complete"] and record["issues"] == []


async def test_access_miss_proxies_with_plugin_headers(env: Env) -> None:
    status, headers, _ = await env.get("/exit/x")
    assert status == 200 and headers["X-Ks-Exit"] == "miss"


async def test_response_phase_buffers_and_modifies(env: Env) -> None:
    status, headers, body = await env.get("/resp/x")
    assert status == 200
    assert headers["X-Resp-Status"] == "200" and headers["X-Resp-Upstream-Status"] == "200"
    assert headers["X-Resp-Body-Len"] == str(len(body))
    assert headers["X-Resp-Upstream-Type"] == "application/json; charset=utf-8"
    # Kong 3.9: kong.service.response.get_headers() is {} for an external plugin here; the
    # upstream's headers are read from kong.response (Kong.response copied them)
    assert headers["X-Resp-Service-Header-Count"] == "0"
    assert headers["X-Resp-Downstream-Type"] == "application/json; charset=utf-8"
    assert headers["X-Resp-Path"] == "/resp/x"
    assert "X-Upstream-Secret" not in headers
    assert headers["Content-Length"] == str(len(body))
    assert env.echoed(body)["path"] == "/base/x"  # the original body is sent

    status, headers, body = await env.get("/rewrite/x")
    assert status == 200 and headers["X-Rewritten"] == "1"
    assert json.loads(body)["PATH"] == "/BASE/X"
    assert headers["Via"].endswith("1.1 kong/3.9.3")  # still a proxied response
    record = await env.sim.last_request()
    phases = [(e["phase"], e["outcome"]) for e in record["events"]]
    assert phases == [("access", "ret"), ("response", "exit"), ("log", "ret")]
    response = record["events"][1]
    assert "kong.service.response.get_raw_body" in response["pdk_calls"]


async def test_streaming_large_bodies(env: Env) -> None:
    status, _, body = await env.get("/plain/big?size=300000")
    assert status == 200 and len(body) == 300000


async def test_concurrent_requests_through_the_plugins(env: Env) -> None:
    async def one(i: int) -> None:
        status, headers, body = await env.get("/exit/c", headers={"x-exit": f"v{i}"})
        assert (status, body, headers["X-Exit"]) == (200, f"exited:v{i}".encode(), "1")
        status, headers, body = await env.get(f"/resp/c{i}")
        assert status == 200 and env.echoed(body)["path"] == f"/base/c{i}"
        assert headers["X-Resp-Path"] == f"/resp/c{i}"

    await asyncio.gather(*(one(i) for i in range(50)))
    rpc = env.sim.gateway.workers[0].rpc["ks-exit"]
    assert rpc.connects > 1  # concurrent events went over separate pooled connections
    assert [i for i in env.sim.issues if i["kind"] != "plugin_server"] == []


async def test_strict_mode_reports_an_unknown_pdk_method(env: Env) -> None:
    env.sim.clear()
    status, headers, body = await env.get("/unknown-pdk")
    assert status == 500
    assert (
        "could not find pdk method: kong.request.get_nonexistent_thing"
        in headers["X-Kongsim-Error"]
    )
    assert "kongsim strict mode" in json.loads(body)["message"]
    assert [i["kind"] for i in env.sim.issues] == ["unknown_pdk_method"]


async def test_strict_mode_reports_a_pdk_call_in_the_wrong_phase(env: Env) -> None:
    env.sim.clear()
    status, headers, _ = await env.get("/bad-phase")
    assert status == 500
    assert "function cannot be called in access phase" in headers["X-Kongsim-Error"]
    assert env.sim.issues[0]["kind"] == "lua_error"


async def test_strict_mode_reports_a_plugin_exception_as_a_timeout(env: Env) -> None:
    env.sim.clear()
    status, headers, _ = await env.get("/raise")
    assert status == 500
    assert headers["X-Kongsim-Error"].startswith("rpc_timeout (ks-boom/access)")


async def test_nil_argument_is_a_warning(env: Env) -> None:
    env.sim.clear()
    status, headers, _ = await env.get("/nil-arg")
    assert status == 200 and "X-Dropped" not in headers  # Lua's unpack dropped the headers
    assert any("truncates the argument list" in w for w in env.sim.warnings)


async def test_log_phase_timer_restrictions_are_recorded(env: Env) -> None:
    env.sim.clear()
    status, _, _ = await env.get("/log-timer")
    assert status == 200
    await env.sim.wait_idle()
    assert [(i["kind"], i["phase"]) for i in env.sim.issues] == [("lua_error", "log")]
    assert "API disabled in the current context" in env.sim.issues[0]["message"]


async def test_upstream_errors(env: Env) -> None:
    status, headers, body = await env.get("/dead")
    assert status == 502
    assert (
        json.loads(body)["message"] == "An invalid response was received from the upstream server"
    )
    assert headers["Via"] == "1.1 kong/3.9.3"


async def test_unreachable_upstream_skips_the_response_phase(env: Env) -> None:
    # Kong.response: the truncated subrequest goes to kong_error_handlers, no response phase
    status, headers, body = await env.get("/dead-buffered")
    assert status == 502
    assert "X-Resp-Status" not in headers
    assert json.loads(body)["message"] == (
        "An invalid response was received from the upstream server"
    )
    status, _, body = await env.get("/slow?delay=0.8")
    assert status == 504
    assert json.loads(body)["message"] == "The upstream server is timing out"


async def test_admin_endpoints(env: Env) -> None:
    await env.get("/exit", headers={"x-exit": "adm"})
    status, _, body = await env.get("/_kongsim/requests/last")
    record = json.loads(body)
    assert status == 200 and record["route"] == "exit" and record["rpc_count"] >= 2
    status, _, body = await env.get("/_kongsim/status")
    servers = json.loads(body)["plugin_servers"]
    assert status == 200 and set(servers) == {"ks-exit", "ks-response", "ks-boom"}
    assert all(s["ready"] for s in servers.values())
    status, _, body = await env.get("/_kongsim/requests?limit=2")
    assert status == 200 and len(json.loads(body)["data"]) == 2
