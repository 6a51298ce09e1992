"""Fidelity with Kong 3.9.3 for the rows of kongsim/README.md's table that used to differ:
service request/response functions, response headers in the log timer, and the bridge's
protocol corners (``rpc/mp_rpc.lua``, ``rpc/util.lua``, ``plugin_servers/plugin.lua``)."""

from __future__ import annotations

from typing import Any

import pytest
from multidict import CIMultiDict

from kongsim.config.plugins import PluginInfo
from kongsim.errors import LuaError
from kongsim.http.gateway import Gateway, Options
from kongsim.http.nginx import (
    client_headers_too_large,
    nginx_header_filter,
    upstream_headers_too_large,
)
from kongsim.pdk import Pdk, PdkAnswer, PdkEnv
from kongsim.protocol.process import PluginServerProcess
from kongsim.protocol.spec import PluginServerSpec
from kongsim.request.upstream import buffered_response_headers, upstream_visible

from .test_fidelity_protocol import DECL, FakeServer, event, run, state


def call(st: Any, method: str, *args: Any) -> Any:
    answer = Pdk(st, None, PdkEnv(DECL, "node"), lambda _m: None).call(method, list(args))
    return answer.value if isinstance(answer, PdkAnswer) else answer


def test_service_request_headers_take_arrays_and_kongs_messages() -> None:
    """service/request.lua set_header/add_header use checks.lua validate_header (an array of
    strings is a value); clear_header says `header must be a string`."""
    st = state()
    call(st, "kong.service.request.set_header", "X-List", ["a", "b"])
    call(st, "kong.service.request.add_header", "X-List", ["c"])
    assert st.headers.getall("X-List") == ["a", "b", "c"]
    with pytest.raises(LuaError, match=r'invalid header value for "X-N": got nil'):
        call(st, "kong.service.request.set_header", "X-N", None)
    with pytest.raises(LuaError, match=r'invalid header value in array "X-N": got number'):
        call(st, "kong.service.request.set_header", "X-N", ["a", 1])
    with pytest.raises(LuaError, match=r"^header must be a string$"):
        call(st, "kong.service.request.clear_header", 5)


def test_set_path_escapes_like_kong_tools_uri() -> None:
    st = state()
    call(st, "kong.service.request.set_path", "/a b/ü/%41/x;y")
    assert st.upstream_path == "/a%20b/%C3%BC/%41/x;y"


def test_clear_query_arg_reserializes_the_query_like_ada() -> None:
    """`var.args = resty.ada.search.remove(args, name)`: every remaining pair is parsed and
    written back as application/x-www-form-urlencoded."""
    st = state()
    st.args = "a=%7E~&apikey=k&b=x+y&flag&c=%2F"
    call(st, "kong.service.request.clear_query_arg", "apikey")
    assert st.raw_query == "a=%7E%7E&b=x+y&flag=&c=%2F"


def test_set_body_follows_the_mime_exactly() -> None:
    st = state()
    assert call(st, "kong.service.request.set_body", {"a": "1"}) is None  # no mime, no header
    assert call(st, "kong.service.request.set_body", {"a": "1"}, "application/json") is True
    assert st.upstream_body == b'{"a":"1"}'
    assert st.headers["Content-Type"] == "application/json"
    with pytest.raises(LuaError, match=r"^unsupported content type Application/JSON$"):
        call(st, "kong.service.request.set_body", {"a": "1"}, "Application/JSON")
    call(st, "kong.service.request.set_body", {"b": "2"}, "application/x-www-form-urlencoded; x")
    assert st.upstream_body == b"b=2"
    assert st.headers["Content-Type"] == "application/x-www-form-urlencoded; x"


def test_service_response_get_body_checks_and_uses_max_args() -> None:
    st = state("response")
    st.buffering = True
    st.service_body = b"a=1&b=2&c=3"
    form = "application/x-www-form-urlencoded"
    assert call(st, "kong.service.response.get_body", form, 2) == {"a": "1", "b": "2"}
    with pytest.raises(LuaError, match=r"^max_args must be <= 1000$"):
        call(st, "kong.service.response.get_body", form, 1001)
    assert call(st, "kong.service.response.get_body") is None  # no content type: nil, err


def test_response_headers_in_the_log_timer_ignore_max() -> None:
    st = state("log")
    st.in_timer = True
    st.response_headers.add("X-A", "1")
    assert call(st, "kong.response.get_headers", 0)["x-a"] == ["1"]  # no "must be >= 1"


def test_result_method_field_chooses_the_step_method() -> None:
    """get_step_method: `type(pdk_res) == "table" and pdk_res._method` wins."""
    st = state()
    st.ctx_shared["k"] = {"_method": "plugin.StepCustom", "v": 1}
    answer = Pdk(st, None, PdkEnv(DECL, "node"), lambda _m: None).call("kong.ctx.shared.get", ["k"])
    assert isinstance(answer, PdkAnswer) and answer.step_method == "plugin.StepCustom"


async def test_a_method_name_that_reaches_a_table_is_a_hard_error() -> None:
    """rpc/util.lua index_table walks `kong.request` to a table; calling it raises, Kong
    answers 500 and sends nothing more."""
    server = FakeServer(event(("kong.request",)))
    with pytest.raises(LuaError, match="attempt to call a table value"):
        await run(server)


async def test_an_empty_answer_ends_the_event_silently() -> None:
    """Rpc:call returns data[4] = nil without error; bridge_loop returns nil, nil and
    handle_event logs nothing: the request goes on."""

    def script(method: str, params: tuple[Any, ...]) -> Any:
        if method == "plugin.StartInstance":
            return {"Id": 7, "Name": "ks-x", "Config": {}}
        if method == "plugin.HandleEvent":
            return {"EventId": 3, "Data": {"Method": "kong.log.info", "Args": ["x"]}}
        return None

    result, recorder, _, _ = await run(FakeServer(script))
    assert result is None and recorder.issues == []
    assert any("ends the event silently" in w for w in recorder.warnings)


async def test_a_new_server_pid_drops_the_workers_instances() -> None:
    """plugin.lua rpc_notifications:serverPid forgets this rpc's instances on a new pid."""
    gateway = Gateway(Options(config_path="unused.yml"))
    worker = gateway.workers[0]
    server = PluginServerProcess(PluginServerSpec("ks-x", "true", "true"), "/tmp", "/tmp")
    server.info = PluginInfo("ks-x", 10, "1.0.0", ("access",), [], server="ks-x")
    _, _, _, used = await run(FakeServer(event()))
    worker.instances = used.instances
    assert worker.instances.instance_ids()
    gateway._pid_changed(worker, server)(100.0, 200.0)
    assert worker.instances.instance_ids() == {}


def test_nginx_header_filter_on_headers_set_through_ngx_header() -> None:
    """ngx_http_header_filter: a 204 loses Content-Type, Last-Modified and Content-Length;
    Last-Modified survives only on 200, 206 and 304; a 304 keeps its Content-Length."""
    base = [("Content-Type", "text/plain"), ("Last-Modified", "x"), ("Content-Length", "0")]
    assert list(nginx_header_filter(204, CIMultiDict(base)).keys()) == []
    assert "Last-Modified" not in nginx_header_filter(404, CIMultiDict(base))
    for status in (200, 206, 304):
        assert nginx_header_filter(status, CIMultiDict(base)) == CIMultiDict(base)


def test_upstream_headers_nginx_hides_by_default() -> None:
    """proxy_hide_header defaults (X-Pad, X-Accel-*); Kong passes Server and Date
    (kong/templates/nginx_kong.lua proxy_pass_header); hop-by-hop fields never pass."""
    upstream = CIMultiDict(
        [
            ("X-Accel-Redirect", "/internal"),
            ("X-Pad", "avoid browser bug"),
            ("Server", "origin"),
            ("Date", "d"),
            ("Connection", "close"),
            ("X-Kept", "1"),
        ]
    )
    assert sorted(upstream_visible(upstream).keys()) == ["Date", "Server", "X-Kept"]


def test_buffered_response_is_in_ngx_ctx_for_get_ctx() -> None:
    """kong/init.lua Kong.response: ctx.buffered_status / ctx.buffered_headers hold the
    subrequest's res.status / res.header (names as sent, a repeated header as an array);
    kong.nginx.get_ctx reads ngx.ctx (plugin.lua exposed_api)."""
    st = state("response")
    st.buffering = True
    st.service_status = 503
    st.service_headers = CIMultiDict(
        [("Content-Type", "text/html"), ("Set-Cookie", "a=1"), ("set-cookie", "b=2")]
    )
    assert call(st, "kong.nginx.get_ctx", "buffered_status") == 503
    assert call(st, "kong.nginx.get_ctx", "buffered_headers") == {
        "Content-Type": "text/html",
        "Set-Cookie": ["a=1", "b=2"],
    }
    st.buffering = False
    assert call(st, "kong.nginx.get_ctx", "buffered_headers") is None


def test_buffered_response_headers_are_set_through_ngx_header() -> None:
    """Kong.response copies the upstream's headers with kong.response.set_headers: ngx.header
    turns "_" in a name into "-" and the copy wins over what plugins set before."""
    early = CIMultiDict([("X-Plugin", "p"), ("X-Same", "plugin")])
    upstream = CIMultiDict([("X_Under", "u"), ("X-Same", "upstream"), ("Content-Length", "3")])
    headers = buffered_response_headers(upstream, early)
    assert headers["X-Under"] == "u" and "X_Under" not in list(headers.keys())
    assert headers.getall("X-Same") == ["upstream"] and headers["X-Plugin"] == "p"
    assert headers["Content-Length"] == "3"


def test_header_size_limits_are_nginxs_defaults() -> None:
    """large_client_header_buffers 4 8k (a line must fit 8k, the block 32k) and
    proxy_buffer_size one page (4k) for the upstream's status line and headers; Kong sets
    neither (kong/templates/nginx_kong.lua, kong_defaults.lua)."""
    small = [(b"X-A", b"1")] * 100
    assert not client_headers_too_large(30, small)
    assert client_headers_too_large(30, [(b"Cookie", b"c" * 8200)])  # one line over 8k
    assert client_headers_too_large(30, [(b"X-Pad", b"p" * 4000)] * 9)  # block over 32k
    assert not client_headers_too_large(30, [(b"X-Pad", b"p" * 4000)] * 7)
    assert not upstream_headers_too_large(17, [(b"Content-Type", b"text/plain")] * 50)
    assert upstream_headers_too_large(17, [(b"X-Big", b"b" * 4100)])
