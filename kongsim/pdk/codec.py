"""Value conversions between Kong's Lua world and the wire.

cjson as Kong configures it (:func:`lua_json`), lua-MessagePack's packing of Lua values
(:func:`lua_pack_shape`), the multimap fix-ups (:func:`multimap_headers`,
:func:`multimap_query`). Query strings and form bodies are in :mod:`kongsim.pdk.args`.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

from multidict import CIMultiDict

from kongsim.errors import LuaError, WireEncodingError

DEFAULT_MAX_ARGS = 100
"""nginx's default cap on the arguments/headers ``get_query``/``get_headers`` return."""


LUA_MAX_INTEGER = 9007199254740991
"""lua-MessagePack packs a Lua number as an integer when it is integral and below 2^53."""
CJSON_PRECISION = 16
"""``cjson.encode_number_precision``: Kong's ``globalpatches.lua`` sets ``CJSON_MAX_PRECISION``."""


class _CjsonNull:
    """``cjson.null``: a JSON ``null`` decoded by cjson is a value (a lightuserdata), not Lua
    ``nil``: it keeps its place in a table and is packed as msgpack nil."""

    _instance: _CjsonNull | None = None

    def __new__(cls) -> _CjsonNull:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "cjson.null"


CJSON_NULL = _CjsonNull()


def cjson_decode(data: bytes | str) -> Any:
    """``cjson.decode``: ``None`` if the text is not JSON; ``null`` becomes :data:`CJSON_NULL`."""
    try:
        decoded = json.loads(data)
    except (ValueError, UnicodeDecodeError):
        return None
    return _mark_nulls(decoded)


def _mark_nulls(value: Any) -> Any:
    if value is None:
        return CJSON_NULL
    if isinstance(value, dict):
        return {k: _mark_nulls(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_mark_nulls(v) for v in value]
    return value


def lua_key(key: Any) -> Any:
    """A Python map key as the Lua table key it becomes (``1.0`` and ``1`` are one key)."""
    if isinstance(key, bytes):
        return key.decode("utf-8", "surrogateescape")
    if isinstance(key, float) and math.isfinite(key) and key.is_integer():
        return int(key)
    return key


def lua_table(value: dict[Any, Any] | list[Any]) -> dict[Any, Any]:
    """The Lua table a msgpack map or array becomes: ``nil`` values are absent.

    An array ``[a, None, c]`` is the table ``{[1]=a, [3]=c}``; ``{"k": None}`` is ``{}``.
    """
    items = enumerate(value, start=1) if isinstance(value, list) else value.items()
    return {lua_key(k): v for k, v in items if v is not None}


def _positive_int(key: Any) -> bool:
    return isinstance(key, int) and not isinstance(key, bool) and key > 0


def _is_sequence(table: dict[Any, Any]) -> bool:
    """lua-MessagePack's ``without_hole`` rule: keys 1..n, nothing else, no hole."""
    return all(_positive_int(k) for k in table) and max(table, default=0) == len(table)


def lua_json(value: Any) -> str:
    """``cjson.encode`` as Kong configures it (``cjson.safe``, ``kong/globalpatches.lua``).

    Numbers with ``%.16g``; ``/`` escaped; an empty table as ``{}``; a table whose keys are
    all positive integers as an array (holes become ``null``); ``nil`` fields left out.
    NaN or infinity raises :class:`~kongsim.errors.LuaError` with cjson's message.
    """
    out: list[str] = []
    _json_append(value, out)
    return "".join(out)


def _json_string(text: str) -> str:
    return json.dumps(text, ensure_ascii=False).replace("/", "\\/").replace("\x7f", "\\u007f")


def _json_append(value: Any, out: list[str]) -> None:
    if value is None or value is CJSON_NULL:
        out.append("null")
    elif isinstance(value, bool):
        out.append("true" if value else "false")
    elif isinstance(value, int | float):
        if isinstance(value, float) and not math.isfinite(value):
            raise LuaError("Cannot serialise number: must not be NaN or Infinity")
        out.append(format(value, f".{CJSON_PRECISION}g"))
    elif isinstance(value, str | bytes):
        text = value.decode("utf-8", "replace") if isinstance(value, bytes) else value
        out.append(_json_string(text))
    elif isinstance(value, dict | list):
        table = lua_table(value)
        if table and all(_positive_int(k) for k in table):
            out.append("[")
            for i in range(1, max(table) + 1):
                if i > 1:
                    out.append(",")
                _json_append(table.get(i), out)
            out.append("]")
            return
        out.append("{")
        for i, (k, v) in enumerate(table.items()):
            if isinstance(k, bool) or not isinstance(k, str | int | float):
                raise LuaError("Cannot serialise table: table key must be a number or string")
            out.append("," if i else "")
            out.append(_json_string(k if isinstance(k, str) else format(k, f".{CJSON_PRECISION}g")))
            out.append(":")
            _json_append(v, out)
        out.append("}")
    else:
        raise LuaError(f"Cannot serialise {type(value).__name__}: type not supported")


def lua_tostring(value: Any) -> str:
    """Lua's ``tostring``: numbers with ``%.14g`` (LuaJIT), booleans as ``true``/``false``."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return format(value, ".14g")
    if isinstance(value, bytes):
        return value.decode("utf-8", "surrogateescape")
    return str(value)


def lua_number(value: float) -> int | float:
    """A Lua number as lua-MessagePack packs it: integral values within 2^53 as integers."""
    if isinstance(value, int):
        return value if abs(value) <= LUA_MAX_INTEGER else float(value)
    if math.isfinite(value) and value.is_integer() and abs(value) <= LUA_MAX_INTEGER:
        return int(value)
    return value


def wire_str(text: str) -> str:
    """A Lua string going out as msgpack ``str``: undecodable bytes (kept as lone surrogates)
    make the plugin server's unpacker fail, so raise :class:`WireEncodingError` for them."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise WireEncodingError(
            "a Lua string that is not valid UTF-8 goes out as a msgpack str: the plugin "
            "server's connection handler crashes on it"
        ) from exc
    return text


def lua_pack_shape(value: Any) -> Any:
    """How a Lua value round-trips through lua-MessagePack to the plugin server.

    Lua strings become msgpack ``str``, so bytes must be valid UTF-8 (raises
    :class:`~kongsim.errors.WireEncodingError` otherwise); numbers are doubles, packed as
    integers when integral (``2.0`` → ``2``, ints beyond 2^53 become floats); a table is an
    array when its keys are exactly 1..n, else a map (``nil`` fields absent: ``[1, None, 3]``
    becomes ``{1: 1, 3: 3}``); an empty table is an empty array.
    """
    if isinstance(value, bytes):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise WireEncodingError(
                "a Lua string that is not valid UTF-8 goes out as a msgpack str: the plugin "
                "server's connection handler crashes on it (store binary data base64-encoded)"
            ) from exc
    if isinstance(value, str):
        return wire_str(value)
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float):
        return lua_number(value)
    if value is CJSON_NULL:
        return None
    if isinstance(value, dict | list):
        table = lua_table(value)
        if _is_sequence(table):
            return [lua_pack_shape(table[i]) for i in range(1, len(table) + 1)]
        return {lua_pack_shape(k): lua_pack_shape(v) for k, v in table.items()}
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
    """Kong's ``fix_mmap`` on a query table: ``"v"`` → ``["v"]``, ``true`` → ``[]``, a list
    stays a list (it may hold ``true`` for a flag). Empty: ``{}``, sent as a map.

    Keys and values are Lua strings sent as msgpack ``str``: one that is not valid UTF-8 (e.g.
    ``?a=%FF``) raises :class:`~kongsim.errors.WireEncodingError`, as the plugin server's
    unpacker fails on it.
    """
    out: dict[str, Any] = {}
    for k, v in query.items():
        if v is True:
            value: Any = []
        elif isinstance(v, str):
            value = [wire_str(v)]
        else:
            value = [wire_str(x) if isinstance(x, str) else x for x in v]
        out[wire_str(k)] = value
    return out
