"""Responses Kong produces itself: ``kong.response.exit``/``error`` and its error pages."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from kongsim.errors import LuaError
from kongsim.pdk.codec import lua_json, lua_tostring
from kongsim.request.state import RequestState, Terminal

log = logging.getLogger("kongsim.pdk")

CONTENT_TYPE_JSON = "application/json; charset=utf-8"

HTTP_ERROR_MESSAGES = {
    400: "Bad request",
    401: "Unauthorized",
    402: "Payment required",
    403: "Forbidden",
    404: "Not found",
    405: "Method not allowed",
    406: "Not acceptable",
    407: "Proxy authentication required",
    408: "Request timeout",
    409: "Conflict",
    410: "Gone",
    411: "Length required",
    412: "Precondition failed",
    413: "Payload too large",
    414: "URI too long",
    415: "Unsupported media type",
    416: "Range not satisfiable",
    417: "Expectation failed",
    418: "I'm a teapot",
    421: "Misdirected request",
    422: "Unprocessable entity",
    423: "Locked",
    424: "Failed dependency",
    425: "Too early",
    426: "Upgrade required",
    428: "Precondition required",
    429: "Too many requests",
    431: "Request header fields too large",
    451: "Unavailable for legal reasons",
    494: "Request header or cookie too large",
    500: "An unexpected error occurred",
    501: "Not implemented",
    502: "An invalid response was received from the upstream server",
    503: "The upstream server is currently unavailable",
    504: "The upstream server is timing out",
    505: "HTTP version not supported",
    506: "Variant also negotiates",
    507: "Insufficient storage",
    508: "Loop detected",
    510: "Not extended",
    511: "Network authentication required",
}

_ERROR_TEMPLATES = {
    "application/json; charset=utf-8": '{\n  "message":"%s",\n  "request_id":"%s"\n}',
    "text/html; charset=utf-8": (
        '<!doctype html>\n<html>\n  <head>\n    <meta charset="utf-8">\n'
        "    <title>Error</title>\n  </head>\n  <body>\n    <h1>Error</h1>\n"
        "    <p>%s.</p>\n    <p>request_id: %s</p>\n  </body>\n</html>\n"
    ),
    "text/plain; charset=utf-8": "%s\nrequest_id: %s\n",
    "application/xml; charset=utf-8": (
        '<?xml version="1.0" encoding="UTF-8"?>\n<error>\n  <message>%s</message>\n'
        "  <requestid>%s</requestid>\n</error>\n"
    ),
}
_MIME_TYPES = {
    "application/json": "application/json; charset=utf-8",
    "text/html": "text/html; charset=utf-8",
    "text/plain": "text/plain; charset=utf-8",
    "application/xml": "application/xml; charset=utf-8",
    "application/*": "application/json; charset=utf-8",
    "text/*": "text/plain; charset=utf-8",
    "*/*": "application/json; charset=utf-8",
}


def response_type(accept: str | None) -> str:
    """Kong's ``get_response_type``: the error body format chosen from an Accept header."""
    best, best_q = "application/json; charset=utf-8", 0.0
    if not accept:
        return best
    for item in accept.split(","):
        parts = [p.strip() for p in item.split(";")]
        media = parts[0].lower()
        q = 1.0
        for p in parts[1:]:
            if p.lower().startswith("q="):
                try:
                    q = float(p[2:])
                except ValueError:
                    q = 0.0
        if q > best_q and media in _MIME_TYPES:
            best, best_q = _MIME_TYPES[media], q
    return best


def error_response(
    st: RequestState,
    status: int,
    message: str | None = None,
    headers: Mapping[str, Any] | None = None,
    *,
    source: str = "exit",
    accept: str | None = None,
) -> Terminal:
    """``kong.response.error(status, message, headers)``: Kong's templated error body.

    The format follows ``accept`` (default: the request's ``Accept`` header); JSON by default.
    """
    hdrs = normalize_header_table(headers or {})
    content_type = next((v[0] for k, v in hdrs if k.lower() == "content-type" and v), None)
    if content_type is None:
        content_type = response_type(accept if accept is not None else st.headers.get("accept"))
        hdrs.append(("Content-Type", [content_type]))
    template = _ERROR_TEMPLATES.get(content_type, _ERROR_TEMPLATES[CONTENT_TYPE_JSON])
    text = message if message is not None else http_error_message(status)
    body = (template % (text, st.request_id)).encode("utf-8")
    return _terminal(status, body, hdrs, source)


def _terminal(status: int, body: bytes, hdrs: list[tuple[str, list[str]]], source: str) -> Terminal:
    """Kong's ``send`` (kong/pdk/response.lua): each given name replaces the current value,
    an empty array clears it (``ngx.header[name] = {}``); ``Content-Length`` is ``#body``
    unless the caller gave one (for a nil body too: ``0``)."""
    # ngx.header[name] turns "_" into "-" (lua_transform_underscores_in_response_headers on)
    hdrs = [(k.replace("_", "-"), vs) for k, vs in hdrs]
    names = {k.lower() for k, _ in hdrs}
    cleared = frozenset(k.lower() for k, vs in hdrs if not vs)
    out = [(k, v) for k, vs in hdrs for v in vs]
    if "content-length" not in names:
        out.append(("Content-Length", str(len(body))))
    return Terminal(status, body, out, source, cleared)


def http_error_message(status: int) -> str:
    return HTTP_ERROR_MESSAGES.get(status, f"The upstream server responded with {status}")


def exit_response(status: Any, body: Any, headers: Any, *, source: str = "exit") -> Terminal:
    """``kong.response.exit(status, body, headers)`` after Kong's argument checks."""
    if not isinstance(status, int) or isinstance(status, bool):
        raise LuaError("code must be a number")
    if not 100 <= status <= 599:
        raise LuaError("code must be a number between 100 and 599")
    if body is not None and not isinstance(body, str | bytes | dict | list):
        raise LuaError("body must be a nil, string or table")
    if headers is not None and not isinstance(headers, Mapping):
        raise LuaError("headers must be a nil or table")
    hdrs = normalize_header_table(headers or {})
    names = {k.lower() for k, _ in hdrs}
    if isinstance(body, dict | list):
        payload = lua_json(body).encode("utf-8")
        if "content-type" not in names:
            hdrs.append(("Content-Type", [CONTENT_TYPE_JSON]))
    elif body is None:
        payload = b""
    else:
        payload = body.encode("utf-8") if isinstance(body, str) else bytes(body)
    return _terminal(status, payload, hdrs, source)


def lua_type(value: Any) -> str:
    """The Lua ``type()`` of a value decoded from msgpack."""
    if value is None:
        return "nil"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str | bytes):
        return "string"
    return "table"


def header_values(name: str, value: Any) -> list[str]:
    """Kong's ``validate_header`` + ``normalize_multi_header`` (``""`` becomes ``" "``)."""
    kind = lua_type(value)
    if kind in ("boolean", "number"):
        return [lua_tostring(value)]
    if kind == "string":
        text = value.decode("latin-1") if isinstance(value, bytes) else value
        return [text or " "]
    if kind == "table":
        items = value if isinstance(value, list) else []
        out = []
        for item in items:
            if lua_type(item) != "string":
                raise LuaError(
                    f'invalid header value in array "{name}": got {lua_type(item)}, expected string'
                )
            text = item.decode("latin-1") if isinstance(item, bytes) else item
            out.append(text or " ")
        return out
    raise LuaError(
        f'invalid header value for "{name}": got {kind}, expected array of string, '
        "string, number or boolean"
    )


def check_header_name(name: Any) -> str:
    if isinstance(name, bytes):
        name = name.decode("latin-1")
    if not isinstance(name, str):
        kind = "nil" if name is None else type(name).__name__
        raise LuaError(f'invalid header name "{name}": got {kind}, expected string')
    return name


def normalize_header_table(headers: Mapping[Any, Any]) -> list[tuple[str, list[str]]]:
    out = []
    for name, value in headers.items():
        n = check_header_name(name)
        if n.lower() in ("transfer-encoding", "transfer_encoding"):
            log.warning("manually setting Transfer-Encoding. Ignored.")
            continue
        out.append((n, header_values(n, value)))
    return out
