"""``kong.service.request.*`` (changes to the upstream request) and ``kong.service.response.*``."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote_plus, unquote_plus

from kongsim.errors import LuaError
from kongsim.pdk.args import encode_query, parse_body
from kongsim.pdk.codec import DEFAULT_MAX_ARGS, lua_json
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
from kongsim.pdk.responses import check_header_name, header_values
from kongsim.request.state import RequestState, apply_header_op
from kongsim.request.uri import escape

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
    if op == "clear":
        # kong/pdk/service/request.lua clear_header
        if not isinstance(name, str):
            raise LuaError("header must be a string")
        values: list[str] = []
    else:
        # checks.lua validate_header: a string, number, boolean or array of strings
        name = check_header_name(name)
        values = header_values(name, arg(a, 1))
    if name.lower() == "host" and op != "clear":
        # kong/pdk/service/request.lua set_header/add_header: ngx.var.upstream_host = value,
        # and the request's own Host header changes too (ngx.req.set_header)
        c.st.upstream_host = values[-1]
    apply_header_op(c.st.headers, op, name, values)


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
    c.st.upstream_path = escape(path)  # ngx_var.upstream_uri = escape(path)


@register("kong.service.request.set_raw_query", ACCESS_AND_REWRITE, timer_ok=False)
def _svc_set_raw_query(c: CallContext, a: list[Any]) -> Any:
    query = arg(a, 0)
    if not isinstance(query, str):
        raise LuaError("query must be a string")
    c.st.args = query


@register("kong.service.request.set_query", ACCESS_AND_REWRITE, timer_ok=False)
def _svc_set_query(c: CallContext, a: list[Any]) -> Any:
    args = arg(a, 0)
    if not isinstance(args, dict):
        raise LuaError("args must be a table")
    c.st.args = encode_query(args)


@register("kong.service.request.clear_query_arg", ACCESS_AND_REWRITE, timer_ok=False)
def _svc_clear_query_arg(c: CallContext, a: list[Any]) -> Any:
    name = name_arg(a, "query argument name")
    clear_query_arg(c.st, name)


def clear_query_arg(st: RequestState, name: str) -> None:
    """``ngx_var.args = resty.ada.search.remove(args, name)`` when there are args: the query is
    parsed and serialized again as WHATWG ``application/x-www-form-urlencoded`` (every pair,
    not only the removed one: ``+`` for spaces, ``%XX`` outside ``A-Za-z0-9*-._``, a bare
    ``flag`` becomes ``flag=``)."""
    raw = st.raw_query
    if not raw:
        return
    pairs = [_form_decode_pair(p) for p in raw.split("&") if p]
    st.args = "&".join(f"{_form_encode(k)}={_form_encode(v)}" for k, v in pairs if k != name)


def _form_decode_pair(part: str) -> tuple[str, str]:
    key, _, value = part.partition("=")
    return unquote_plus(key, errors="replace"), unquote_plus(value, errors="replace")


def _form_encode(text: str) -> str:
    # the urlencoded percent-encode set: all but ASCII alphanumerics and *-._ ; space is +
    return quote_plus(text, safe="*").replace("~", "%7E")


@register("kong.service.request.set_raw_body", ACCESS_REWRITE_BALANCER, timer_ok=False)
def _svc_set_raw_body(c: CallContext, a: list[Any]) -> Any:
    c.st.upstream_body = bytes_arg(arg(a, 0), "body")


@register("kong.service.request.set_body", ACCESS_AND_REWRITE, timer_ok=False)
def _svc_set_body(c: CallContext, a: list[Any]) -> Any:
    """kong/pdk/service/request.lua ``set_body``: the handler is chosen by the mime (or the
    request's Content-Type) up to ``;``, exactly; ``multipart/form-data`` is not emulated."""
    args, mime = arg(a, 0), arg(a, 1)
    if not isinstance(args, dict):
        raise LuaError("args must be a table")
    if mime is not None and not isinstance(mime, str):
        raise LuaError("mime must be a string")
    if mime is None:
        mime = c.st.headers.get("content-type")
        if mime is None:
            return None  # nil, "content type was neither explicitly given ... nor received"
    handler = mime.split(";", 1)[0]
    if handler == "application/json":
        c.st.upstream_body = lua_json(args).encode("utf-8")
    elif handler == "application/x-www-form-urlencoded":
        c.st.upstream_body = encode_query(args).encode("utf-8")
    else:
        raise LuaError(f"unsupported content type {mime}")
    apply_header_op(c.st.headers, "set", "Content-Type", [mime])
    return True


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
    """An external plugin always gets ``{}`` here.

    ``kong/pdk/service/response.lua`` ``get_headers``: under buffered proxying (which an external
    plugin's ``response`` handler forces, and the ``log`` timer sees through the saved
    ``ngx.ctx``) the answer is a proxy table that answers lookups by name but has nothing to
    iterate; ``fix_mmap`` in ``kong/runloop/plugin_servers/rpc/mp_rpc.lua`` walks it with
    ``pairs`` and sends an empty map. The upstream's headers are in ``kong.response``'s by then
    (``Kong.response`` copies them). Without buffering, the log timer cannot read them.
    """
    if c.st.in_timer and not c.st.buffering:
        raise LuaError(TIMER_ERROR)
    max_arg(a, "max_headers")
    return {}


@register("kong.service.response.get_header", SERVICE_RESPONSE, timer_ok=True)
def _svc_resp_header(c: CallContext, a: list[Any]) -> Any:
    """A lookup by name in the same proxy table: works (first value of a repeated header)."""
    if c.st.in_timer and not c.st.buffering:
        raise LuaError(TIMER_ERROR)
    return first_header(c.st.service_headers, name_arg(a, "name"))


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
    mimetype, max_args = arg(a, 0), arg(a, 1)
    headers = c.st.service_headers
    ctype = (
        mimetype
        if isinstance(mimetype, str)
        else (headers.get("content-type") if headers else None)
    )
    if ctype is None:
        return None  # nil, "missing content type"
    limit = DEFAULT_MAX_ARGS
    if ctype.lower().startswith("application/x-www-form-urlencoded") and max_args is not None:
        if not isinstance(max_args, int | float) or isinstance(max_args, bool):
            raise LuaError("max_args must be a number")
        if max_args < 1:
            raise LuaError("max_args must be >= 1")
        if max_args > 1000:
            raise LuaError("max_args must be <= 1000")
        limit = int(max_args)
    return parse_body(c.st.service_body or b"", ctype, limit)
