"""``kong.ctx.shared.*`` and ``kong.nginx.*`` (``kong.log.*`` is in :mod:`kongsim.pdk.log`).

Most of these are Kong's ``exposed_api`` overrides for external plugins
(``kong/runloop/plugin_servers/plugin.lua``): ``kong.ctx.shared.get/set``,
``kong.nginx.get_ctx/set_ctx`` (a key/value view of ``ngx.ctx``), ``kong.nginx.get_var``
(``ngx.var[name]``), ``kong.nginx.req_start_time`` and ``kong.nginx.get_tls1_version_str``. In
the ``log`` timer they read the data Kong saved when the log phase ran.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

from kongsim.config.entities import DEFAULT_WORKSPACE_ID
from kongsim.errors import LuaError
from kongsim.pdk.codec import (
    lua_key,
)
from kongsim.pdk.core import CallContext, arg, register
from kongsim.pdk.request import http_variable, ngx_start_time
from kongsim.request.state import RequestState
from kongsim.request.upstream import upstream_host_header
from kongsim.request.uri import ngx_normalize

PHASE_BITS = {
    "certificate": 0x2,
    "rewrite": 0x10,
    "access": 0x20,
    "balancer": 0x40,
    "response": 0x80,
    "header_filter": 0x200,
    "body_filter": 0x400,
    "log": 0x2000,
}
"""``kong/pdk/private/phases.lua``: the value of ``ngx.ctx.KONG_PHASE``."""


def _table_key(key: Any) -> Any:
    """A key used to index a Lua table: ``t[nil] = v`` and ``t[0/0] = v`` are errors."""
    if key is None:
        raise LuaError("table index is nil")
    if isinstance(key, float) and math.isnan(key):
        raise LuaError("table index is NaN")
    return lua_key(key)


# --- kong.ctx.shared (exposed_api; the per-request table, also in the log timer) -------------


@register("kong.ctx.shared.get", None, timer_ok=True)
def _ctx_get(c: CallContext, a: list[Any]) -> Any:
    key = arg(a, 0)
    return None if key is None else c.st.ctx_shared.get(lua_key(key))


@register("kong.ctx.shared.set", None, timer_ok=True)
def _ctx_set(c: CallContext, a: list[Any]) -> Any:
    key, value = _table_key(arg(a, 0)), arg(a, 1)
    if value is None:
        c.st.ctx_shared.pop(key, None)
    else:
        c.st.ctx_shared[key] = value


# --- kong.nginx (exposed_api overrides and kong/pdk/nginx.lua) --------------------------------


def kong_ctx_fields(c: CallContext) -> dict[str, Any]:
    """The fields of Kong's own ``ngx.ctx`` that kongsim can show to ``kong.nginx.get_ctx``."""
    st = c.st
    fields: dict[str, Any] = {
        "KONG_PHASE": PHASE_BITS.get(st.phase),
        "KONG_PROCESSING_START": ngx_start_time(st) * 1000,
        "plugin_id": c.plugin.id if c.plugin else None,
        "route": st.route.entity() if st.route else None,
        "service": st.service.entity() if st.service else None,
        "authenticated_consumer": st.consumer,
        "authenticated_credential": st.credential,
        "workspace": DEFAULT_WORKSPACE_ID,
        "buffered_proxying": True if st.buffering else None,
        "KONG_PROXIED": True if st.proxied else None,
        "KONG_EXITED": True if st.exited else None,
        "KONG_UNEXPECTED": True if st.unexpected else None,
    }
    if st.buffering and st.service_status is not None:
        # kong/init.lua Kong.response: ctx.buffered_status / ctx.buffered_headers = the
        # subrequest's res.status / res.header (names as the upstream sent them, a repeated
        # header as an array); the body is left out here (ctx.buffered_body)
        fields["buffered_status"] = st.service_status
        fields["buffered_headers"] = _res_header_table(st.service_headers)
    return fields


def _res_header_table(headers: Any) -> dict[str, Any]:
    """``ngx.location.capture``'s ``res.header``: one key per name (its first spelling), a
    string, or an array for a repeated header."""
    table: dict[str, Any] = {}
    spelling: dict[str, str] = {}
    for name, value in (headers or {}).items():
        key = spelling.setdefault(name.lower(), name)
        if key not in table:
            table[key] = value
        elif isinstance(table[key], list):
            table[key].append(value)
        else:
            table[key] = [table[key], value]
    return table


@register("kong.nginx.get_ctx", None, timer_ok=True)
def _nginx_get_ctx(c: CallContext, a: list[Any]) -> Any:
    """``ngx.ctx[k]`` (the saved copy in the log timer). Values a plugin set win; of Kong's own
    fields only those in :func:`kong_ctx_fields` are emulated."""
    key = arg(a, 0)
    if key is None:
        return None
    key = lua_key(key)
    if key in c.st.nginx_ctx:
        return c.st.nginx_ctx[key]
    return kong_ctx_fields(c).get(key) if isinstance(key, str) else None


@register("kong.nginx.set_ctx", None, timer_ok=True)
def _nginx_set_ctx(c: CallContext, a: list[Any]) -> Any:
    """``ngx.ctx[k] = v``; ``authenticated_consumer``/``_credential`` are what
    ``kong.client.get_consumer``/``get_credential`` read."""
    key, value = _table_key(arg(a, 0)), arg(a, 1)
    c.st.nginx_ctx[key] = value
    if key == "authenticated_consumer":
        c.st.consumer = value
    elif key == "authenticated_credential":
        c.st.credential = value


@register("kong.nginx.req_start_time", None, timer_ok=True)
def _nginx_start_time(c: CallContext, _a: list[Any]) -> Any:
    """``ngx.req.start_time()``: seconds, millisecond resolution (saved in the log timer)."""
    return ngx_start_time(c.st)


@register("kong.nginx.get_subsystem", None, timer_ok=True)
def _nginx_subsystem(_c: CallContext, _a: list[Any]) -> Any:
    return "http"


@register("kong.nginx.get_tls1_version_str", None, timer_ok=True)
def _nginx_tls(_c: CallContext, _a: list[Any]) -> Any:
    """``ngx.ssl.get_tls1_version_str``: nil on a plain-HTTP connection (kongsim has no TLS)."""
    return None


def _cookie(headers: Any, name: str) -> str | None:
    for line in headers.getall("cookie", []):
        for item in line.split(";"):
            k, sep, v = item.strip().partition("=")
            if sep and k.lower() == name:
                return str(v)
    return None


def _arg(raw: str, name: str) -> str | None:
    """nginx ``$arg_<name>``: the raw (undecoded) value of the first ``name=`` argument."""
    for part in raw.split("&"):
        k, sep, v = part.partition("=")
        if sep and k.lower() == name:
            return v
    return None


def nginx_args(st: RequestState) -> str | None:
    """``$args``: nil without ``?`` in the request, else the (possibly changed) query."""
    if st.args is not None:
        return st.args
    return st.raw_query if "?" in st.request_uri else None


def upstream_uri(st: RequestState) -> str:
    """``$upstream_uri``: ``""`` until routing (nginx ``set``); the router's escaped path in
    ``access.before`` (or ``kong.service.request.set_path``'s); ``access.after`` appends
    ``?args`` when the request had a ``?``."""
    if st.match is None:
        return ""
    path = st.upstream_path if st.upstream_path is not None else st.match.upstream_path
    if st.proxied and (st.request_uri.endswith("?") or nginx_args(st)):
        path += "?" + (nginx_args(st) or "")
    return path


def _upstream_host(st: RequestState) -> str:
    if st.match is None:
        return ""
    if st.proxied and st.match.service is not None:
        return upstream_host_header(st, st.match)
    return st.upstream_host or st.match.upstream_host or ""


def _protocol(st: RequestState) -> str:
    return f"HTTP/{st.http_version:.1f}"


def _forwarded_prefix(st: RequestState) -> str | None:
    if st.match is None:
        return ""
    return st.match.prefix if st.match.prefix != "/" else None


def _upstream_status(st: RequestState) -> str | None:
    return str(st.service_status) if st.service_status and not st.buffering else None


#: ``ngx.var`` names kongsim knows, each computed only when asked for.
_VARIABLES: dict[str, Callable[[CallContext, RequestState], str | None]] = {
    "request_uri": lambda c, st: st.request_uri,
    "request": lambda c, st: f"{st.method} {st.request_uri} {_protocol(st)}",
    "scheme": lambda c, st: st.scheme,
    "https": lambda c, st: "on" if st.scheme == "https" else "",
    "host": lambda c, st: st.host,
    "hostname": lambda c, st: c.env.hostname,
    "server_name": lambda c, st: "kong",
    "uri": lambda c, st: ngx_normalize(st.raw_path),
    "document_uri": lambda c, st: ngx_normalize(st.raw_path),
    "args": lambda c, st: nginx_args(st),
    "query_string": lambda c, st: nginx_args(st),
    "is_args": lambda c, st: "?" if nginx_args(st) else "",
    "request_method": lambda c, st: st.upstream_method or st.method,
    "content_type": lambda c, st: http_variable(st.headers, "content_type"),
    "content_length": lambda c, st: http_variable(st.headers, "content_length"),
    "remote_addr": lambda c, st: st.client_ip,
    "remote_port": lambda c, st: str(st.client_port),
    "realip_remote_addr": lambda c, st: st.client_ip,
    "realip_remote_port": lambda c, st: str(st.client_port),
    "server_port": lambda c, st: str(st.server_port),
    "server_protocol": lambda c, st: _protocol(st),
    "request_id": lambda c, st: st.request_id,
    "kong_request_id": lambda c, st: st.request_id,
    "upstream_uri": lambda c, st: upstream_uri(st),
    "upstream_host": lambda c, st: _upstream_host(st),
    "upstream_scheme": lambda c, st: (
        (st.service.protocol if st.service else "") if st.match else ""
    ),
    "upstream_x_forwarded_prefix": lambda c, st: _forwarded_prefix(st),
    "upstream_status": lambda c, st: _upstream_status(st),
    "kong_proxy_mode": lambda c, st: "http",
    "msec": lambda c, st: f"{time.time():.3f}",
}


def nginx_variable(c: CallContext, name: str) -> str | None:
    """``ngx.var[name]``: always a string or nil (an unknown variable is nil)."""
    st = c.st
    name = name.lower()
    if name.startswith("http_"):
        return http_variable(st.headers, name[5:])
    if name.startswith("cookie_"):
        return _cookie(st.headers, name[7:])
    if name.startswith("arg_"):
        return _arg(nginx_args(st) or "", name[4:])
    compute = _VARIABLES.get(name)
    return compute(c, st) if compute is not None else None


@register("kong.nginx.get_var", None, timer_ok=False)
def _nginx_get_var(c: CallContext, a: list[Any]) -> Any:
    """``ngx.var[name]``: a number reads a regex capture (none here); not a string: error."""
    name = arg(a, 0)
    if isinstance(name, int | float) and not isinstance(name, bool):
        return None
    if isinstance(name, bytes):
        name = name.decode("latin-1")
    if not isinstance(name, str):
        raise LuaError("bad variable name")
    return nginx_variable(c, name)
