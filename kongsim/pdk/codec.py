"""Value conversions between Kong's Lua world and the wire: cjson, query strings, multi-maps."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote, unquote_plus

from multidict import CIMultiDict

from kongsim.errors import WireEncodingError

DEFAULT_MAX_ARGS = 100
"""nginx's default cap on the arguments/headers ``get_query``/``get_headers`` return."""


def lua_json(value: Any) -> str:
    """``cjson.encode``: compact, ``/`` escaped, empty tables as ``{}``, integral floats as ints."""

    def fix(v: Any) -> Any:
        if isinstance(v, bytes):
            return v.decode("utf-8", "replace")
        if isinstance(v, float) and math.isfinite(v) and v.is_integer():
            return int(v)
        if isinstance(v, list):
            return [fix(x) for x in v] if v else {}
        if isinstance(v, dict):
            return {str(k): fix(x) for k, x in v.items()}
        return v

    return json.dumps(fix(value), separators=(",", ":"), ensure_ascii=False).replace("/", "\\/")


def lua_tostring(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        return str(int(value))
    return str(value)


def lua_number(value: float) -> int | float:
    return int(value) if float(value).is_integer() else value


def lua_pack_shape(value: Any) -> Any:
    """How lua-MessagePack packs a Lua value for the plugin server.

    An empty table becomes an empty array; a string becomes a msgpack ``str``, so bytes must be
    valid UTF-8 (raises :class:`~kongsim.errors.WireEncodingError` otherwise).
    """
    if isinstance(value, bytes):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise WireEncodingError(
                "a Lua string that is not valid UTF-8 goes out as a msgpack str: the plugin "
                "server's connection handler crashes on it (store binary data base64-encoded)"
            ) from exc
    if isinstance(value, dict):
        if not value:
            return []
        return {k: lua_pack_shape(v) for k, v in value.items()}
    if isinstance(value, list):
        return [lua_pack_shape(v) for v in value]
    return value


def header_key(name: str) -> str:
    """nginx header-table lookup key: case-insensitive, ``_`` stands for ``-``."""
    return name.lower().replace("_", "-")


def multimap_headers(
    headers: CIMultiDict[str] | None, limit: int = DEFAULT_MAX_ARGS
) -> dict[str, list[str]]:
    """Headers as Kong's multimap fix-up sends them: lower-case names, every value a list."""
    out: dict[str, list[str]] = {}
    if headers is None:
        return out
    for i, (k, v) in enumerate(headers.items()):
        if i >= limit:
            break
        out.setdefault(k.lower(), []).append(v)
    return out


def multimap_query(query: Mapping[str, Any]) -> dict[str, Any]:
    """Kong's ``fix_mmap`` on a query table: ``"v"`` → ``["v"]``, ``true`` → ``[]``."""
    out: dict[str, Any] = {}
    for k, v in query.items():
        if v is True:
            out[k] = []
        elif isinstance(v, str):
            out[k] = [v]
        else:
            out[k] = v
    return out


def parse_query(raw: str, limit: int = DEFAULT_MAX_ARGS) -> dict[str, Any]:
    """``ngx.req.get_uri_args``: ``a=1&b&c=`` → ``{"a": "1", "b": True, "c": ""}``.

    A repeated argument becomes a list of its values.
    """
    out: dict[str, Any] = {}
    count = 0
    for part in raw.split("&"):
        if not part:
            continue
        if count >= limit:
            break
        count += 1
        if "=" in part:
            k, v = part.split("=", 1)
            value: Any = unquote_plus(v)
        else:
            k, value = part, True
        key = unquote_plus(k)
        if key == "":
            continue
        if key in out:
            prev = out[key]
            out[key] = [*prev, value] if isinstance(prev, list) else [prev, value]
        else:
            out[key] = value
    return out


def encode_query(args: Mapping[str, Any]) -> str:
    """``kong.service.request.set_query``: keys sorted; ``true`` → flag; lists → repeated keys."""
    parts: list[str] = []
    for key in sorted(args, key=str):
        value = args[key]
        values = value if isinstance(value, list) else [value]
        for v in values:
            k = quote(str(key), safe="")
            if v is True:
                parts.append(k)
            elif v is False or v is None:
                continue
            else:
                parts.append(f"{k}={quote(lua_tostring(v), safe='')}")
    return "&".join(parts)


def parse_body(body: bytes, content_type: str | None, limit: int = DEFAULT_MAX_ARGS) -> Any:
    """``kong.request.get_body()`` / ``kong.service.response.get_body()`` (first value only)."""
    if not content_type:
        return None
    ctype = content_type.split(";", 1)[0].strip().lower()
    if ctype.startswith("application/x-www-form-urlencoded"):
        return parse_query(body.decode("utf-8", "replace"), limit)
    if ctype.startswith("application/json"):
        try:
            decoded = json.loads(body)
        except (ValueError, UnicodeDecodeError):
            return None
        return decoded if isinstance(decoded, dict | list) else None
    return None
