"""``kong.service.request.*`` (changes to the upstream request) and ``kong.service.response.*``."""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote_plus

from kongsim.errors import LuaError
from kongsim.pdk.codec import encode_query, lua_json, multimap_headers, parse_body
from kongsim.pdk.core import (
    ACCESS_AND_REWRITE,
    ACCESS_REWRITE_BALANCER,
    SERVICE_RESPONSE,
    TIMER_ERROR,
    CallContext,
    arg,
    bytes_arg,
    first_header,
    max_arg,
    name_arg,
    register,
)
from kongsim.pdk.responses import header_values
from kongsim.state import RequestState

KNOWN_METHODS = frozenset(
    {
        "GET",
        "HEAD",
        "PUT",
        "POST",
        "DELETE",
        "OPTIONS",
        "MKCOL",
        "COPY",
        "MOVE",
        "PROPFIND",
        "PROPPATCH",
        "LOCK",
        "UNLOCK",
        "PATCH",
        "TRACE",
    }
)


def _svc_header_op(c: CallContext, a: list[Any], op: str) -> None:
    name = arg(a, 0)
    if not isinstance(name, str):
        raise LuaError("header name must be a string")
    if op == "clear":
        values: list[str] = []
    else:
        value = arg(a, 1)
        if isinstance(value, list | dict) or value is None:
            kind = "nil" if value is None else "table"
            raise LuaError(
                f'invalid header value for "{name}": got {kind}, expected string, number or boolean'
            )
        values = header_values(name, value)
    if name.lower() == "host":
        c.st.upstream_host = None if op == "clear" else values[-1]
        return
    c.st.upstream_header_ops.append((op, name, values))


@register("kong.service.request.set_header", ACCESS_REWRITE_BALANCER, timer_ok=False)
def _svc_set_header(c: CallContext, a: list[Any]) -> Any:
    _svc_header_op(c, a, "set")


@register("kong.service.request.add_header", ACCESS_AND_REWRITE, timer_ok=False)
def _svc_add_header(c: CallContext, a: list[Any]) -> Any:
    _svc_header_op(c, a, "add")


@register("kong.service.request.clear_header", ACCESS_AND_REWRITE, timer_ok=False)
def _svc_clear_header(c: CallContext, a: list[Any]) -> Any:
    _svc_header_op(c, a, "clear")


@register("kong.service.request.set_headers", ACCESS_AND_REWRITE, timer_ok=False)
def _svc_set_headers(c: CallContext, a: list[Any]) -> Any:
    headers = arg(a, 0)
    if not isinstance(headers, dict):
        raise LuaError("headers must be a table")
    for name, value in headers.items():
        values = value if isinstance(value, list) else [value]
        _svc_header_op(c, [name, values[0]], "set")
        for v in values[1:]:
            _svc_header_op(c, [name, v], "add")


@register("kong.service.request.set_method", ACCESS_AND_REWRITE, timer_ok=False)
def _svc_set_method(c: CallContext, a: list[Any]) -> Any:
    method = arg(a, 0)
    if not isinstance(method, str):
        raise LuaError("method must be a string")
    if method not in KNOWN_METHODS:
        raise LuaError(f"invalid method: {method}")
    c.st.upstream_method = method


@register("kong.service.request.set_path", ACCESS_REWRITE_BALANCER, timer_ok=False)
def _svc_set_path(c: CallContext, a: list[Any]) -> Any:
    path = arg(a, 0)
    if not isinstance(path, str):
        raise LuaError("path must be a string")
    if not path.startswith("/"):
        raise LuaError("path must start with /")
    c.st.upstream_path = path


@register("kong.service.request.set_raw_query", ACCESS_AND_REWRITE, timer_ok=False)
def _svc_set_raw_query(c: CallContext, a: list[Any]) -> Any:
    query = arg(a, 0)
    if not isinstance(query, str):
        raise LuaError("query must be a string")
    c.st.upstream_query = query


@register("kong.service.request.set_query", ACCESS_AND_REWRITE, timer_ok=False)
def _svc_set_query(c: CallContext, a: list[Any]) -> Any:
    args = arg(a, 0)
    if not isinstance(args, dict):
        raise LuaError("args must be a table")
    c.st.upstream_query = encode_query(args)


@register("kong.service.request.clear_query_arg", ACCESS_AND_REWRITE, timer_ok=False)
def _svc_clear_query_arg(c: CallContext, a: list[Any]) -> Any:
    name = name_arg(a, "query argument name")
    clear_query_arg(c.st, name)


def clear_query_arg(st: RequestState, name: str) -> None:
    raw = st.upstream_query if st.upstream_query is not None else st.raw_query
    kept = [p for p in raw.split("&") if p and unquote_plus(p.split("=", 1)[0]) != name]
    st.upstream_query = "&".join(kept)


@register("kong.service.request.set_raw_body", ACCESS_REWRITE_BALANCER, timer_ok=False)
def _svc_set_raw_body(c: CallContext, a: list[Any]) -> Any:
    c.st.upstream_body = bytes_arg(arg(a, 0), "body")


@register("kong.service.request.set_body", ACCESS_AND_REWRITE, timer_ok=False)
def _svc_set_body(c: CallContext, a: list[Any]) -> Any:
    args, mime = arg(a, 0), arg(a, 1)
    if not isinstance(args, dict):
        raise LuaError("args must be a table")
    ctype = mime if isinstance(mime, str) else c.st.headers.get("content-type") or ""
    ctype = ctype.split(";", 1)[0].strip().lower()
    if ctype == "application/json":
        c.st.upstream_body = lua_json(args).encode("utf-8")
    elif ctype in ("application/x-www-form-urlencoded", ""):
        c.st.upstream_body = encode_query(args).encode("utf-8")
        ctype = ctype or "application/x-www-form-urlencoded"
    else:
        raise LuaError(f"unsupported content type '{ctype}'")
    c.st.upstream_header_ops.append(("set", "Content-Type", [ctype]))


@register("kong.service.request.enable_buffering", ACCESS_REWRITE_BALANCER, timer_ok=False)
def _svc_enable_buffering(c: CallContext, _a: list[Any]) -> Any:
    c.st.buffering = True


# --- kong.service.response ----------------------------------------------------------------------


@register("kong.service.response.get_status", SERVICE_RESPONSE, timer_ok=True)
def _svc_resp_status(c: CallContext, _a: list[Any]) -> Any:
    if c.st.in_timer and not c.st.buffering:
        raise LuaError(TIMER_ERROR)
    return c.st.service_status


@register(
    "kong.service.response.get_headers",
    SERVICE_RESPONSE,
    timer_ok=True,
    step="plugin.StepMultiMap",
    fix="mmap",
)
def _svc_resp_headers(c: CallContext, a: list[Any]) -> Any:
    if c.st.in_timer and not c.st.buffering:
        raise LuaError(TIMER_ERROR)
    limit = max_arg(a, "max_headers")
    return (
        multimap_headers(c.st.service_headers, limit) if c.st.service_headers is not None else None
    )


@register("kong.service.response.get_header", SERVICE_RESPONSE, timer_ok=True)
def _svc_resp_header(c: CallContext, a: list[Any]) -> Any:
    if c.st.in_timer and not c.st.buffering:
        raise LuaError(TIMER_ERROR)
    return first_header(c.st.service_headers, name_arg(a))


_NOT_BUFFERED = (
    "service body is only available with buffered proxying "
    "(see: kong.service.request.enable_buffering function)"
)


@register("kong.service.response.get_raw_body", SERVICE_RESPONSE, timer_ok=True, fix="raw")
def _svc_resp_raw_body(c: CallContext, _a: list[Any]) -> Any:
    if not c.st.buffering:
        raise LuaError(_NOT_BUFFERED)
    return c.st.service_body or b""


@register("kong.service.response.get_body", SERVICE_RESPONSE, timer_ok=True)
def _svc_resp_body(c: CallContext, a: list[Any]) -> Any:
    if not c.st.buffering:
        raise LuaError(_NOT_BUFFERED)
    mimetype = arg(a, 0)
    headers = c.st.service_headers
    ctype = (
        mimetype
        if isinstance(mimetype, str)
        else (headers.get("content-type") if headers else None)
    )
    return parse_body(c.st.service_body or b"", ctype)
