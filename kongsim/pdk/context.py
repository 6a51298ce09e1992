"""``kong.ctx.shared.*``, ``kong.nginx.*``, ``kong.log.*`` and the serializer.

Most of these are Kong's ``exposed_api`` overrides for external plugins
(``kong/runloop/plugin_servers/plugin.lua``): ``kong.ctx.shared.get/set``,
``kong.nginx.get_ctx/set_ctx`` (a key/value view of ``ngx.ctx``), ``kong.nginx.get_var``
(``ngx.var[name]``), ``kong.nginx.req_start_time``, ``kong.nginx.get_tls1_version_str`` and
``kong.log.serialize`` (a JSON string). In the ``log`` timer they read the data Kong saved
when the log phase ran.
"""

from __future__ import annotations

import logging
import math
import time
from typing import Any

from kongsim.entities import DEFAULT_WORKSPACE_ID
from kongsim.errors import LuaError
from kongsim.loglevels import ALERT, EMERG, NOTICE
from kongsim.pdk.codec import (
    CJSON_NULL,
    lua_json,
    lua_key,
    lua_tostring,
    multimap_headers,
    parse_query,
)
from kongsim.pdk.core import REGISTRY, CallContext, Impl, PdkMethod, arg, register
from kongsim.pdk.request import http_variable, ngx_start_time
from kongsim.state import RequestState
from kongsim.uri import ngx_normalize

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

LOG_PHASES = ("rewrite", "access", "response", "header_filter", "body_filter", "log")
"""``phases_with_ctx`` of ``kong/pdk/log.lua``, in the order Kong's error message lists them."""

_SERIALIZE_CUT = "_kongsim_serialize_cut"


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
        from kongsim.upstream import upstream_host_header  # noqa: PLC0415 - import cycle

        return upstream_host_header(st, st.match)
    return st.upstream_host or st.match.upstream_host or ""


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
    args = nginx_args(st)
    method = st.upstream_method or st.method
    values: dict[str, str | None] = {
        "request_uri": st.request_uri,
        "request": f"{st.method} {st.request_uri} HTTP/{st.http_version:.1f}",
        "scheme": st.scheme,
        "https": "on" if st.scheme == "https" else "",
        "host": st.host,
        "hostname": c.env.hostname,
        "server_name": "kong",
        "uri": ngx_normalize(st.raw_path),
        "document_uri": ngx_normalize(st.raw_path),
        "args": args,
        "query_string": args,
        "is_args": "?" if args else "",
        "request_method": method,
        "content_type": http_variable(st.headers, "content_type"),
        "content_length": http_variable(st.headers, "content_length"),
        "remote_addr": st.client_ip,
        "remote_port": str(st.client_port),
        "realip_remote_addr": st.client_ip,
        "realip_remote_port": str(st.client_port),
        "server_port": str(st.server_port),
        "server_protocol": f"HTTP/{st.http_version:.1f}",
        "request_id": st.request_id,
        "kong_request_id": st.request_id,
        "upstream_uri": upstream_uri(st),
        "upstream_host": _upstream_host(st),
        "upstream_scheme": (st.service.protocol if st.service else "") if st.match else "",
        "upstream_x_forwarded_prefix": (
            "" if st.match is None else (st.match.prefix if st.match.prefix != "/" else None)
        ),
        "upstream_status": (
            str(st.service_status) if st.service_status and not st.buffering else None
        ),
        "kong_proxy_mode": "http",
        "msec": f"{time.time():.3f}",
    }
    return values.get(name)


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


# --- kong.log ------------------------------------------------------------------------------------

# Kong's levels (kongsim.loglevels): what Kong's default `notice` hides is hidden here too.
_LOG_LEVELS = {
    "kong.log": NOTICE,  # kong.log(...) is kong.log.notice(...)
    "kong.log.debug": logging.DEBUG,
    "kong.log.inspect": logging.DEBUG,
    "kong.log.info": logging.INFO,
    "kong.log.notice": NOTICE,
    "kong.log.warn": logging.WARNING,
    "kong.log.deprecation": logging.WARNING,
    "kong.log.err": logging.ERROR,
    "kong.log.crit": logging.CRITICAL,
    "kong.log.alert": ALERT,
    "kong.log.emerg": EMERG,
}


def _log_piece(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, dict | list):
        return lua_json(value)
    return lua_tostring(value)


def _make_log(level: int, method: str) -> Impl:
    def impl(c: CallContext, a: list[Any]) -> Any:
        name = c.plugin.name if c.plugin else "kong"
        logging.getLogger(f"kongsim.plugin.{name}").log(
            level, "[%s] %s", method.rsplit(".", 1)[-1], "".join(_log_piece(x) for x in a)
        )
        return None

    return impl


for _method, _level in _LOG_LEVELS.items():
    REGISTRY[_method] = PdkMethod(_make_log(_level, _method), None, True)


def _serialize_ops(st: RequestState) -> list[dict[str, Any]]:
    ops = st.nginx_ctx.get("serialize_values")
    return ops if isinstance(ops, list) else []


def _timer_cut(st: RequestState) -> int:
    """How many ``set_serialize_value`` calls the log-phase snapshot saw: Kong serializes when
    the log phase runs, before the timer, so calls made in the timer do not show."""
    cut = getattr(st, _SERIALIZE_CUT, None)
    if cut is None:
        cut = len(_serialize_ops(st))
        setattr(st, _SERIALIZE_CUT, cut)
    return int(cut)


@register("kong.log.set_serialize_value", LOG_PHASES, timer_ok=True)
def _log_set_serialize(c: CallContext, a: list[Any]) -> Any:
    """Appends ``{key, value, mode}`` to ``ngx.ctx.serialize_values``."""
    key, value, options = arg(a, 0), arg(a, 1), arg(a, 2)
    if not isinstance(key, str):
        raise LuaError("key must be a string")
    mode = (options.get("mode") if isinstance(options, dict) else None) or "set"
    if mode not in ("set", "add", "replace"):
        raise LuaError("mode must be 'set', 'add' or 'replace'")
    if c.st.in_timer:
        _timer_cut(c.st)
    ops = _serialize_ops(c.st)
    ops.append({"key": key, "value": value, "mode": mode})
    c.st.nginx_ctx["serialize_values"] = ops


@register("kong.log.serialize", ("log",), timer_ok=True)
def _log_serialize(c: CallContext, _a: list[Any]) -> Any:
    """``cjson.encode(saved.serialize_data)``: a JSON string."""
    ops = _serialize_ops(c.st)
    if c.st.in_timer:
        ops = ops[: _timer_cut(c.st)]
    return lua_json(serialize(c.st, ops))


def _valid_value(value: Any) -> bool:
    if value is None or value is CJSON_NULL or isinstance(value, str | bytes | bool | int | float):
        return True
    if isinstance(value, dict):
        return all(isinstance(k, str | int | float) and _valid_value(v) for k, v in value.items())
    if isinstance(value, list):
        return all(_valid_value(v) for v in value)
    return False


def _edit_result(root: dict[str, Any], ops: list[dict[str, Any]]) -> dict[str, Any]:
    """``edit_result`` of ``kong/pdk/log.lua``: dotted keys; modes set, add and replace."""
    for op in ops:
        key, value, mode = op["key"], op["value"], op["mode"]
        if not _valid_value(value):
            raise LuaError(
                "value must be nil, a number, string, boolean or a non-self-referencial "
                "table containing numbers, string and booleans"
            )
        node: Any = root
        parts = key.split(".")
        if parts[0] == "" and len(parts) > 1:  # a leading dot is part of the first subkey
            parts = ["." + parts[1], *parts[2:]]
        for sub in parts[:-1]:
            if node.get(sub) is None:
                if mode == "replace":
                    node = None
                    break
                node[sub] = {}
            elif not isinstance(node[sub], dict):
                raise LuaError(
                    f"The key '{key}' could not be used as a serialize value. "
                    f"Subkey '{sub}' is not a table. It's {lua_tostring(node[sub])}"
                )
            node = node[sub]
        if isinstance(node, dict):
            last = parts[-1]
            existing = node.get(last)
            if (
                mode == "set"
                or (mode == "add" and existing is None)
                or (mode == "replace" and existing is not None)
            ):
                node[last] = value
    return root


_SOURCE_NAMES = {"error": "kong", "exit": "kong", "service": "upstream"}
"""``constants.RESPONSE_SOURCE.NAMES``."""


def _request_length(st: RequestState) -> int:
    line = len(f"{st.method} {st.request_uri} HTTP/{st.http_version:.1f}\r\n")
    return line + sum(len(k) + len(v) + 4 for k, v in st.headers.items()) + 2 + len(st.body)


def serialize(st: RequestState, ops: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """Kong's basic log serializer (``kong.log.serialize()``, http subsystem): the fields
    kongsim knows. NOT emulated: ``tries``, ``request.tls``, ``response.size``; ``request.size``
    is computed from the parsed request."""
    now = st.response_sent_at or time.time() * 1000
    start = ngx_start_time(st) * 1000
    waiting = (
        (st.upstream_headers_at - st.upstream_start)
        if st.upstream_headers_at and st.upstream_start
        else None
    )
    proxy_latency = (st.upstream_headers_at - start) if st.upstream_headers_at else None
    request_headers: dict[str, Any] = {
        k: v[0] if len(v) == 1 else v for k, v in multimap_headers(st.headers).items()
    }
    for secret in ("authorization", "proxy-authorization"):
        if secret in request_headers:
            request_headers[secret] = "REDACTED"
    source = "error" if st.unexpected else "exit" if st.exited else "service" if st.proxied else ""
    credential = st.credential
    upstream = upstream_uri(st)
    root: dict[str, Any] = {
        "request": {
            "id": st.request_id,
            "uri": st.request_uri,
            "url": f"{st.scheme}://{st.host}:{st.server_port}{st.request_uri}",
            "querystring": parse_query(st.raw_query),
            "method": st.upstream_method or st.method,
            "headers": request_headers,
            "size": _request_length(st),
        },
        "upstream_uri": upstream,
        "upstream_status": (
            st.service_status
            if st.buffering and st.service_status
            else str(st.service_status)
            if st.service_status
            else ""
        ),
        "response": {
            "status": st.response_status or 0,
            "headers": {
                k: v[0] if len(v) == 1 else v
                for k, v in multimap_headers(st.response_headers).items()
            },
        },
        "latencies": {
            "kong": int(proxy_latency if proxy_latency is not None else now - start),
            "proxy": int(waiting) if waiting is not None else -1,
            "request": int(now - start),
            "receive": 0,
        },
        "authenticated_entity": (
            {"id": credential.get("id"), "consumer_id": credential.get("consumer_id")}
            if isinstance(credential, dict)
            else None
        ),
        "route": st.route.entity() if st.route else None,
        "service": st.service.entity() if st.service else None,
        "consumer": st.consumer,
        "client_ip": st.client_ip,
        "started_at": start,
        "source": _SOURCE_NAMES.get(source, "kong"),
        "workspace": DEFAULT_WORKSPACE_ID,
        "workspace_name": "default",
    }
    return _edit_result(root, ops if ops is not None else _serialize_ops(st))
