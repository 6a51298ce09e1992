"""nginx's argument encoding: query strings and form bodies, and request/response bodies decoded
as Kong's PDK decodes them.

nginx's query-string decoding (:func:`parse_query`), Kong's ``make_ordered_args``
(:func:`encode_query`), and :func:`parse_body` (form or JSON; multipart is NOT emulated).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import quote, unquote_to_bytes

from kongsim.errors import LuaError
from kongsim.pdk.codec import DEFAULT_MAX_ARGS, cjson_decode, lua_table, lua_tostring


def ngx_unescape(text: str) -> str:
    """nginx's ``ngx_http_lua_unescape_uri`` (``NGX_UNESCAPE_URI_COMPONENT``): ``+`` is a
    space, ``%XX`` a byte (an invalid escape stays as is). Bytes that are not UTF-8 are kept as
    lone surrogates (see :func:`wire_str`)."""
    raw = unquote_to_bytes(text.replace("+", " ").encode("utf-8", "surrogateescape"))
    return raw.decode("utf-8", "surrogateescape")


def parse_query(raw: str, limit: int = DEFAULT_MAX_ARGS) -> dict[str, Any]:
    """``ngx.req.get_uri_args(limit)`` / ``ngx.decode_args``: ``a=1&b&c=`` →
    ``{"a": "1", "b": True, "c": ""}``; a repeated argument becomes a list of its values.

    As ``ngx_http_lua_ffi_req_get_uri_args`` does: pairs with an empty name (``=v``, ``&&``)
    are skipped and do not count; parsing stops after ``limit`` arguments (nginx's default is
    100, the rest is silently dropped).
    """
    out: dict[str, Any] = {}
    count = 0
    for part in raw.split("&"):
        if count >= limit:
            break
        if "=" in part:
            k, v = part.split("=", 1)
            value: Any = ngx_unescape(v)
        else:
            k, value = part, True
        key = ngx_unescape(k)
        if key == "":
            continue
        count += 1
        if key in out:
            prev = out[key]
            out[key] = [*prev, value] if isinstance(prev, list) else [prev, value]
        else:
            out[key] = value
    return out


_ARG_SAFE = "!'()*-._~"
"""``ngx.encode_args`` (``NGX_ESCAPE_URI_COMPONENT``) leaves letters, digits and these alone."""


def _escape_arg(value: Any) -> str:
    text = value if isinstance(value, bytes) else lua_tostring(value)
    return quote(
        text if isinstance(text, bytes) else text.encode("utf-8", "surrogateescape"), safe=_ARG_SAFE
    )


def encode_args(key: str, value: Any) -> str:
    """``ngx.encode_args({[key] = value})``: ``true`` → ``key``, ``false`` → ``""``; a table
    value repeats the key per element (``false`` elements skipped); a string or number is
    ``key=value``; anything else raises "attempt to use <type> as query arg value"."""
    k = _escape_arg(key)
    values = list(lua_table(value).values()) if isinstance(value, dict | list) else [value]
    parts: list[str] = []
    for v in values:
        if v is True:
            parts.append(k)
        elif v is False:
            continue
        elif isinstance(v, str | bytes | int | float):
            parts.append(f"{k}={_escape_arg(v)}")
        else:
            kind = "table" if isinstance(v, dict | list) else "nil" if v is None else "userdata"
            raise LuaError(f"attempt to use {kind} as query arg value")
    return "&".join(parts)


def encode_query(args: Mapping[Any, Any]) -> str:
    """Kong's ``make_ordered_args`` (``kong/pdk/service/request.lua``): each argument encoded
    on its own with ``ngx.encode_args``, the pieces sorted as strings, joined with ``&``.

    Used by ``kong.service.request.set_query`` and ``set_body`` (form). A key that is not a
    string raises "arg keys must be strings"; a ``false`` value leaves an empty piece.
    """
    pieces: list[str] = []
    for key, value in lua_table(dict(args)).items():
        if not isinstance(key, str):
            raise LuaError("arg keys must be strings")
        pieces.append(encode_args(key, value))
    return "&".join(sorted(pieces))


def parse_body(body: bytes, content_type: str | None, limit: int = DEFAULT_MAX_ARGS) -> Any:
    """A body decoded as ``kong.request.get_body()`` / ``kong.service.response.get_body()``
    do once the body is at hand: form (``ngx.decode_args``, at most ``limit`` arguments) or
    JSON (``cjson.decode``; only an object or array counts). Other types: ``None``.

    The type is the lower-cased ``content_type`` up to ``;`` (not stripped), and must *start
    with* ``application/x-www-form-urlencoded`` or ``application/json``, as Kong tests it.
    ``multipart/form-data`` is NOT emulated (``None``; Kong parses it).
    """
    if not content_type:
        return None
    ctype = content_type.lower().split(";", 1)[0]
    if ctype.startswith("application/x-www-form-urlencoded"):
        return parse_query(body.decode("utf-8", "surrogateescape"), limit)
    if ctype.startswith("application/json"):
        decoded = cjson_decode(body)
        return decoded if isinstance(decoded, dict | list) else None
    return None
