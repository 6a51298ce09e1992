"""Fidelity with Kong 3.9.3, PDK side: the PDK rows of the table at the end of kongsim/README.md.

Every function in ``kongsim.pdk.REGISTRY`` has a row in :data:`KONG` stating what Kong 3.9.3's
source says about it (phases from ``check_phase``, behaviour in the external ``log`` timer,
reply method from ``mp_rpc.lua`` ``get_step_method``, wire fix-up from ``must_fix``); the
table-driven tests below check kongsim against those rows, and the value tests check what
goes on the wire.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import pytest
from multidict import CIMultiDict

from kongsim.config.declarative import parse
from kongsim.config.entities import PluginEntity
from kongsim.config.plugins import ConfiguredPlugin, PluginInfo
from kongsim.errors import LuaError, WireEncodingError
from kongsim.pdk import REGISTRY, TERMINAL_METHODS, Pdk, PdkAnswer, PdkEnv
from kongsim.request.router import Router
from kongsim.request.state import RequestState, Terminal
from kongsim.request.uri import normalize

README = Path(__file__).resolve().parents[2] / "kongsim" / "README.md"

# --- Kong's phase groups (kong/pdk/private/phases.lua), names in bit order as Kong lists them --
REQUEST = (
    "rewrite",
    "access",
    "balancer",
    "response",
    "cluster_listener",
    "header_filter",
    "body_filter",
    "log",
    "error",
    "admin_api",
)
BEFORE_CONTENT = ("rewrite", "access", "response", "error", "admin_api")  # request.lua
AUTH_AND_LATER = ("access", "response", "header_filter", "body_filter", "log")  # client/router
RESP_HEADER_BODY_LOG = ("response", "header_filter", "body_filter", "log", "error", "admin_api")
REWRITE_ACCESS_HEADER = (
    "rewrite",
    "access",
    "balancer",
    "response",
    "header_filter",
    "error",
    "admin_api",
)
SVC_HEADER_BODY_LOG = ("response", "header_filter", "body_filter", "log")  # service/response.lua
ACCESS_REWRITE_BALANCER = ("rewrite", "access", "balancer")  # service/request.lua
ACCESS_AND_REWRITE = ("rewrite", "access")
LOG_CTX = ("rewrite", "access", "response", "header_filter", "body_filter", "log")  # log.lua


class Kong(NamedTuple):
    """One PDK function as Kong 3.9.3 defines it for an external plugin."""

    phases: tuple[str, ...] | None
    """``check_phase`` groups; ``None``: no check (or only ``check_not_phase(init_worker)``)."""
    timer: str
    """In the log timer: ``ok`` (ngx.ctx or saved data), ``error`` (reads ngx.var/ngx.req:
    "API disabled in the current context"), ``phase`` (not allowed in log anyway)."""
    step: str = "plugin.Step"
    fix: str | None = None


MM, RAW = "mmap", "raw"
FORM = "application/x-www-form-urlencoded"
KONG: dict[str, Kong] = {
    # kong/pdk/request.lua (+ exposed_api overrides for get_header(s), get_uri_captures)
    "kong.request.get_scheme": Kong(REQUEST, "error"),
    "kong.request.get_host": Kong(REQUEST, "error"),
    "kong.request.get_port": Kong(None, "error"),
    "kong.request.get_forwarded_scheme": Kong(REQUEST, "error"),
    "kong.request.get_forwarded_host": Kong(REQUEST, "error"),
    "kong.request.get_forwarded_port": Kong(REQUEST, "error"),
    "kong.request.get_forwarded_path": Kong(REQUEST, "error"),
    "kong.request.get_forwarded_prefix": Kong(REQUEST, "error"),
    "kong.request.get_http_version": Kong(REQUEST, "error"),
    "kong.request.get_method": Kong(REQUEST, "error"),
    "kong.request.get_path": Kong(REQUEST, "error"),
    "kong.request.get_raw_path": Kong(REQUEST, "error"),
    "kong.request.get_path_with_query": Kong(REQUEST, "error"),
    "kong.request.get_raw_query": Kong(REQUEST, "error"),
    "kong.request.get_query": Kong(REQUEST, "error", "plugin.StepMultiMap", MM),
    "kong.request.get_query_arg": Kong(REQUEST, "error"),
    "kong.request.get_header": Kong(REQUEST, "ok"),
    "kong.request.get_headers": Kong(REQUEST, "ok", "plugin.StepMultiMap", MM),
    "kong.request.get_raw_body": Kong(BEFORE_CONTENT, "phase", fix=RAW),
    "kong.request.get_body": Kong(BEFORE_CONTENT, "phase"),
    "kong.request.get_start_time": Kong(REQUEST, "ok"),
    "kong.request.get_uri_captures": Kong(REQUEST, "ok"),
    # kong/pdk/client.lua
    "kong.client.get_ip": Kong(None, "error"),
    "kong.client.get_forwarded_ip": Kong(None, "error"),
    "kong.client.get_port": Kong(None, "error"),
    "kong.client.get_forwarded_port": Kong(None, "error"),
    "kong.client.get_protocol": Kong(AUTH_AND_LATER, "error"),  # route with 2 protocols
    "kong.client.get_consumer": Kong(AUTH_AND_LATER, "ok", "plugin.StepConsumer"),
    "kong.client.get_credential": Kong(AUTH_AND_LATER, "ok", "plugin.StepCredential"),
    "kong.client.load_consumer": Kong(AUTH_AND_LATER, "ok", "plugin.StepConsumer"),
    "kong.client.authenticate": Kong(("access",), "phase", "plugin.StepCredential"),
    # kong/pdk/router.lua, plugin.lua, node.lua, ip.lua
    "kong.router.get_route": Kong(AUTH_AND_LATER, "ok", "plugin.StepRoute"),
    "kong.router.get_service": Kong(AUTH_AND_LATER, "ok", "plugin.StepService"),
    "kong.plugin.get_id": Kong(None, "ok"),
    "kong.node.get_id": Kong(None, "ok"),
    "kong.node.get_hostname": Kong(None, "ok"),
    "kong.ip.is_trusted": Kong(None, "ok"),
    # exposed_api (plugin_servers/plugin.lua) and kong/pdk/nginx.lua
    "kong.ctx.shared.get": Kong(None, "ok"),
    "kong.ctx.shared.set": Kong(None, "ok"),
    "kong.nginx.get_ctx": Kong(None, "ok"),
    "kong.nginx.set_ctx": Kong(None, "ok"),
    "kong.nginx.req_start_time": Kong(None, "ok"),
    "kong.nginx.get_subsystem": Kong(None, "ok"),
    "kong.nginx.get_tls1_version_str": Kong(None, "ok"),
    "kong.nginx.get_var": Kong(None, "error"),
    # kong/pdk/log.lua
    "kong.log": Kong(None, "ok"),
    "kong.log.debug": Kong(None, "ok"),
    "kong.log.inspect": Kong(None, "ok"),
    "kong.log.info": Kong(None, "ok"),
    "kong.log.notice": Kong(None, "ok"),
    "kong.log.warn": Kong(None, "ok"),
    "kong.log.deprecation": Kong(None, "ok"),
    "kong.log.err": Kong(None, "ok"),
    "kong.log.crit": Kong(None, "ok"),
    "kong.log.alert": Kong(None, "ok"),
    "kong.log.emerg": Kong(None, "ok"),
    "kong.log.set_serialize_value": Kong(LOG_CTX, "ok"),
    "kong.log.serialize": Kong(("log",), "ok"),
    # kong/pdk/response.lua (+ exposed_api overrides for the getters)
    "kong.response.get_status": Kong(RESP_HEADER_BODY_LOG, "ok"),
    "kong.response.get_header": Kong(RESP_HEADER_BODY_LOG, "ok"),
    "kong.response.get_headers": Kong(RESP_HEADER_BODY_LOG, "ok", "plugin.StepMultiMap", MM),
    "kong.response.get_source": Kong(RESP_HEADER_BODY_LOG, "ok"),
    "kong.response.set_status": Kong(REWRITE_ACCESS_HEADER, "phase"),
    "kong.response.set_header": Kong(REWRITE_ACCESS_HEADER, "phase"),
    "kong.response.add_header": Kong(REWRITE_ACCESS_HEADER, "phase"),
    "kong.response.clear_header": Kong(REWRITE_ACCESS_HEADER, "phase"),
    "kong.response.set_headers": Kong(REWRITE_ACCESS_HEADER, "phase"),
    "kong.response.exit": Kong(REWRITE_ACCESS_HEADER, "phase"),
    "kong.response.error": Kong(REWRITE_ACCESS_HEADER, "phase"),
    "kong.response.get_raw_body": Kong(("body_filter",), "phase", fix=RAW),
    # kong/pdk/service/request.lua
    "kong.service.request.set_header": Kong(ACCESS_REWRITE_BALANCER, "phase"),
    "kong.service.request.add_header": Kong(ACCESS_AND_REWRITE, "phase"),
    "kong.service.request.clear_header": Kong(ACCESS_AND_REWRITE, "phase"),
    "kong.service.request.set_headers": Kong(ACCESS_AND_REWRITE, "phase"),
    "kong.service.request.set_method": Kong(ACCESS_AND_REWRITE, "phase"),
    "kong.service.request.set_path": Kong(ACCESS_REWRITE_BALANCER, "phase"),
    "kong.service.request.set_raw_query": Kong(ACCESS_AND_REWRITE, "phase"),
    "kong.service.request.set_query": Kong(ACCESS_AND_REWRITE, "phase"),
    "kong.service.request.clear_query_arg": Kong(ACCESS_AND_REWRITE, "phase"),
    "kong.service.request.set_raw_body": Kong(ACCESS_REWRITE_BALANCER, "phase"),
    "kong.service.request.set_body": Kong(ACCESS_AND_REWRITE, "phase"),
    "kong.service.request.enable_buffering": Kong(ACCESS_REWRITE_BALANCER, "phase"),
    # kong/pdk/service/response.lua (buffered: ctx.buffered_*; so "ok" in the timer)
    "kong.service.response.get_status": Kong(SVC_HEADER_BODY_LOG, "ok"),
    "kong.service.response.get_headers": Kong(SVC_HEADER_BODY_LOG, "ok", "plugin.StepMultiMap", MM),
    "kong.service.response.get_header": Kong(SVC_HEADER_BODY_LOG, "ok"),
    "kong.service.response.get_raw_body": Kong(SVC_HEADER_BODY_LOG, "ok", fix=RAW),
    "kong.service.response.get_body": Kong(SVC_HEADER_BODY_LOG, "ok"),
}

# Arguments of a valid call, for the table-driven tests.
ARGS: dict[str, list[Any]] = {
    "kong.request.get_query_arg": ["a"],
    "kong.request.get_header": ["x-multi"],
    "kong.client.load_consumer": ["bob", True],
    "kong.client.authenticate": [{"id": "c"}, None],
    "kong.ip.is_trusted": ["127.0.0.1"],
    "kong.ctx.shared.get": ["k"],
    "kong.ctx.shared.set": ["k", "v"],
    "kong.nginx.get_ctx": ["k"],
    "kong.nginx.set_ctx": ["k", 1],
    "kong.nginx.get_var": ["request_uri"],
    "kong.log.set_serialize_value": ["k", 1],
    "kong.response.get_header": ["x-a"],
    "kong.response.set_status": [201],
    "kong.response.set_header": ["X-A", "1"],
    "kong.response.add_header": ["X-A", "1"],
    "kong.response.clear_header": ["X-A"],
    "kong.response.set_headers": [{"X-A": "1"}],
    "kong.response.exit": [200],
    "kong.response.error": [400],
    "kong.service.request.set_header": ["X-A", "1"],
    "kong.service.request.add_header": ["X-A", "1"],
    "kong.service.request.clear_header": ["X-A"],
    "kong.service.request.set_headers": [{"X-A": "1"}],
    "kong.service.request.set_method": ["PUT"],
    "kong.service.request.set_path": ["/p"],
    "kong.service.request.set_raw_query": ["a=1"],
    "kong.service.request.set_query": [{"a": "1"}],
    "kong.service.request.clear_query_arg": ["a"],
    "kong.service.request.set_raw_body": ["b"],
    "kong.service.request.set_body": [{"a": "1"}, "application/json"],
    "kong.service.response.get_header": ["content-type"],
}

DECL = parse(
    {
        "_format_version": "3.0",
        "services": [
            {
                "name": "svc",
                "url": "http://up:81/base",
                "routes": [
                    {"name": "r", "paths": ["/r"]},
                    {"name": "keep", "paths": ["/keep"], "strip_path": False},
                    {"name": "rx", "paths": [r"~/rx/(?<id>\d+)(/x)?$", "~/plainrx$"]},
                    {"name": "only-http", "paths": ["/one"], "protocols": ["http"]},
                ],
            }
        ],
        "consumers": [{"username": "bob", "custom_id": "c-1"}],
    }
)
ROUTER = Router(DECL)
PLUGIN = ConfiguredPlugin(
    PluginEntity("p-1", "ks-x", {}, None, None, None, "plugin 'ks-x'"),
    PluginInfo("ks-x", 10, "1.0.0", ("access",), [], server="ks-x"),
    {},
    seq=1,
)


def state(uri: str = "/r/x?a=1&b&c=&a=2", phase: str = "access", **kw: Any) -> RequestState:
    headers = CIMultiDict(
        [
            ("Host", "Kong.Test:8000"),
            ("X-Multi", "1"),
            ("X-Multi", "2"),
            ("Accept", "*/*"),
            ("Content-Type", "application/x-www-form-urlencoded"),
        ]
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
    if phase != "rewrite":
        st.match = ROUTER.match("POST", st.host_header, normalize(st.raw_path), {}, 8000)
    st.phase = phase
    return st


def buffered(st: RequestState) -> RequestState:
    """The state of Kong.response(): the upstream answered, buffered."""
    st.buffering, st.proxied = True, True
    st.service_status, st.service_body = 200, b'{"a": 1}'
    st.service_headers = CIMultiDict([("Content-Type", "application/json")])
    st.response_status = 200
    st.response_headers = CIMultiDict([("Content-Type", "application/json"), ("X-A", "1")])
    return st


def call(st: RequestState, method: str, *args: Any, warnings: list[str] | None = None) -> Any:
    pdk = Pdk(st, PLUGIN, PdkEnv(DECL, "node-1"), (warnings if warnings is not None else []).append)
    return pdk.call(method, list(args))


def value(st: RequestState, method: str, *args: Any) -> Any:
    answer = call(st, method, *args)
    assert isinstance(answer, PdkAnswer)
    return answer.value


# --- the table itself ----------------------------------------------------------------------


def table_rows() -> dict[str, str]:
    """First cell → whole row, for the rows of README's fidelity table."""
    text = README.read_text(encoding="utf-8")
    section = text.split("## Fidelity table (Kong 3.9.3)", 1)[1]
    rows: dict[str, str] = {}
    for line in section.splitlines():
        if line.startswith("| ") and not line.startswith("| ---"):
            first = line.split(" | ", 1)[0].strip("| `")
            rows[first] = line
    return rows


def test_every_registry_function_has_a_row_here_and_in_the_readme_table() -> None:
    assert set(KONG) == set(REGISTRY)
    rows = table_rows()
    assert set(REGISTRY) <= set(rows)
    for name, row in rows.items():
        if name in REGISTRY:
            assert row.count(" | ") == 4, f"row {name} does not have 5 cells"
    # every test named in the table exists
    tests_dir = Path(__file__).parent
    for row in rows.values():
        for file, test in re.findall(r"(test_\w+\.py)::(test_\w+)", row):
            source = (tests_dir / file).read_text(encoding="utf-8")
            assert f"def {test}(" in source, f"{file}::{test} named in the table does not exist"


# --- phases, timer, reply method, fix-ups: one parametrized test per column ---------------


@pytest.mark.parametrize("name", sorted(KONG))
@pytest.mark.parametrize("phase", ["rewrite", "access", "response", "log"])
def test_phase_rule_is_kongs_check_phase(name: str, phase: str) -> None:
    """kong/pdk/private/phases.lua check_phase: "function cannot be called in X phase (only in:
    <allowed phases in bit order>)"; functions without a check work in every phase."""
    st = buffered(state(phase=phase))
    kong = KONG[name]
    if kong.phases is None or phase in kong.phases:
        try:
            call(st, name, *ARGS.get(name, []))
        except LuaError as exc:
            assert "cannot be called" not in str(exc)
        return
    expected = f"function cannot be called in {phase} phase (only in: {', '.join(kong.phases)})"
    with pytest.raises(LuaError) as info:
        call(st, name, *ARGS.get(name, []))
    assert str(info.value) == expected


@pytest.mark.parametrize("name", sorted(KONG))
def test_log_timer_behaviour(name: str) -> None:
    """plugin.lua build_phases: an external plugin's log handler runs in ngx.timer.at with the
    request data saved; ngx.var/ngx.req raise there (lua-resty-core: "API disabled in the
    current context"; kongsim's text is pending, see the table)."""
    st = buffered(state(phase="log"))
    st.in_timer = True
    outcome = KONG[name].timer
    if outcome == "ok":
        call(st, name, *ARGS.get(name, []))
    elif outcome == "error":
        with pytest.raises(LuaError, match=r"^API disabled in the"):
            call(st, name, *ARGS.get(name, []))
    else:
        with pytest.raises(LuaError, match=r"^function cannot be called in log phase"):
            call(st, name, *ARGS.get(name, []))


@pytest.mark.parametrize("name", sorted(set(KONG) - TERMINAL_METHODS))
def test_reply_method_and_wire_fixup(name: str) -> None:
    """rpc/mp_rpc.lua get_step_method (typed Step* per function, plugin.Step otherwise) and
    must_fix (fix_mmap: a map of lists; fix_raw: msgpack bin)."""
    kong = KONG[name]
    phases = kong.phases or ("access",)
    phase = "access" if "access" in phases else phases[0]
    st = buffered(state(phase=phase))
    answer = call(st, name, *ARGS.get(name, []))
    assert isinstance(answer, PdkAnswer)
    assert answer.step_method == kong.step
    if kong.fix == RAW:
        assert isinstance(answer.value, bytes)
    elif kong.fix == MM:
        assert isinstance(answer.value, dict)
        assert all(isinstance(v, list) for v in answer.value.values())


def test_exit_and_error_are_terminal() -> None:
    """mp_rpc.lua: exit/error yield the Lua coroutine (access) or ngx.exit: no further Step."""
    assert {"kong.response.exit", "kong.response.error"} == TERMINAL_METHODS
    assert isinstance(call(state(), "kong.response.exit", 200), Terminal)
    assert isinstance(call(state(), "kong.response.error", 404), Terminal)


# --- values on the wire: kong.request ---------------------------------------------------------

Setup = Callable[[RequestState], Any]


def _set(**fields: Any) -> Setup:
    def apply(st: RequestState) -> None:
        for k, v in fields.items():
            setattr(st, k, v)

    return apply


def _headers(*pairs: tuple[str, str]) -> Setup:
    def apply(st: RequestState) -> None:
        for k, v in pairs:
            st.headers.add(k, v)

    return apply


def _nothing(_st: RequestState) -> None:
    return None


class Case(NamedTuple):
    id: str
    method: str
    args: tuple[Any, ...]
    expected: Any
    """The value sent (``Data``), or an exception type / (type, match)."""
    uri: str = "/r/x?a=1&b&c=&a=2"
    setup: Setup = _nothing
    phase: str = "access"


CASES = [
    # request.lua get_method: ngx.req.get_method() sees ngx.req.set_method
    Case("method", "kong.request.get_method", (), "POST"),
    Case("method/set", "kong.request.get_method", (), "PUT", setup=_set(upstream_method="PUT")),
    Case(
        "method/unexpected",
        "kong.request.get_method",
        (),
        "POST",
        setup=_set(upstream_method="PUT", unexpected=True),
    ),
    Case("host", "kong.request.get_host", (), "kong.test"),
    Case("port", "kong.request.get_port", (), 8000),
    Case("http_version/1.1", "kong.request.get_http_version", (), 1.1),
    Case("http_version/1.0", "kong.request.get_http_version", (), 1, setup=_set(http_version=1.0)),
    # get_path: kong/tools/uri.lua normalize (reserved characters stay encoded)
    Case("path", "kong.request.get_path", (), "/r/~x/y/z", uri="/r/%7ex/./y//z?q"),
    Case("path/reserved", "kong.request.get_path", (), "/r/a%2Fb", uri="/r/a%2fb"),
    Case("path/not-utf8", "kong.request.get_path", (), WireEncodingError, uri="/r/%FF"),
    Case("raw_path", "kong.request.get_raw_path", (), "/r/%7ex", uri="/r/%7ex?q"),
    Case("path_with_query", "kong.request.get_path_with_query", (), "/r/x?q", uri="/r/x?q"),
    Case("raw_query", "kong.request.get_raw_query", (), "a=1&b", uri="/r?a=1&b"),
    Case("raw_query/none", "kong.request.get_raw_query", (), "", uri="/r"),
    Case("raw_query/set", "kong.request.get_raw_query", (), "z=1", setup=_set(args="z=1")),
    # get_query: ngx.req.get_uri_args + fix_mmap
    Case(
        "query",
        "kong.request.get_query",
        (),
        {"a": ["1", "2"], "b": [], "c": [""], "q": ["a b+"]},
        uri="/r?a=1&=x&&b&c=&a=2&q=a+b%2B",
    ),
    Case("query/empty", "kong.request.get_query", (), {}, uri="/r"),
    Case("query/max", "kong.request.get_query", (2,), {"a": ["1"], "b": ["2"]}, uri="/r?a=1&b=2&c"),
    Case(
        "query/empty-names-do-not-count", "kong.request.get_query", (1,), {"a": ["1"]}, "/r?=x&a=1"
    ),
    Case(
        "query/max-type", "kong.request.get_query", ("2",), (LuaError, "max_args must be a number")
    ),
    Case("query/max-low", "kong.request.get_query", (0,), (LuaError, "max_args must be >= 1")),
    Case(
        "query/max-high", "kong.request.get_query", (1001,), (LuaError, "max_args must be <= 1000")
    ),
    Case(
        "query/default-100",
        "kong.request.get_query",
        (),
        100,
        uri="/r?" + "&".join(f"k{i}" for i in range(150)),
    ),
    Case("query/not-utf8", "kong.request.get_query", (), WireEncodingError, uri="/r?a=%FF"),
    Case("query_arg", "kong.request.get_query_arg", ("a",), "1"),
    Case("query_arg/flag", "kong.request.get_query_arg", ("b",), True),
    Case("query_arg/missing", "kong.request.get_query_arg", ("zz",), None),
    Case(
        "query_arg/name",
        "kong.request.get_query_arg",
        (1,),
        (LuaError, "query argument name must be a string"),
    ),
    # get_header: kong.tools.http.get_header ($http_<name>, first value if several lines)
    Case("header/first", "kong.request.get_header", ("X_MULTI",), "1"),
    Case("header/missing", "kong.request.get_header", ("nope",), None),
    Case(
        "header/comma-in-one-line",
        "kong.request.get_header",
        ("x-list",),
        "a, b",
        setup=_headers(("X-List", "a, b")),
    ),
    Case(
        "header/cookies-joined",
        "kong.request.get_header",
        ("cookie",),
        "a=1; b=2",
        setup=_headers(("Cookie", "a=1"), ("Cookie", "b=2")),
    ),
    Case(
        "header/underscore-name",
        "kong.request.get_header",
        ("x-under",),
        "u",
        setup=_headers(("X_Under", "u")),
    ),
    Case(
        "header/name",
        "kong.request.get_header",
        (None,),
        (LuaError, "header name must be a string"),
    ),
    Case(
        "headers",
        "kong.request.get_headers",
        (),
        {
            "host": ["Kong.Test:8000"],
            "x-multi": ["1", "2"],
            "accept": ["*/*"],
            "content-type": ["application/x-www-form-urlencoded"],
        },
    ),
    Case(
        "headers/max",
        "kong.request.get_headers",
        (2,),
        {"host": ["Kong.Test:8000"], "x-multi": ["1"]},
    ),
    Case(
        "headers/max-type",
        "kong.request.get_headers",
        ("x",),
        (LuaError, "max_headers must be a number"),
    ),
    # get_raw_body: in memory up to client_body_buffer_size (8k), else a file
    Case("raw_body", "kong.request.get_raw_body", (), b"k=v&x=1"),
    Case(
        "raw_body/file",
        "kong.request.get_raw_body",
        (),
        (LuaError, "a nil value"),
        setup=_set(body=b"x" * 9000),
    ),
    Case(
        "raw_body/file-any-size",
        "kong.request.get_raw_body",
        (0,),
        b"x" * 9000,
        setup=_set(body=b"x" * 9000),
    ),
    Case(
        "raw_body/file-too-big",
        "kong.request.get_raw_body",
        (100,),
        LuaError,
        setup=_set(body=b"x" * 9000),
    ),
    Case(
        "raw_body/file-negative",
        "kong.request.get_raw_body",
        (-1,),
        LuaError,
        setup=_set(body=b"x" * 9000),
    ),
    Case(
        "raw_body/file-size-string",
        "kong.request.get_raw_body",
        ("10",),
        (LuaError, "attempt to compare string with number"),
        setup=_set(body=b"x" * 9000),
    ),
    # get_body: form via get_post_args, JSON via cjson (null is cjson.null: present)
    Case("body/form", "kong.request.get_body", (), {"k": "v", "x": "1"}),
    Case("body/form-max", "kong.request.get_body", (FORM, 1), {"k": "v"}),
    # a nil argument ends Lua's unpack(args): the "1" after it is never seen
    Case("body/nil-truncates", "kong.request.get_body", (None, "1"), {"k": "v", "x": "1"}),
    Case(
        "body/form-max-type",
        "kong.request.get_body",
        (FORM, "1"),
        (LuaError, "max_args must be a number"),
    ),
    Case(
        "body/form-in-file",
        "kong.request.get_body",
        (None, None, 0),
        None,
        setup=_set(body=b"k=" + b"v" * 9000),
    ),
    Case(
        "body/json",
        "kong.request.get_body",
        ("application/json; charset=utf-8",),
        {"a": 1, "b": [1, None], "c": None, "d": []},
        setup=_set(body=b'{"a": 1.0, "b": [1, null], "c": null, "d": {}}'),
    ),
    Case(
        "body/json-scalar",
        "kong.request.get_body",
        ("application/json",),
        None,
        setup=_set(body=b"1"),
    ),
    Case(
        "body/json-in-file",
        "kong.request.get_body",
        ("application/json", 100, 0),
        ["x" * 9000],
        setup=_set(body=json.dumps(["x" * 9000]).encode()),
    ),
    Case(
        "body/type-is-a-prefix",
        "kong.request.get_body",
        ("application/jsonx",),
        {"k": 1},
        setup=_set(body=b'{"k": 1}'),
    ),
    Case(
        "body/type-not-stripped",
        "kong.request.get_body",
        (" application/json",),
        None,
        setup=_set(body=b"{}"),
    ),
    Case("body/unsupported", "kong.request.get_body", ("text/plain",), None),
    Case(
        "body/no-type",
        "kong.request.get_body",
        (),
        None,
        setup=lambda st: st.headers.popall("content-type"),
    ),
    Case(
        "start_time",
        "kong.request.get_start_time",
        (),
        1700000000500,
        setup=_set(start_time=1700000000.5009),
    ),
    # get_uri_captures: atc.lua uri_captures is nil unless a group took part
    Case("captures/none", "kong.request.get_uri_captures", (), {"unnamed": [], "named": []}),
    Case(
        "captures/groups",
        "kong.request.get_uri_captures",
        (),
        {"unnamed": {0: "/rx/12", 1: "12"}, "named": {"id": "12"}},
        uri="/rx/12",
    ),
    Case(
        "captures/whole-match-only",
        "kong.request.get_uri_captures",
        (),
        {"unnamed": [], "named": []},
        uri="/plainrx",
    ),
    # get_forwarded_prefix: var.upstream_x_forwarded_prefix ("" before routing; strip_path only)
    Case("fwd_prefix/rewrite", "kong.request.get_forwarded_prefix", (), "", phase="rewrite"),
    Case("fwd_prefix/access", "kong.request.get_forwarded_prefix", (), "/r"),
    Case("fwd_prefix/no-strip", "kong.request.get_forwarded_prefix", (), None, uri="/keep/x"),
    Case("fwd_path", "kong.request.get_forwarded_path", (), "/r/x"),
    Case(
        "fwd_host",
        "kong.request.get_forwarded_host",
        (),
        "kong.test",
        setup=_headers(("X-Forwarded-Host", "evil")),
    ),
    Case(
        "fwd_scheme",
        "kong.request.get_forwarded_scheme",
        (),
        "http",
        setup=_headers(("X-Forwarded-Proto", "https")),
    ),
    Case(
        "fwd_port",
        "kong.request.get_forwarded_port",
        (),
        8000,
        setup=_headers(("X-Forwarded-Port", "1")),
    ),
    Case("scheme", "kong.request.get_scheme", (), "http"),
    # kong.client
    Case("client/ip", "kong.client.get_ip", (), "127.0.0.9"),
    Case(
        "client/fwd_ip",
        "kong.client.get_forwarded_ip",
        (),
        "127.0.0.9",
        setup=_headers(("X-Forwarded-For", "1.1.1.1")),
    ),
    Case("client/port", "kong.client.get_port", (), 5555),
    Case("client/fwd_port", "kong.client.get_forwarded_port", (), 5555),
    Case("client/protocol", "kong.client.get_protocol", (), "http"),
    Case("client/protocol-single", "kong.client.get_protocol", (), "http", uri="/one"),
    Case("client/protocol-no-route", "kong.client.get_protocol", (), None, setup=_set(match=None)),
    Case("client/consumer-none", "kong.client.get_consumer", (), None),
    Case("client/credential-none", "kong.client.get_credential", (), None),
    Case("client/load-by-username", "kong.client.load_consumer", ("bob", True), "bob"),
    Case(
        "client/load-not-uuid",
        "kong.client.load_consumer",
        ("bob",),
        (LuaError, "cannot load a consumer with an id that is not a uuid"),
    ),
    Case(
        "client/load-type",
        "kong.client.load_consumer",
        (7,),
        (LuaError, "consumer_id must be a string"),
    ),
    Case(
        "client/load-unknown-uuid",
        "kong.client.load_consumer",
        ("00000000-0000-4000-8000-000000000000",),
        None,
    ),
    Case("client/authenticate-array", "kong.client.authenticate", ([1],), None),
    Case(
        "client/authenticate-none",
        "kong.client.authenticate",
        (),
        (LuaError, "either credential or consumer"),
    ),
    Case(
        "client/authenticate-type",
        "kong.client.authenticate",
        ("x",),
        (LuaError, "consumer must be a table or nil"),
    ),
    # router / plugin / node / ip
    Case("route", "kong.router.get_route", (), "r"),
    Case("service", "kong.router.get_service", (), "svc"),
    Case("plugin_id", "kong.plugin.get_id", (), "p-1", phase="rewrite"),
    Case("node_id", "kong.node.get_id", (), "node-1"),
    Case("is_trusted", "kong.ip.is_trusted", ("127.0.0.1",), False),
]


def _check(case: Case) -> None:
    st = (
        buffered(state(case.uri, case.phase))
        if case.phase == "response"
        else state(case.uri, case.phase)
    )
    case.setup(st)
    expected = case.expected
    if isinstance(expected, type) and issubclass(expected, Exception):
        with pytest.raises(expected):
            call(st, case.method, *case.args)
        return
    if isinstance(expected, tuple) and isinstance(expected[0], type):
        with pytest.raises(expected[0], match=re.escape(expected[1])):
            call(st, case.method, *case.args)
        return
    got = value(st, case.method, *case.args)
    if case.id == "query/default-100":
        assert len(got) == expected
    elif case.method in ("kong.router.get_route", "kong.router.get_service"):
        assert got["name"] == expected
    elif case.method == "kong.client.load_consumer" and isinstance(expected, str):
        assert got["username"] == expected
    else:
        assert got == expected
        assert type(got) is type(expected)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_request_client_router_values(case: Case) -> None:
    _check(case)


def test_request_getters_see_changes_by_earlier_plugins() -> None:
    """kong/pdk/service/request.lua uses ngx.req.set_header/clear_header/set_uri_args and
    ngx.var.args: kong.request.get_headers/get_header/get_raw_query/get_query then see them;
    get_path_with_query ($request_uri) does not change."""
    st = state()
    call(st, "kong.service.request.set_header", "X-Multi", "only")
    call(st, "kong.service.request.add_header", "X-New", "1")
    call(st, "kong.service.request.clear_header", "Accept")
    headers = value(st, "kong.request.get_headers")
    assert headers["x-multi"] == ["only"] and headers["x-new"] == ["1"] and "accept" not in headers
    assert value(st, "kong.request.get_header", "x-new") == "1"
    call(st, "kong.service.request.set_query", {"z": "1", "a": True})
    assert value(st, "kong.request.get_raw_query") == "a&z=1"
    assert value(st, "kong.request.get_query") == {"a": [], "z": ["1"]}
    call(st, "kong.service.request.clear_query_arg", "z")
    assert value(st, "kong.request.get_query_arg", "z") is None
    call(st, "kong.service.request.set_raw_query", "q=2")
    assert value(st, "kong.request.get_query") == {"q": ["2"]}
    assert value(st, "kong.request.get_path_with_query") == "/r/x?a=1&b&c=&a=2"
    call(st, "kong.service.request.set_method", "DELETE")
    assert value(st, "kong.request.get_method") == "DELETE"


def test_log_timer_reads_the_saved_request_headers() -> None:
    """exposed_api kong.request.get_headers/get_header in the timer: the saved
    ngx.req.get_headers() table; max is ignored, get_header gives the first line."""
    st = state(phase="log")
    st.in_timer = True
    st.headers.add("Cookie", "a=1")
    st.headers.add("Cookie", "b=2")
    assert value(st, "kong.request.get_header", "cookie") == "a=1"
    assert value(st, "kong.request.get_header", "X_Multi") == "1"
    assert value(st, "kong.request.get_headers", "ignored")["x-multi"] == ["1", "2"]
    st.in_timer = False
    assert value(st, "kong.request.get_header", "cookie") == "a=1; b=2"


def test_get_protocol_in_the_timer_works_only_for_single_protocol_routes() -> None:
    st = state("/one", phase="log")
    st.in_timer = True
    assert value(st, "kong.client.get_protocol") == "http"


def test_authenticate_sets_what_get_consumer_and_get_credential_return() -> None:
    st = state()
    bob = DECL.consumers[0].entity()
    answer = call(st, "kong.client.authenticate", bob, {"id": "cred"})
    assert answer == PdkAnswer(None, "plugin.StepCredential")
    assert value(st, "kong.client.get_consumer")["username"] == "bob"
    assert value(st, "kong.client.get_credential") == {"id": "cred"}
    assert value(st, "kong.client.load_consumer", bob["id"])["username"] == "bob"


# --- kong.ctx.shared, kong.nginx, kong.log -------------------------------------------------


def test_ctx_shared_is_a_lua_table() -> None:
    """exposed_api ctx_shared[k] = v: nil deletes; a nil key is a Lua error; values come back
    as lua-MessagePack packs the Lua table they became."""
    st = state()
    call(st, "kong.ctx.shared.set", "k", "v")
    assert value(st, "kong.ctx.shared.get", "k") == "v"
    call(st, "kong.ctx.shared.set", "k", None)
    assert value(st, "kong.ctx.shared.get", "k") is None
    call(st, "kong.ctx.shared.set", 1.0, "one")
    assert value(st, "kong.ctx.shared.get", 1) == "one"
    with pytest.raises(LuaError, match="table index is nil"):
        call(st, "kong.ctx.shared.set", None, 1)
    for stored, read in [
        (2.0, 2),
        (1.5, 1.5),
        (2**60, float(2**60)),
        ({}, []),
        ([1, None, 3], {1: 1, 3: 3}),
        ([1, 2, None], [1, 2]),
        ({1: "a", 2: "b"}, ["a", "b"]),
        ({0: "a", 1: "b"}, {0: "a", 1: "b"}),
        ({"a": None, "b": 1}, {"b": 1}),
        (b"text", "text"),
    ]:
        call(st, "kong.ctx.shared.set", "x", stored)
        got = value(st, "kong.ctx.shared.get", "x")
        assert got == read and type(got) is type(read), stored
    call(st, "kong.ctx.shared.set", "x", b"\xff")
    with pytest.raises(WireEncodingError):
        call(st, "kong.ctx.shared.get", "x")


def test_nginx_ctx_shows_kongs_own_fields_and_plugin_values() -> None:
    st = state()
    assert value(st, "kong.nginx.get_ctx", "KONG_PHASE") == 0x20
    assert value(st, "kong.nginx.get_ctx", "route")["name"] == "r"
    assert value(st, "kong.nginx.get_ctx", "plugin_id") == "p-1"
    call(st, "kong.nginx.set_ctx", "mine", [1, 2])
    assert value(st, "kong.nginx.get_ctx", "mine") == [1, 2]
    call(st, "kong.nginx.set_ctx", "authenticated_consumer", {"id": "c", "username": "u"})
    assert value(st, "kong.client.get_consumer") == {"id": "c", "username": "u"}
    with pytest.raises(LuaError, match="table index is nil"):
        call(st, "kong.nginx.set_ctx", None, 1)
    st.phase, st.in_timer = "log", True
    assert value(st, "kong.nginx.get_ctx", "KONG_PHASE") == 0x2000


def test_req_start_time_is_ngx_req_start_time() -> None:
    st = state()
    st.start_time = 1700000000.1234
    assert value(st, "kong.nginx.req_start_time") == 1700000000 + 123 / 1000
    st.start_time = 1700000000.0004
    got = value(st, "kong.nginx.req_start_time")
    assert got == 1700000000 and type(got) is int  # an integral Lua number packs as an integer


VAR_CASES = [
    ("request_uri", "/r/x?a=1", "/r/x?a=1", _nothing),
    ("request", "/r/x?a=1", "POST /r/x?a=1 HTTP/1.1", _nothing),
    ("args", "/r/x?a=1", "a=1", _nothing),
    ("args", "/r/x?", "", _nothing),
    ("args", "/r/x", None, _nothing),
    ("args", "/r/x?a=1", "z", _set(args="z")),
    ("is_args", "/r/x?a=1", "?", _nothing),
    ("is_args", "/r/x?", "", _nothing),
    ("arg_a", "/r/x?A=%41&a=2", "%41", _nothing),
    ("http_x_multi", "/r", "1, 2", _nothing),
    ("HTTP_X_MULTI", "/r", "1, 2", _nothing),
    ("cookie_b", "/r", "2", _headers(("Cookie", "a=1; b=2"))),
    ("uri", "/r/a%2Fb/..//c?x", "/r/a/c", _nothing),
    ("request_method", "/r", "PATCH", _set(upstream_method="PATCH")),
    ("remote_port", "/r", "5555", _nothing),
    ("server_port", "/r", "8000", _nothing),
    ("upstream_uri", "/r/x", "/base/x", _nothing),
    ("upstream_uri", "/r/x?", "/base/x?", _set(proxied=True)),
    ("upstream_uri", "/r/x?a=1", "/base/x?a=1", _set(proxied=True)),
    ("upstream_scheme", "/r", "http", _nothing),
    ("upstream_host", "/r", "", _nothing),
    ("upstream_host", "/r", "up:81", _set(proxied=True)),
    ("upstream_status", "/r", "201", _set(service_status=201)),
    ("upstream_status", "/r", None, _set(service_status=201, buffering=True)),
    ("no_such_variable", "/r", None, _nothing),
]


@pytest.mark.parametrize(("name", "uri", "expected", "setup"), VAR_CASES)
def test_get_var_is_ngx_var(name: str, uri: str, expected: str | None, setup: Setup) -> None:
    """exposed_api kong.nginx.get_var: ngx.var[name], a string or nil."""
    st = state(uri)
    setup(st)
    assert value(st, "kong.nginx.get_var", name) == expected


def test_get_var_before_routing_and_bad_names() -> None:
    st = state(phase="rewrite")
    assert value(st, "kong.nginx.get_var", "upstream_uri") == ""
    assert value(st, "kong.nginx.get_var", "upstream_scheme") == ""
    assert value(st, "kong.nginx.get_var", 1) is None  # a regex capture variable
    with pytest.raises(LuaError, match="bad variable name"):
        call(st, "kong.nginx.get_var", {"a": 1})


def test_set_serialize_value_and_serialize() -> None:
    """kong/pdk/log.lua: set_serialize_value appends {key, value, mode} to
    ngx.ctx.serialize_values; serialize applies them (dotted keys; set/add/replace) to the
    basic serializer's table, which exposed_api sends as a JSON string."""
    st = buffered(state(phase="access"))
    st.headers["Authorization"] = "Bearer x"
    call(st, "kong.log.set_serialize_value", "request.extra", 1)
    call(st, "kong.log.set_serialize_value", "route.name", "renamed", {"mode": "replace"})
    call(st, "kong.log.set_serialize_value", "request.method", "X", {"mode": "add"})
    call(st, "kong.log.set_serialize_value", "missing.leaf", "x", {"mode": "replace"})
    with pytest.raises(LuaError, match="mode must be 'set', 'add' or 'replace'"):
        call(st, "kong.log.set_serialize_value", "k", 1, {"mode": "merge"})
    with pytest.raises(LuaError, match="key must be a string"):
        call(st, "kong.log.set_serialize_value", 1, 1)
    assert value(st, "kong.nginx.get_ctx", "serialize_values")[0] == {
        "key": "request.extra",
        "value": 1,
        "mode": "set",
    }
    with pytest.raises(LuaError, match=r"cannot be called in access phase \(only in: log\)"):
        call(st, "kong.log.serialize")
    st.phase = "log"
    data = json.loads(value(st, "kong.log.serialize"))
    assert data["request"]["extra"] == 1 and data["request"]["method"] == "POST"
    assert data["route"]["name"] == "renamed" and "missing" not in data
    assert data["request"]["headers"]["authorization"] == "REDACTED"
    assert data["source"] == "upstream" and data["upstream_status"] == 200
    assert data["request"]["querystring"] == {"a": ["1", "2"], "b": True, "c": ""}
    # in the timer, values set there were not in the snapshot Kong serialized
    st.in_timer = True
    call(st, "kong.log.set_serialize_value", "late", 1)
    assert "late" not in json.loads(value(st, "kong.log.serialize"))


# --- codec: cjson, lua-MessagePack, ngx.encode_args ------------------------------------------


def test_cjson_encoding_of_exit_bodies() -> None:
    """kong/pdk/response.lua send: cjson.safe with Kong's globalpatches (precision 16)."""
    st = state()
    body = {"a": None, "b": [1, None, 3], "c": {}, "d": {1: "x", 2: "y"}, "e": 0.1 + 0.2}
    t = call(st, "kong.response.exit", 200, {**body, "f": "a/b"})
    assert t.body == b'{"b":[1,null,3],"c":{},"d":["x","y"],"e":0.3,"f":"a\\/b"}'
    with pytest.raises(LuaError, match="Cannot serialise number"):
        call(st, "kong.response.exit", 200, {"n": float("nan")})


def test_set_query_is_make_ordered_args() -> None:
    """service/request.lua make_ordered_args: each key encoded with ngx.encode_args, pieces
    sorted as strings; NGX_ESCAPE_URI_COMPONENT keeps letters, digits and -._~!*'()."""
    st = state()
    call(
        st,
        "kong.service.request.set_query",
        {"a-b": "2", "a": "1", "f": False, "m": [1.5, True, False, "x y/"], "s": "!*'()~"},
    )
    assert st.raw_query == "&a-b=2&a=1&m=1.5&m&m=x%20y%2F&s=!*'()~"
    with pytest.raises(LuaError, match="arg keys must be strings"):
        call(st, "kong.service.request.set_query", {1: "x"})
    with pytest.raises(LuaError, match="attempt to use table as query arg value"):
        call(st, "kong.service.request.set_query", {"a": [{"b": 1}]})
