"""kongsim.pdk: what Kong answers to PDK callbacks (values, reply methods, fix-ups, errors)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from multidict import CIMultiDict

from kongsim.config.declarative import parse
from kongsim.errors import LuaError, WireEncodingError
from kongsim.pdk import Pdk, PdkAnswer, PdkEnv, UnknownPdkMethod
from kongsim.request.router import Router
from kongsim.request.state import RequestState, Terminal
from kongsim.request.uri import normalize

DECL = parse(
    {
        "_format_version": "3.0",
        "services": [
            {"name": "svc", "url": "http://up:81/base", "routes": [{"name": "r", "paths": ["/r"]}]}
        ],
        "consumers": [{"username": "bob", "custom_id": "c-1"}],
    }
)


def state(uri: str = "/r/x?a=1&b&c=&a=2", **kw: Any) -> RequestState:
    headers = CIMultiDict(
        [("Host", "Kong.Test:8000"), ("X-Multi", "1"), ("X-Multi", "2"), ("Accept", "*/*")]
    )
    st = RequestState(
        method="POST",
        request_uri=uri,
        headers=headers,
        body=b"k=v&x=1",
        client_ip="127.0.0.9",
        client_port=5555,
        server_port=8000,
        **kw,
    )
    st.match = Router(DECL).match("POST", st.host_header, normalize(st.raw_path), {}, 8000)
    st.phase = "access"
    return st


def call(st: RequestState, method: str, *args: Any, warnings: list[str] | None = None) -> Any:
    pdk = Pdk(st, None, PdkEnv(DECL, "node-1"), (warnings if warnings is not None else []).append)
    return pdk.call(method, list(args))


def test_request_getters() -> None:
    st = state()
    assert call(st, "kong.request.get_method") == PdkAnswer("POST")
    assert call(st, "kong.request.get_path").value == "/r/x"
    assert call(st, "kong.request.get_path_with_query").value == "/r/x?a=1&b&c=&a=2"
    assert call(st, "kong.request.get_raw_query").value == "a=1&b&c=&a=2"
    assert call(st, "kong.request.get_host").value == "kong.test"
    assert call(st, "kong.request.get_port").value == 8000
    assert call(st, "kong.request.get_scheme").value == "http"
    assert call(st, "kong.request.get_http_version").value == 1.1
    assert call(st, "kong.request.get_header", "x_multi").value == "1"
    assert call(st, "kong.request.get_header", "missing").value is None
    assert call(st, "kong.request.get_query_arg", "a").value == "1"
    assert call(st, "kong.request.get_query_arg", "b").value is True
    assert call(st, "kong.client.get_ip").value == "127.0.0.9"
    assert call(st, "kong.client.get_port").value == 5555
    assert call(st, "kong.request.get_raw_body") == PdkAnswer(b"k=v&x=1")


def test_multimaps_are_fixed_up_like_kong() -> None:
    st = state()
    headers = call(st, "kong.request.get_headers")
    assert headers.step_method == "plugin.StepMultiMap"
    assert headers.value == {"host": ["Kong.Test:8000"], "x-multi": ["1", "2"], "accept": ["*/*"]}
    query = call(st, "kong.request.get_query")
    assert query == PdkAnswer({"a": ["1", "2"], "b": [], "c": [""]}, "plugin.StepMultiMap")
    assert call(state("/r"), "kong.request.get_query").value == {}
    assert call(st, "kong.request.get_headers", 1).value == {"host": ["Kong.Test:8000"]}


def test_entities_use_typed_step_methods() -> None:
    st = state()
    route = call(st, "kong.router.get_route")
    assert route.step_method == "plugin.StepRoute" and route.value["name"] == "r"
    service = call(st, "kong.router.get_service")
    assert service.step_method == "plugin.StepService"
    assert (service.value["host"], service.value["port"], service.value["path"]) == (
        "up",
        81,
        "/base",
    )
    assert call(st, "kong.client.get_consumer") == PdkAnswer(None, "plugin.StepConsumer")
    bob = DECL.consumers[0].entity()
    assert call(st, "kong.client.authenticate", bob, None).step_method == "plugin.StepCredential"
    assert call(st, "kong.client.get_consumer").value["username"] == "bob"
    assert call(st, "kong.client.load_consumer", "bob", True).value["custom_id"] == "c-1"


def test_phase_rules_are_kongs() -> None:
    st = state()
    with pytest.raises(
        LuaError,
        match=r"function cannot be called in access phase \(only in: "
        r"response, header_filter, body_filter, log",
    ):
        call(st, "kong.response.get_status")
    st.phase = "rewrite"
    with pytest.raises(LuaError, match="cannot be called in rewrite phase"):
        call(st, "kong.router.get_route")
    st.phase = "response"
    with pytest.raises(LuaError, match="cannot be called in response phase"):
        call(st, "kong.service.request.set_header", "a", "b")


def test_log_timer_allows_snapshot_functions_only() -> None:
    st = state()
    st.phase, st.in_timer = "log", True
    st.ctx_shared["k"] = "v"
    assert call(st, "kong.ctx.shared.get", "k").value == "v"
    assert call(st, "kong.request.get_header", "x-multi").value == "1"
    assert call(st, "kong.router.get_route").value["name"] == "r"
    with pytest.raises(LuaError, match=r"API disabled in the current context"):
        call(st, "kong.request.get_method")
    with pytest.raises(LuaError, match=r"API disabled in the current context"):
        call(st, "kong.service.response.get_status")


def test_unknown_methods_and_nil_arguments() -> None:
    st = state()
    with pytest.raises(UnknownPdkMethod):
        call(st, "kong.request.get_nothing")
    warnings: list[str] = []
    terminal = call(st, "kong.response.exit", 200, None, {"X-A": "1"}, warnings=warnings)
    # Kong's send: no body -> Content-Length 0; the headers after the nil were dropped
    assert isinstance(terminal, Terminal) and terminal.headers == [("Content-Length", "0")]
    assert warnings and "truncates the argument list" in warnings[0]


def test_exit_bodies_and_headers() -> None:
    st = state()
    t = call(st, "kong.response.exit", 403, {"message": "a/b", "list": []}, {"X-A": ["1", ""]})
    assert t.status == 403
    assert t.body == b'{"message":"a\\/b","list":{}}'
    assert ("Content-Type", "application/json; charset=utf-8") in t.headers
    assert [v for k, v in t.headers if k == "X-A"] == ["1", " "]
    raw = call(st, "kong.response.exit", 200, b"\x00bin", {"Content-Type": "x/y"})
    assert raw.body == b"\x00bin"
    assert raw.headers == [("Content-Type", "x/y"), ("Content-Length", "4")]


def test_exit_content_length_and_cleared_headers_follow_kongs_send() -> None:
    """kong/pdk/response.lua send(): Content-Length is #body unless the caller gave one; a
    header value that is an empty array clears the header (ngx.header[name] = {})."""
    st = state()
    t = call(st, "kong.response.exit", 304, "", {"ETag": '"a"', "Content-Length": []})
    assert t.headers == [("ETag", '"a"')] and t.cleared == frozenset({"content-length"})
    t = call(st, "kong.response.exit", 304, "", {"ETag": '"a"'})
    assert ("Content-Length", "0") in t.headers  # what a careless plugin sends on a 304
    t = call(st, "kong.response.exit", 200, "", {"Content-Length": "42"})
    assert t.headers == [("Content-Length", "42")]  # a HEAD answer keeps the real length
    t = call(st, "kong.response.exit", 200, "abc", {"content_length": "3", "X-Gone": []})
    assert t.cleared == frozenset({"x-gone"}) and t.headers == [("content-length", "3")]
    with pytest.raises(LuaError, match="code must be a number between 100 and 599"):
        call(st, "kong.response.exit", 700)
    with pytest.raises(LuaError, match='invalid header value in array "X-A": got number'):
        call(st, "kong.response.exit", 200, "x", {"X-A": ["1", 2]})


def test_error_uses_kongs_template_and_accept_header() -> None:
    st = state()
    t = call(st, "kong.response.error", 401)
    assert json.loads(t.body) == {"message": "Unauthorized", "request_id": st.request_id}
    st.headers["Accept"] = "text/html;q=0.5, text/plain"
    t = call(st, "kong.response.error", 418, "short and stout")
    assert t.body == f"short and stout\nrequest_id: {st.request_id}\n".encode()
    assert ("Content-Type", "text/plain; charset=utf-8") in t.headers
    with pytest.raises(LuaError, match="between 400 and 599"):
        call(st, "kong.response.error", 302)


def test_service_request_changes_change_the_request_itself() -> None:
    """kong/pdk/service/request.lua: ngx.req.set_header / clear_header / set_uri_args change
    the request, so kong.request.get_headers() and get_raw_query() see the change."""
    st = state()
    st.headers["X-Gone"] = "1"
    call(st, "kong.service.request.set_header", "X-A", 1)
    call(st, "kong.service.request.add_header", "X-A", True)
    call(st, "kong.service.request.clear_header", "X-Gone")
    call(st, "kong.service.request.set_header", "Host", "other.test")
    call(st, "kong.service.request.set_path", "/new")
    call(st, "kong.service.request.set_query", {"z": "1", "a": True, "m": ["x", "y"]})
    call(st, "kong.service.request.set_method", "PUT")
    seen = call(st, "kong.request.get_headers").value
    assert seen["x-a"] == ["1", "true"] and "x-gone" not in seen
    assert seen["host"] == ["other.test"]
    assert (st.upstream_host, st.upstream_path, st.upstream_method) == ("other.test", "/new", "PUT")
    assert call(st, "kong.request.get_raw_query").value == "a&m=x&m=y&z=1"
    assert call(st, "kong.nginx.get_var", "request").value.split()[1] == st.request_uri
    with pytest.raises(LuaError, match="path must start with /"):
        call(st, "kong.service.request.set_path", "nope")
    with pytest.raises(LuaError, match="invalid method"):
        call(st, "kong.service.request.set_method", "FETCH")


def test_response_phase_reads_buffered_response() -> None:
    st = state()
    st.phase, st.buffering = "response", True
    st.service_status, st.service_body = 201, b"body"
    st.service_headers = CIMultiDict([("Content-Type", "text/plain")])
    st.response_status = 201
    assert call(st, "kong.service.response.get_raw_body") == PdkAnswer(b"body")
    # kong/pdk/service/response.lua: a lookup-only table under buffered proxying; the
    # plugin server receives {} (fix_mmap finds nothing to iterate), single lookups work
    assert call(st, "kong.service.response.get_headers").value == {}
    assert call(st, "kong.service.response.get_header", "content_type").value == "text/plain"
    assert call(st, "kong.service.response.get_status").value == 201
    call(st, "kong.response.set_header", "X-New", "1")
    assert call(st, "kong.response.get_header", "x_new").value == "1"
    st.buffering = False
    with pytest.raises(LuaError, match="only available with buffered proxying"):
        call(st, "kong.service.response.get_raw_body")


def test_large_request_body_is_a_hard_error_without_max_size() -> None:
    st = state()
    st.body = b"x" * 9000
    with pytest.raises(LuaError, match="a nil value"):
        call(st, "kong.request.get_raw_body")
    assert call(st, "kong.request.get_raw_body", 0).value == st.body


def test_empty_tables_pack_as_arrays_and_misc() -> None:
    st = state()
    call(st, "kong.ctx.shared.set", "empty", {})
    assert call(st, "kong.ctx.shared.get", "empty").value == []
    assert call(st, "kong.nginx.get_var", "request_uri").value == st.request_uri
    assert call(st, "kong.nginx.get_var", "request").value == (
        f"{st.method} {st.request_uri} HTTP/1.1"
    )
    assert call(st, "kong.nginx.get_var", "nope").value is None
    assert call(st, "kong.node.get_id").value == "node-1"
    assert call(st, "kong.request.get_uri_captures").value == {"unnamed": [], "named": []}
    assert call(st, "kong.log.info", "a", 1) == PdkAnswer(None)


def test_binary_lua_strings_cannot_reach_the_plugin_server() -> None:
    st = state()
    call(st, "kong.ctx.shared.set", "text", b"abc")
    assert call(st, "kong.ctx.shared.get", "text").value == "abc"
    call(st, "kong.ctx.shared.set", "bin", b"\xff\xfe")
    with pytest.raises(WireEncodingError, match="not valid UTF-8"):
        call(st, "kong.ctx.shared.get", "bin")
