"""Debezium PostgreSQL change-event envelopes (JSON) to row changes. Pure.

Read: the value, with or without the JsonConverter's ``{"schema": ..., "payload": ...}``
wrapper; ``op`` ``c`` (create), ``r`` (snapshot read: treated as a create -- the cache may
hold an older copy), ``u``, ``d``, ``t`` (truncate); ``before`` / ``after``;
``source.schema`` and ``source.table``; ``source.ts_ms`` (else ``ts_ms``) as the event time.
The key comes from the message key (a JSON object, wrapper allowed: its fields are the key
columns, in order); without one, from the table's configured key columns (the mapping's
``key``) found in the row.

Every image is purged: ``after`` for c/r/u, ``before`` for d, and ``before`` too for an
update that carries it (REPLICA IDENTITY FULL). Debezium sends a key change as a delete of
the old key and a create of the new one.

A tombstone (null value, which Debezium sends after a delete for log compaction) is
`None`; anything else that is not an envelope raises `EnvelopeError` with a stable reason
-- JSON that is not strict JSON too: ``NaN``, ``Infinity`` and a number out of the float
range (``1e999``) are ``malformed_json``, never a tag such as ``t:nan``.

Values become text as in `sidecar.cdc.mapping`: strings as is, integers in decimal, a float
with no fraction as an integer, booleans ``t``/``f``, objects and arrays as compact JSON.
"""

from __future__ import annotations

import json
import math
from typing import Any

from sidecar.cdc.changes import Image, Op, RowChange

__all__ = ["EnvelopeError", "Parsed", "parse_envelope", "text_of"]

_OPS = {"c": Op.INSERT, "r": Op.INSERT, "u": Op.UPDATE, "d": Op.DELETE, "t": Op.TRUNCATE}


class EnvelopeError(ValueError):
    """Not a Debezium change event; `reason` is a stable label."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(f"{reason}: {message}")
        self.reason = reason


class Parsed:
    """A change and its event time (ms since 1970, or None)."""

    __slots__ = ("change", "ts")

    def __init__(self, change: RowChange, ts: int | None) -> None:
        self.change = change
        self.ts = ts


def text_of(value: object) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return "t" if value else "f"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, int | float | str):
        return str(value)
    return json.dumps(value, separators=(",", ":"), sort_keys=False)


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text[:30]} is out of range")
    return value


def _json(raw: bytes, what: str) -> Any:
    try:
        return json.loads(raw, parse_constant=_no_constant, parse_float=_finite)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise EnvelopeError("malformed_json", f"{what} is not JSON: {exc}") from None


def _unwrap(doc: Any) -> Any:
    if isinstance(doc, dict) and "payload" in doc and set(doc) <= {"schema", "payload"}:
        return doc["payload"]
    return doc


def _image(value: Any, name: str) -> dict[str, str | None]:
    if not isinstance(value, dict):
        kind = "null" if value is None else type(value).__name__
        raise EnvelopeError("bad_field", f"{name} must be an object, not {kind}")
    return {str(k): text_of(v) for k, v in value.items()}


def _key(raw: bytes | None) -> dict[str, str | None] | None:
    if raw is None or raw == b"":
        return None
    doc = _unwrap(_json(raw, "the message key"))
    if doc is None:
        return None
    if not isinstance(doc, dict):
        raise EnvelopeError("bad_key", "the message key is not a JSON object")
    return _image(doc, "the message key")


def _ts(payload: dict[str, Any], source: dict[str, Any]) -> int | None:
    for value in (source.get("ts_ms"), payload.get("ts_ms")):
        if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 2**53:
            return value
    return None


def parse_envelope(value: bytes | None, key: bytes | None) -> Parsed | None:
    """The change in one message (None for a tombstone). Without a message key the change
    names no key columns: the table's rule must (``key``)."""
    if value is None:
        return None
    payload = _unwrap(_json(value, "the value"))
    if not isinstance(payload, dict):
        raise EnvelopeError("not_an_envelope", "the payload is not a JSON object")
    op = payload.get("op")
    if op not in _OPS:
        raise EnvelopeError("bad_op", f"op {str(op)[:20]!r} is not one of c, r, u, d, t")
    source = payload.get("source")
    if not isinstance(source, dict):
        raise EnvelopeError("bad_field", "no source object")
    schema, table = source.get("schema"), source.get("table")
    if not isinstance(schema, str) or not isinstance(table, str) or not table:
        raise EnvelopeError("bad_field", "source.schema and source.table must be strings")
    kind = _OPS[op]
    ts = _ts(payload, source)
    if kind is Op.TRUNCATE:
        return Parsed(RowChange(kind, schema, table, (), ()), ts)
    images: list[Image] = []
    if kind is Op.DELETE or (kind is Op.UPDATE and payload.get("before") is not None):
        images.append(_image(payload.get("before"), "before"))
    if kind is not Op.DELETE:
        images.append(_image(payload.get("after"), "after"))
    message_key = _key(key)
    columns: tuple[str, ...] = ()
    if message_key is not None:
        columns = tuple(message_key)
        images = [{**message_key, **image} for image in images]
    return Parsed(RowChange(kind, schema, table, columns, tuple(images)), ts)
