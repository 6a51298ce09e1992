"""``kong.request`` (``kong/pdk/request.lua``); ``kong.client`` and the rest are in
:mod:`kongsim.pdk.client`.

Each function follows the Kong 3.9.3 source named in its docstring (``kong/pdk/<module>.lua``,
or ``kong/runloop/plugin_servers/plugin.lua`` ``exposed_api`` where Kong overrides it for
external plugins) and the nginx/lua-nginx-module behaviour underneath.

Trusted IPs are not emulated: every client is untrusted (Kong's default ``trusted_ips`` is
empty), so the ``get_forwarded_*`` functions return the request's own values and
``X-Forwarded-*`` headers from clients are ignored.
"""

from __future__ import annotations

import math
from typing import Any

from multidict import CIMultiDict

from kongsim.errors import LuaError
from kongsim.pdk.args import parse_body, parse_query
from kongsim.pdk.codec import (
    DEFAULT_MAX_ARGS,
    lua_number,
    lua_tostring,
    multimap_headers,
    multimap_query,
)
from kongsim.pdk.core import (
    BEFORE_CONTENT,
    REQUEST,
    CallContext,
    arg,
    max_arg,
    name_arg,
    register,
)
from kongsim.pdk.responses import lua_type
from kongsim.request.state import RequestState
from kongsim.request.uri import normalize

# --- helpers shared with kongsim.pdk.context ------------------------------------------------


def ngx_start_time(st: RequestState) -> float:
    """``ngx.req.start_time()``: ``r->start_sec + r->start_msec / 1000`` (millisecond steps)."""
    sec = math.floor(st.start_time)
    msec = min(999, int((st.start_time - sec) * 1000))
    return sec + msec / 1000


def http_variable(headers: CIMultiDict[str], name: str) -> str | None:
    """nginx ``$http_<name>``: every header line whose name matches (case-insensitively, ``-``
    and ``_`` alike), joined with ``", "`` (``"; "`` for Cookie) as nginx >= 1.23 does."""
    want = name.lower().replace("-", "_")
    values = [v for k, v in headers.items() if k.lower().replace("-", "_") == want]
    if not values:
        return None
    return ("; " if want == "cookie" else ", ").join(values)


def headers_lookup(table: dict[str, list[str]], name: str) -> str | None:
    """``ngx.req.get_headers()[name]`` (lua-resty-core ``req_headers_mt``: the lower-cased
    name, then with ``_`` as ``-``), first value of a repeated header."""
    key = name.lower()
    values = table.get(key)
    if values is None and "_" in key:
        values = table.get(key.replace("_", "-"))
    return values[0] if values else None


def request_header(headers: CIMultiDict[str], name: str) -> str | None:
    """``kong.tools.http.get_header(name)``: ``$http_<name>``; if that holds ``", "`` (several
    lines were joined), the first value from ``ngx.req.get_headers()`` (100 lines at most)."""
    value = http_variable(headers, name)
    if value is None or ", " not in value:
        return value
    return headers_lookup(multimap_headers(headers, DEFAULT_MAX_ARGS), name)


def _original_query(st: RequestState) -> str:
    return st.request_uri.split("?", 1)[1] if "?" in st.request_uri else ""


def _unexpected_http1(st: RequestState) -> bool:
    """``ctx.KONG_UNEXPECTED and get_http_version() < 2``: Kong then reads the request line."""
    return st.unexpected and st.http_version < 2


def _limit(value: Any, name: str) -> int:
    if value is None:
        return DEFAULT_MAX_ARGS
    return max_arg([value], name)


def _in_memory(c: CallContext) -> bool:
    """nginx keeps a body of at most ``client_body_buffer_size`` (Kong: 8k) in memory."""
    return len(c.st.body) <= c.env.client_body_buffer_size


def _raw_body(c: CallContext, max_size: Any) -> bytes | None:
    """``_REQUEST.get_raw_body(max_allowed_file_size)`` without the phase check."""
    if _in_memory(c):
        return c.st.body
    if max_size is None or max_size is False:
        return None  # "request body did not fit into client body buffer, ..."
    if not isinstance(max_size, int | float) or isinstance(max_size, bool):
        raise LuaError(f"attempt to compare {lua_type(max_size)} with number")
    if max_size < 0:
        return None
    if max_size > 0 and len(c.st.body) > max_size:
        return None  # "request body file too big: ..."
    return c.st.body


# --- kong.request (kong/pdk/request.lua) ----------------------------------------------------


@register("kong.request.get_scheme", REQUEST, timer_ok=False)
def _req_scheme(c: CallContext, _a: list[Any]) -> Any:
    """``var.scheme``."""
    return c.st.scheme


@register("kong.request.get_host", REQUEST, timer_ok=False)
def _req_host(c: CallContext, _a: list[Any]) -> Any:
    """``var.host``: lower-cased, without port."""
    return c.st.host


@register("kong.request.get_port", None, timer_ok=False)
def _req_port(c: CallContext, _a: list[Any]) -> Any:
    """``tonumber(var.server_port)``; any phase but init_worker."""
    return c.st.server_port


@register("kong.request.get_forwarded_scheme", REQUEST, timer_ok=False)
def _req_fwd_scheme(c: CallContext, _a: list[Any]) -> Any:
    return c.st.scheme


@register("kong.request.get_forwarded_host", REQUEST, timer_ok=False)
def _req_fwd_host(c: CallContext, _a: list[Any]) -> Any:
    return c.st.host


@register("kong.request.get_forwarded_port", REQUEST, timer_ok=False)
def _req_fwd_port(c: CallContext, _a: list[Any]) -> Any:
    return c.st.server_port


@register("kong.request.get_forwarded_path", REQUEST, timer_ok=False)
def _req_fwd_path(c: CallContext, _a: list[Any]) -> Any:
    return normalize(c.st.raw_path, True)


@register("kong.request.get_forwarded_prefix", REQUEST, timer_ok=False)
def _req_fwd_prefix(c: CallContext, _a: list[Any]) -> Any:
    """``var.upstream_x_forwarded_prefix``: ``""`` (nginx ``set``) until routing; then set by
    ``runloop.access.before`` to the matched prefix (routes with ``strip_path`` only), or nil."""
    match = c.st.match
    if match is None:
        return ""
    return match.prefix if match.prefix != "/" else None


@register("kong.request.get_http_version", REQUEST, timer_ok=False)
def _req_http_version(c: CallContext, _a: list[Any]) -> Any:
    return lua_number(c.st.http_version)


@register("kong.request.get_method", REQUEST, timer_ok=False)
def _req_method(c: CallContext, _a: list[Any]) -> Any:
    """``ngx.req.get_method()``: changed by ``kong.service.request.set_method``
    (``ngx.req.set_method``); the request line's method after a plugin error."""
    if _unexpected_http1(c.st):
        return c.st.method
    return c.st.upstream_method or c.st.method


@register("kong.request.get_path", REQUEST, timer_ok=False)
def _req_path(c: CallContext, _a: list[Any]) -> Any:
    """``normalize(get_raw_path(), true)`` (``kong/tools/uri.lua``); raw bytes stay raw."""
    return normalize(c.st.raw_path, True)


@register("kong.request.get_raw_path", REQUEST, timer_ok=False)
def _req_raw_path(c: CallContext, _a: list[Any]) -> Any:
    return c.st.raw_path


@register("kong.request.get_path_with_query", REQUEST, timer_ok=False)
def _req_path_query(c: CallContext, _a: list[Any]) -> Any:
    return c.st.request_uri


@register("kong.request.get_raw_query", REQUEST, timer_ok=False)
def _req_raw_query(c: CallContext, _a: list[Any]) -> Any:
    """``var.args or ""``: ``$args`` as plugins changed it."""
    return c.st.raw_query


def _query(c: CallContext, max_args: Any) -> dict[str, Any]:
    limit = _limit(max_args, "max_args")
    raw = _original_query(c.st) if _unexpected_http1(c.st) else c.st.raw_query
    return parse_query(raw, limit)


@register("kong.request.get_query", REQUEST, timer_ok=False, step="plugin.StepMultiMap", fix="mmap")
def _req_query(c: CallContext, a: list[Any]) -> Any:
    """``ngx.req.get_uri_args(max_args)`` (default 100), then ``fix_mmap``."""
    return multimap_query(_query(c, arg(a, 0)))


@register("kong.request.get_query_arg", REQUEST, timer_ok=False)
def _req_query_arg(c: CallContext, a: list[Any]) -> Any:
    name = name_arg(a, "query argument name")
    value = _query(c, None).get(name)
    return value[0] if isinstance(value, list) else value


@register("kong.request.get_header", REQUEST, timer_ok=True)
def _req_header(c: CallContext, a: list[Any]) -> Any:
    """Live: ``kong.tools.http.get_header``. Log timer: ``exposed_api`` reads the saved
    ``ngx.req.get_headers()`` (no argument check; first value of a repeated header)."""
    if c.st.in_timer:
        name = arg(a, 0)
        if isinstance(name, int | float) and not isinstance(name, bool):
            name = lua_tostring(name)
        if not isinstance(name, str):
            raise LuaError(f"bad argument #1 to 'lower' (string expected, got {lua_type(name)})")
        return headers_lookup(multimap_headers(c.st.headers, DEFAULT_MAX_ARGS), name)
    return request_header(c.st.headers, name_arg(a))


@register(
    "kong.request.get_headers", REQUEST, timer_ok=True, step="plugin.StepMultiMap", fix="mmap"
)
def _req_headers(c: CallContext, a: list[Any]) -> Any:
    """``ngx.req.get_headers(max)``: lower-cased names, at most ``max`` (default 100) lines.
    In the log timer ``exposed_api`` returns the saved table and ignores ``max``."""
    limit = DEFAULT_MAX_ARGS if c.st.in_timer else max_arg(a, "max_headers")
    return multimap_headers(c.st.headers, limit)


@register("kong.request.get_raw_body", BEFORE_CONTENT, timer_ok=False, fix="raw")
def _req_raw_body(c: CallContext, a: list[Any]) -> Any:
    """``nil`` (then ``fix_raw(nil)`` fails while packing: a hard error) when the body is in a
    file and ``max_allowed_file_size`` is missing, negative, or smaller than the file."""
    return _raw_body(c, arg(a, 0))


@register("kong.request.get_body", BEFORE_CONTENT, timer_ok=False)
def _req_body(c: CallContext, a: list[Any]) -> Any:
    """``get_body(mimetype, max_args, max_allowed_file_size)``; only the first result (the
    table or nil) reaches the plugin."""
    mimetype, max_args, max_size = arg(a, 0), arg(a, 1), arg(a, 2)
    content_type = mimetype
    if content_type is None or content_type is False:
        content_type = request_header(c.st.headers, "Content-Type")
        if content_type is None:
            return None  # "missing content type"
    if isinstance(content_type, int | float) and not isinstance(content_type, bool):
        content_type = lua_tostring(content_type)
    elif isinstance(content_type, bytes):
        content_type = content_type.decode("latin-1")
    if not isinstance(content_type, str):
        raise LuaError(
            f"bad argument #1 to 'lower' (string expected, got {lua_type(content_type)})"
        )
    ctype = content_type.lower().split(";", 1)[0]
    if ctype.startswith("application/x-www-form-urlencoded"):
        limit = _limit(max_args, "max_args")
        if not _in_memory(c):
            return None  # ngx.req.get_post_args: "request body in temp file not supported"
        return parse_body(c.st.body, ctype, limit)
    if ctype.startswith("application/json"):
        body = _raw_body(c, max_size)
        return None if body is None else parse_body(body, ctype)
    return None  # multipart/form-data is not emulated; anything else: "unsupported ..."


@register("kong.request.get_start_time", REQUEST, timer_ok=True)
def _req_start_time(c: CallContext, _a: list[Any]) -> Any:
    """``ctx.KONG_PROCESSING_START``: ``ngx.req.start_time() * 1000`` (a Lua number)."""
    return ngx_start_time(c.st) * 1000


@register("kong.request.get_uri_captures", REQUEST, timer_ok=True)
def _req_uri_captures(c: CallContext, _a: list[Any]) -> Any:
    """``capture_wrap(ctx.router_matches.uri_captures or {})``: ``unnamed`` holds the numbered
    groups with ``[0]`` the whole match (a map on the wire), ``named`` the named ones."""
    caps = dict(c.st.match.captures) if c.st.match else {}
    return {"unnamed": caps.get("unnamed") or {}, "named": caps.get("named") or {}}
