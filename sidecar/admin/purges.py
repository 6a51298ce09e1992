"""Admin requests to invalidation events (pure: no I/O).

Every purge form ends as one version-1 event checked by `sidecar.events.parse`, so the admin
API accepts exactly what a Kafka producer may send, with the same error messages:

* ``POST /purge`` with a JSON body: an event; ``"v"`` may be left out (it is 1); a field the
  event format does not know is refused here (a typo such as ``"sfot"`` must not turn a soft
  purge into a hard one), although readers of the topic ignore such fields;
* ``POST /purge?tag=T&url=U&...``: the query form, one parameter per item (`QUERY_FIELDS`);
* ``DELETE /proxy-cache``: ``{"flush": "*"}``; ``DELETE /proxy-cache/{key}``:
  ``{"keys": [key]}``; both take ``?soft=true``.

Errors are `PurgeRequestError` with a message naming the parameter or field.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any
from urllib.parse import unquote_plus

from sidecar.events import MAX_EVENT_BYTES, EventError, InvalidationEvent, parse
from sidecar.events.event import FLUSH_ALL, MAX_ITEMS
from sidecar.events.json_input import read_object

__all__ = [
    "QUERY_FIELDS",
    "PurgeRequestError",
    "event_from_body",
    "event_from_query",
    "flush_all_event",
    "key_event",
    "query_params",
    "soft_flag",
]

#: Query parameter -> event array field (each occurrence adds one item).
QUERY_FIELDS = {
    "tag": "tags",
    "url": "urls",
    "prefix": "prefixes",
    "key": "keys",
    "route": "routes",
    "key_prefix": "key_prefixes",
}
_SINGLE = ("flush", "all", "soft", "id")
_TRUE = {"", "1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}
#: Most parameters in one query (beyond it the request is refused unparsed).
MAX_QUERY_FIELDS = 6 * MAX_ITEMS + len(_SINGLE)


class PurgeRequestError(ValueError):
    """A purge request that cannot become an event; `message` names what is wrong."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def _known_fields() -> frozenset[str]:
    return frozenset(f.name for f in dataclasses.fields(InvalidationEvent)) | {"v"}


def _event(fields: dict[str, Any]) -> InvalidationEvent:
    """`fields` checked as a version-1 event would be on the topic."""
    return _parsed(json.dumps({"v": 1, **fields}, ensure_ascii=False).encode("utf-8"))


def query_params(query: str) -> list[tuple[str, str]]:
    """The decoded ``name=value`` pairs of a raw query string (a bare ``name`` has the
    value ``""``; ``+`` is a space); `PurgeRequestError` for a malformed one or too many."""
    if not query:
        return []
    parts = query.split("&")
    if len(parts) > MAX_QUERY_FIELDS:
        raise PurgeRequestError(f"more than {MAX_QUERY_FIELDS} query parameters")
    out = []
    for i, part in enumerate(parts):
        name, _, value = part.partition("=")
        if not name:
            raise PurgeRequestError(f"query parameter {i + 1} has no name")
        try:
            out.append((unquote_plus(name, errors="strict"), unquote_plus(value, errors="strict")))
        except UnicodeDecodeError:
            raise PurgeRequestError(
                f"query parameter {i + 1} is not UTF-8 once percent-decoded"
            ) from None
    return out


def _flag(name: str, value: str) -> bool:
    low = value.lower()
    if low in _TRUE:
        return True
    if low in _FALSE:
        return False
    raise PurgeRequestError(f"{name}={value[:20]!r} must be true or false")


def soft_flag(params: list[tuple[str, str]]) -> bool:
    """``soft`` from a query of the Kong-style routes, where it is the only parameter."""
    soft = False
    seen: set[str] = set()
    for name, value in params:
        if name != "soft":
            raise PurgeRequestError(
                f"unknown parameter {name[:40]!r} here (only soft); other purges: POST /purge"
            )
        if name in seen:
            raise PurgeRequestError("soft is given twice")
        seen.add(name)
        soft = _flag(name, value)
    return soft


def event_from_query(params: list[tuple[str, str]]) -> InvalidationEvent:
    """The event of a ``POST /purge?...`` query."""
    fields: dict[str, Any] = {}
    for name, value in params:
        if name in QUERY_FIELDS:
            fields.setdefault(QUERY_FIELDS[name], []).append(value)
            continue
        if name not in _SINGLE:
            known = ", ".join([*QUERY_FIELDS, *_SINGLE])
            raise PurgeRequestError(f"unknown parameter {name[:40]!r} (known: {known})")
        if name in fields or (name in ("all", "flush") and "flush" in fields):
            raise PurgeRequestError(f"{name} is given twice (or together with all/flush)")
        if name == "soft":
            fields["soft"] = _flag(name, value)
        elif name == "all":
            if not _flag(name, value):
                raise PurgeRequestError("all=false purges nothing: leave it out")
            fields["flush"] = FLUSH_ALL
        else:
            fields[name] = value
    if not fields:
        raise PurgeRequestError("nothing to purge: give tag, url, prefix, key, route, flush or all")
    return _event(fields)


def event_from_body(body: bytes) -> InvalidationEvent:
    """The event of a ``POST /purge`` JSON body (``"v"`` optional, unknown fields refused)."""
    if len(body) > MAX_EVENT_BYTES:
        raise PurgeRequestError(f"the body is larger than the {MAX_EVENT_BYTES} bytes allowed")
    try:
        fields = read_object(body)
    except EventError as exc:
        raise PurgeRequestError(f"the body is not a JSON event: {exc.message}") from None
    unknown = sorted(set(fields) - _known_fields())
    if unknown:
        raise PurgeRequestError(
            f"unknown field {unknown[0][:40]!r} (known: {', '.join(sorted(_known_fields()))})"
        )
    return _event(fields) if "v" not in fields else _parsed(body)


def _parsed(body: bytes) -> InvalidationEvent:
    try:
        return parse(body)
    except EventError as exc:
        raise PurgeRequestError(f"not a valid purge: {exc.message}") from None


def flush_all_event(soft: bool) -> InvalidationEvent:
    """``DELETE /proxy-cache``: everything."""
    return _event({"flush": FLUSH_ALL, "soft": soft})


def key_event(key: str, soft: bool) -> InvalidationEvent:
    """``DELETE /proxy-cache/{key}``: one exact cache key (all its variants)."""
    return _event({"keys": [key], "soft": soft})
