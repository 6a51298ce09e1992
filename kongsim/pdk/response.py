"""``kong.response.*``: the downstream response (status, headers, exit, error)."""

from __future__ import annotations

from typing import Any

from multidict import CIMultiDict

from kongsim.errors import LuaError
from kongsim.pdk.codec import lua_json, multimap_headers
from kongsim.pdk.core import (
    BODY_FILTER,
    HEADER_BODY_LOG,
    REWRITE_ACCESS_HEADER,
    CallContext,
    arg,
    first_header,
    max_arg,
    name_arg,
    register,
)
from kongsim.pdk.responses import (
    check_header_name,
    error_response,
    exit_response,
    header_values,
    log,
    normalize_header_table,
)


@register("kong.response.get_status", HEADER_BODY_LOG, timer_ok=True)
def _resp_status(c: CallContext, _a: list[Any]) -> Any:
    return c.st.response_status if c.st.response_status is not None else 200


@register("kong.response.get_header", HEADER_BODY_LOG, timer_ok=True)
def _resp_header(c: CallContext, a: list[Any]) -> Any:
    # kong/pdk/response.lua get_header: the first value of get_headers()[name]
    return first_header(_with_connection(c), name_arg(a))


@register(
    "kong.response.get_headers",
    HEADER_BODY_LOG,
    timer_ok=True,
    step="plugin.StepMultiMap",
    fix="mmap",
)
def _resp_headers(c: CallContext, a: list[Any]) -> Any:
    if c.st.in_timer:
        # plugin.lua exposed_api: the saved headers, `max` neither checked nor applied
        return multimap_headers(_with_connection(c), 1000)
    return multimap_headers(_with_connection(c), max_arg(a, "max_headers"))


def _with_connection(c: CallContext) -> CIMultiDict[str]:
    """``ngx.resp.get_headers()`` adds ``connection`` (lua-nginx-module's
    ``ngx_http_lua_ngx_resp_get_headers``: ``keep-alive`` or ``close``) to the headers set."""
    headers = CIMultiDict(c.st.response_headers)
    if "connection" not in headers:
        wants_close = "close" in (c.st.headers.get("connection") or "").lower()
        headers["connection"] = "close" if wants_close else "keep-alive"
    return headers


@register("kong.response.get_source", HEADER_BODY_LOG, timer_ok=True)
def _resp_source(c: CallContext, _a: list[Any]) -> Any:
    if c.st.unexpected:
        return "error"
    if c.st.exited:
        return "exit"
    if c.st.proxied and not c.st.upstream_failed:
        return "service"
    return "error"


@register("kong.response.set_status", REWRITE_ACCESS_HEADER, timer_ok=False)
def _resp_set_status(c: CallContext, a: list[Any]) -> Any:
    status = arg(a, 0)
    if not isinstance(status, int) or isinstance(status, bool):
        raise LuaError("code must be a number")
    if not 100 <= status <= 599:
        raise LuaError("code must be a number between 100 and 599")
    c.st.response_status = status
    return None


def _resp_header_op(c: CallContext, a: list[Any], op: str) -> None:
    name = check_header_name(arg(a, 0))
    values = [] if op == "clear" else header_values(name, arg(a, 1))
    if op != "clear" and name.lower() in ("transfer-encoding", "transfer_encoding"):
        log.warning("manually setting Transfer-Encoding. Ignored.")
        return
    # ngx.header[name]: "_" becomes "-" (lua_transform_underscores_in_response_headers on)
    c.st.response_header_op(op, name.replace("_", "-"), values)


@register("kong.response.set_header", REWRITE_ACCESS_HEADER, timer_ok=False)
def _resp_set_header(c: CallContext, a: list[Any]) -> Any:
    _resp_header_op(c, a, "set")


@register("kong.response.add_header", REWRITE_ACCESS_HEADER, timer_ok=False)
def _resp_add_header(c: CallContext, a: list[Any]) -> Any:
    _resp_header_op(c, a, "add")


@register("kong.response.clear_header", REWRITE_ACCESS_HEADER, timer_ok=False)
def _resp_clear_header(c: CallContext, a: list[Any]) -> Any:
    if not isinstance(arg(a, 0), str):
        raise LuaError("header name must be a string")
    _resp_header_op(c, a, "clear")


@register("kong.response.set_headers", REWRITE_ACCESS_HEADER, timer_ok=False)
def _resp_set_headers(c: CallContext, a: list[Any]) -> Any:
    headers = arg(a, 0)
    if not isinstance(headers, dict):
        raise LuaError("headers must be a table")
    for name, values in normalize_header_table(headers):
        c.st.response_header_op("set", name, values)


@register("kong.response.exit", REWRITE_ACCESS_HEADER, timer_ok=False)
def _resp_exit(c: CallContext, a: list[Any]) -> Any:
    return exit_response(arg(a, 0), arg(a, 1), arg(a, 2))


@register("kong.response.error", REWRITE_ACCESS_HEADER, timer_ok=False)
def _resp_error(c: CallContext, a: list[Any]) -> Any:
    status, message, headers = arg(a, 0), arg(a, 1), arg(a, 2)
    if not isinstance(status, int) or isinstance(status, bool):
        raise LuaError("code must be a number")
    if not 400 <= status <= 599:
        raise LuaError("code must be a number between 400 and 599")
    if isinstance(message, dict | list):
        message = lua_json(message)
    if isinstance(message, bytes):
        message = message.decode("utf-8", "replace")
    if message is not None and not isinstance(message, str):
        raise LuaError("message must be a nil, a string or a table")
    if headers is not None and not isinstance(headers, dict):
        raise LuaError("headers must be a nil or table")
    return error_response(c.st, status, message, headers)


@register("kong.response.get_raw_body", BODY_FILTER, timer_ok=False, fix="raw")
def _resp_raw_body(_c: CallContext, _a: list[Any]) -> Any:
    return b""  # unreachable: external plugins have no body_filter phase
