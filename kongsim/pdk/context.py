"""``kong.ctx.shared.*``, ``kong.nginx.*`` (a few variables), ``kong.log.*`` and the serializer."""

from __future__ import annotations

import logging
import time
from typing import Any

from kongsim.errors import LuaError
from kongsim.pdk.codec import lua_json, lua_tostring, multimap_headers, parse_query
from kongsim.pdk.core import REGISTRY, REQUEST, CallContext, Impl, PdkMethod, arg, register
from kongsim.state import RequestState
from kongsim.uri import normalize, printable


@register("kong.ctx.shared.get", None, timer_ok=True)
def _ctx_get(c: CallContext, a: list[Any]) -> Any:
    return c.st.ctx_shared.get(arg(a, 0))


@register("kong.ctx.shared.set", None, timer_ok=True)
def _ctx_set(c: CallContext, a: list[Any]) -> Any:
    key, value = arg(a, 0), arg(a, 1)
    if value is None:
        c.st.ctx_shared.pop(key, None)
    else:
        c.st.ctx_shared[key] = value


@register("kong.nginx.get_ctx", None, timer_ok=True)
def _nginx_get_ctx(c: CallContext, a: list[Any]) -> Any:
    return c.st.nginx_ctx.get(arg(a, 0))


@register("kong.nginx.set_ctx", None, timer_ok=True)
def _nginx_set_ctx(c: CallContext, a: list[Any]) -> Any:
    c.st.nginx_ctx[arg(a, 0)] = arg(a, 1)


@register("kong.nginx.req_start_time", None, timer_ok=True)
def _nginx_start_time(c: CallContext, _a: list[Any]) -> Any:
    return round(c.st.start_time, 3)


@register("kong.nginx.get_subsystem", None, timer_ok=True)
def _nginx_subsystem(_c: CallContext, _a: list[Any]) -> Any:
    return "http"


@register("kong.nginx.get_tls1_version_str", None, timer_ok=True)
def _nginx_tls(_c: CallContext, _a: list[Any]) -> Any:
    return None


@register("kong.nginx.get_var", None, timer_ok=False)
def _nginx_get_var(c: CallContext, a: list[Any]) -> Any:
    name = arg(a, 0)
    st = c.st
    if not isinstance(name, str):
        raise LuaError("bad variable name")
    if name.startswith("http_"):
        return st.headers.get(name[5:].replace("_", "-"))
    values: dict[str, Any] = {
        "request_uri": st.request_uri,
        "request": f"{st.method} {st.request_uri} HTTP/{st.http_version:.1f}",
        "scheme": st.scheme,
        "host": st.host,
        "uri": printable(normalize(st.raw_path, True)),
        "args": st.raw_query or None,
        "is_args": "?" if "?" in st.request_uri else "",
        "request_method": st.method,
        "remote_addr": st.client_ip,
        "remote_port": str(st.client_port),
        "realip_remote_addr": st.client_ip,
        "server_port": str(st.server_port),
        "server_protocol": f"HTTP/{st.http_version:g}",
        "request_id": st.request_id,
        "kong_request_id": st.request_id,
        "upstream_uri": st.upstream_path,
        "upstream_host": st.upstream_host,
        "upstream_scheme": st.service.protocol if st.service else None,
        "upstream_status": str(st.service_status) if st.service_status else None,
    }
    return values.get(name)


# --- kong.log ------------------------------------------------------------------------------------

_LOG_LEVELS = {
    "kong.log": logging.INFO,
    "kong.log.debug": logging.DEBUG,
    "kong.log.inspect": logging.DEBUG,
    "kong.log.info": logging.INFO,
    "kong.log.notice": logging.INFO,
    "kong.log.warn": logging.WARNING,
    "kong.log.deprecation": logging.WARNING,
    "kong.log.err": logging.ERROR,
    "kong.log.crit": logging.CRITICAL,
    "kong.log.alert": logging.CRITICAL,
    "kong.log.emerg": logging.CRITICAL,
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


@register("kong.log.set_serialize_value", REQUEST, timer_ok=True)
def _log_set_serialize(c: CallContext, a: list[Any]) -> Any:
    key = arg(a, 0)
    if not isinstance(key, str):
        raise LuaError("key must be a string")
    c.st.serialize_values[key] = arg(a, 1)


@register("kong.log.serialize", ("log",), timer_ok=True)
def _log_serialize(c: CallContext, _a: list[Any]) -> Any:
    return lua_json(serialize(c.st))


def serialize(st: RequestState) -> dict[str, Any]:
    """A subset of Kong's basic log serializer (``kong.log.serialize()``)."""
    now = st.response_sent_at or time.time() * 1000
    upstream = (
        (st.upstream_headers_at - st.upstream_start)
        if st.upstream_headers_at and st.upstream_start
        else -1
    )
    out: dict[str, Any] = {
        "request": {
            "method": st.method,
            "uri": st.request_uri,
            "url": f"{st.scheme}://{st.host}:{st.server_port}{st.request_uri}",
            "headers": {
                k: v[0] if len(v) == 1 else v for k, v in multimap_headers(st.headers, 1000).items()
            },
            "querystring": parse_query(st.raw_query),
            "size": len(st.body),
            "id": st.request_id,
        },
        "response": {
            "status": st.response_status,
            "headers": {
                k: v[0] if len(v) == 1 else v
                for k, v in multimap_headers(st.response_headers, 1000).items()
            },
        },
        "route": st.route.entity() if st.route else None,
        "service": st.service.entity() if st.service else None,
        "consumer": st.consumer,
        "client_ip": st.client_ip,
        "started_at": st.start_ms,
        "upstream_uri": st.upstream_path,
        "source": "exit" if st.exited else "service" if st.proxied else "error",
        "latencies": {
            "request": int(now - st.start_ms),
            "proxy": int(upstream),
            "kong": int(now - st.start_ms - max(upstream, 0)),
        },
    }
    out.update(st.serialize_values)
    return {k: v for k, v in out.items() if v is not None}
