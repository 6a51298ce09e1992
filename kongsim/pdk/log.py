"""``kong.log.*`` (``kong/pdk/log.lua``) and Kong's basic log serializer.

``kong.log.serialize`` is an ``exposed_api`` override for external plugins
(``kong/runloop/plugin_servers/plugin.lua``): a JSON string. In the ``log`` timer it reads what
Kong saved when the log phase ran. The log functions write to Python loggers named
``kongsim.plugin.<plugin>`` at Kong's levels (:mod:`kongsim.loglevels`).
"""

from __future__ import annotations

import logging
import time
from typing import Any

from kongsim.config.entities import DEFAULT_WORKSPACE_ID
from kongsim.errors import LuaError
from kongsim.loglevels import ALERT, EMERG, NOTICE
from kongsim.pdk.args import parse_query
from kongsim.pdk.codec import CJSON_NULL, lua_json, lua_tostring, multimap_headers
from kongsim.pdk.context import upstream_uri
from kongsim.pdk.core import REGISTRY, CallContext, Impl, PdkMethod, arg, register
from kongsim.pdk.request import ngx_start_time
from kongsim.request.state import RequestState

LOG_PHASES = ("rewrite", "access", "response", "header_filter", "body_filter", "log")
"""``phases_with_ctx`` of ``kong/pdk/log.lua``, in the order Kong's error message lists them."""

_SERIALIZE_CUT = "_kongsim_serialize_cut"


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
