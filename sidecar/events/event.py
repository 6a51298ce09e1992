"""The invalidation event, version 1: its fields, their limits, and bytes in and out.

An event is one JSON object (``schema/strata.invalidation.v1.schema.json`` says the same
for producers in other languages)::

    {"v": 1, "urls": ["/products/42?lang=en"], "tags": ["products:42"],
     "prefixes": ["/products/"], "flush": "catalog", "soft": true,
     "id": "2d1c...", "origin": "sidecar node-a", "ts": 1767225600000}

* ``v`` (required): the number 1 (``1.0`` is the same number). Any other number is refused:
  a later version may change what fields mean.
* ``urls``, ``tags``, ``prefixes``: arrays of strings, duplicates allowed (they collapse);
  ``flush``: a route or service name, ``"*"`` for everything. At least one URL, tag or
  prefix, or a flush. What each reaches is `sidecar.events.tagging`'s business.
* ``keys``, ``routes``, ``key_prefixes`` (extension fields, `sidecar.events.extensions`):
  cache keys, route key prefixes and cache-key prefixes, for the purges the sidecar's own
  APIs accept; ``soft`` with any ``keys`` or ``key_prefixes`` is refused.
* ``soft``: mark stale instead of removing (default false).
* ``id``: the producer's id for the event (a replay of a given id may be skipped, see
  `event_id`); ``origin``: who sent it, for logs; ``ts``: when, an integer of
  milliseconds since the Unix epoch (UTC), for latency measurements and logs only.
* Any other top-level field is ignored: that is how version 1 is extended without
  breaking readers. Its value still counts towards the size and nesting limits.

`parse` reads untrusted bytes, `encode` writes the canonical form (sorted keys, no
spaces, arrays sorted and without duplicates, defaults left out, UTF-8), and building an
`InvalidationEvent` in Python checks the same rules, so a sidecar never publishes an event
its peers would refuse (except one too large: `encode` refuses it).

Not guaranteed: ``ts`` is the producer's clock and is not checked against ours; ``origin``
is not authenticated (anyone who can write to the topic can claim any origin).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sidecar.events.errors import EventError, Reason
from sidecar.events.extensions import MAX_KEY_PREFIXES, check_key, check_route
from sidecar.events.json_input import MAX_EVENT_BYTES, json_type, quote, read_object
from sidecar.events.tagging import MAX_TAG_CHARS, ROUTE_NAME_TAG
from sidecar.events.text import check_text as _text

__all__ = [
    "FLUSH_ALL",
    "MAX_FLUSH_CHARS",
    "MAX_ID_CHARS",
    "MAX_ITEMS",
    "MAX_ORIGIN_CHARS",
    "MAX_TS",
    "MAX_URL_CHARS",
    "VERSION",
    "InvalidationEvent",
    "content_digest",
    "encode",
    "event_id",
    "parse",
]

VERSION = 1
#: Items per array (``urls``, ``tags``, ``prefixes``), each.
MAX_ITEMS = 1000
#: Characters in a URL or a prefix.
MAX_URL_CHARS = 2048
#: Characters in a route or service name (``route-name:<name>`` must make a tag).
MAX_FLUSH_CHARS = MAX_TAG_CHARS - len(ROUTE_NAME_TAG)
MAX_ID_CHARS = 128
MAX_ORIGIN_CHARS = 256
#: The largest ``ts`` (2^53 - 1: exact in every JSON reader).
MAX_TS = 2**53 - 1
#: The ``flush`` value that purges everything (no Kong route or service name has a ``*``).
FLUSH_ALL = "*"

# Character rules: a string is refused when one of these finds something. The same
# expressions are in the schema (`"not": {"pattern": ...}`), compared by a test.
#: Tags, flush names and ids: printable ASCII without spaces (the sidecar's tag rule).
NOT_TAG_TEXT = re.compile(r"[^!-~]")
#: URLs: no control character (C0, DEL, C1), no space, no fragment.
NOT_URL_TEXT = re.compile(r"[\u0000-\u0020\u007f-\u009f#]")
#: Prefixes: as URLs, and no query.
NOT_PREFIX_TEXT = re.compile(r"[\u0000-\u0020\u007f-\u009f#?]")
#: Origins: no control character (spaces and non-ASCII allowed).
NOT_ORIGIN_TEXT = re.compile(r"[\u0000-\u001f\u007f-\u009f]")

_ARRAYS = ("urls", "tags", "prefixes", "keys", "routes", "key_prefixes")
#: The arrays that name cache keys: a soft purge cannot apply to them.
_KEY_ARRAYS = ("keys", "key_prefixes")
_STRINGS = ("flush", "id", "origin")


@dataclass(frozen=True, slots=True)
class InvalidationEvent:
    """A checked version-1 event (building one raises `EventError` like `parse`).

    Arrays are kept sorted and without duplicates, so two events that mean the same are
    equal; ``None`` is an absent optional field.
    """

    urls: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    prefixes: tuple[str, ...] = ()
    keys: tuple[str, ...] = ()
    routes: tuple[str, ...] = ()
    key_prefixes: tuple[str, ...] = ()
    flush: str | None = None
    soft: bool = False
    id: str | None = None
    origin: str | None = None
    ts: int | None = None

    def __post_init__(self) -> None:
        _check(self)
        for name in _ARRAYS:
            object.__setattr__(self, name, tuple(sorted(set(getattr(self, name)))))

    @property
    def flushes_all(self) -> bool:
        return self.flush == FLUSH_ALL


def _path_text(value: str, field: str, forbidden: re.Pattern[str], rule: str) -> None:
    _text(value, field, MAX_URL_CHARS, forbidden, rule)
    if not value.startswith("/"):
        raise EventError(
            Reason.BAD_VALUE, f"{field} {quote(value)} does not start with '/' ({rule})"
        )


def _check_url(value: str, field: str) -> None:
    _path_text(
        value,
        field,
        NOT_URL_TEXT,
        "a URL is a path and query as sent: no space, control character or '#'",
    )


def _check_prefix(value: str, field: str) -> None:
    _path_text(
        value,
        field,
        NOT_PREFIX_TEXT,
        "a prefix is a path: no query, space, control character or '#'",
    )


def _check_tag(value: str, field: str) -> None:
    _text(value, field, MAX_TAG_CHARS, NOT_TAG_TEXT, "printable ASCII without spaces")


_ITEM_CHECKS: dict[str, Callable[[str, str], None]] = {
    "urls": _check_url,
    "tags": _check_tag,
    "prefixes": _check_prefix,
    "keys": check_key,
    "routes": check_route,
    "key_prefixes": check_key,
}


def _check(event: InvalidationEvent) -> None:
    for name in _ARRAYS:
        items = getattr(event, name)
        if isinstance(items, str):
            raise EventError(Reason.WRONG_TYPE, f"{name} must be strings, not one string")
        if len(items) > MAX_ITEMS:
            raise EventError(
                Reason.TOO_MANY_ITEMS,
                f"{name} has {len(items)} items, more than the {MAX_ITEMS} allowed",
            )
        if name == "key_prefixes" and len(items) > MAX_KEY_PREFIXES:
            raise EventError(
                Reason.TOO_MANY_ITEMS,
                f"key_prefixes has {len(items)} items, more than the {MAX_KEY_PREFIXES} allowed",
            )
        for i, item in enumerate(items):
            _ITEM_CHECKS[name](item, f"{name}[{i}]")
    if event.flush is not None:
        _text(
            event.flush,
            "flush",
            MAX_FLUSH_CHARS,
            NOT_TAG_TEXT,
            "a route or service name: printable ASCII without spaces",
        )
    if event.id is not None:
        _text(event.id, "id", MAX_ID_CHARS, NOT_TAG_TEXT, "printable ASCII without spaces")
    if event.origin is not None:
        _text(event.origin, "origin", MAX_ORIGIN_CHARS, NOT_ORIGIN_TEXT, "no control character")
    if event.ts is not None and not 0 <= event.ts <= MAX_TS:
        raise EventError(
            Reason.BAD_VALUE,
            f"ts {quote(event.ts)} is outside 0..{MAX_TS} (milliseconds since 1970)",
        )
    if event.soft:
        for name in _KEY_ARRAYS:
            if getattr(event, name):
                raise EventError(
                    Reason.SOFT_KEY_PURGE,
                    f"soft with {name}: a key purge removes the entry and cannot mark it "
                    "stale (send the keys in an event without soft)",
                )
    if not (any(getattr(event, name) for name in _ARRAYS) or event.flush is not None):
        raise EventError(
            Reason.EMPTY,
            "nothing to purge: no urls, tags, prefixes, keys, routes or key_prefixes, and no flush",
        )


def _version(fields: dict[str, Any]) -> None:
    if "v" not in fields:
        raise EventError(Reason.MISSING_VERSION, 'no "v" (version 1 events have "v": 1)')
    v = fields["v"]
    if isinstance(v, bool) or not isinstance(v, int | float):
        raise EventError(
            Reason.WRONG_TYPE, f'"v" must be the number {VERSION}, not a {json_type(v)}'
        )
    if v != VERSION:
        raise EventError(
            Reason.UNSUPPORTED_VERSION,
            f'"v" is {quote(v)}; this reader knows version {VERSION} only',
        )


def _strings(fields: dict[str, Any], name: str) -> tuple[str, ...]:
    value = fields.get(name, [])
    if not isinstance(value, list):
        raise EventError(
            Reason.WRONG_TYPE, f"{name} must be an array of strings, not a {json_type(value)}"
        )
    if len(value) > MAX_ITEMS:
        raise EventError(
            Reason.TOO_MANY_ITEMS,
            f"{name} has {len(value)} items, more than the {MAX_ITEMS} allowed",
        )
    for i, item in enumerate(value):
        if not isinstance(item, str):
            raise EventError(
                Reason.WRONG_TYPE, f"{name}[{i}] must be a string, not a {json_type(item)}"
            )
    return tuple(value)


def _string(fields: dict[str, Any], name: str) -> str | None:
    value = fields.get(name)
    if name in fields and not isinstance(value, str):
        raise EventError(Reason.WRONG_TYPE, f"{name} must be a string, not a {json_type(value)}")
    return value


def _soft(fields: dict[str, Any]) -> bool:
    value = fields.get("soft", False)
    if not isinstance(value, bool):
        raise EventError(Reason.WRONG_TYPE, f"soft must be true or false, not a {json_type(value)}")
    return value


def _ts(fields: dict[str, Any]) -> int | None:
    if "ts" not in fields:
        return None
    value = fields["ts"]
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        kind = "fraction" if isinstance(value, float) else f"{json_type(value)}"
        raise EventError(
            Reason.WRONG_TYPE,
            f"ts must be an integer (milliseconds since 1970), not a {kind}",
        )
    return value


def parse(
    raw: bytes | bytearray | memoryview | None, *, yielding: bool = False
) -> InvalidationEvent:
    """The event in `raw` (a message value as read from the topic); `yielding`: see
    `sidecar.events.json_input` (for a worker thread).

    Raises `EventError` -- and nothing else -- for anything that is not a valid version-1
    event; the checks run in a fixed order (size, encoding, JSON, object, version, each
    field in turn, something to purge), so the first problem is the one reported.
    """
    fields = read_object(raw, yielding=yielding)
    _version(fields)
    urls = _strings(fields, "urls")
    tags = _strings(fields, "tags")
    prefixes = _strings(fields, "prefixes")
    keys = _strings(fields, "keys")
    routes = _strings(fields, "routes")
    key_prefixes = _strings(fields, "key_prefixes")
    flush = _string(fields, "flush")
    soft = _soft(fields)
    given_id = _string(fields, "id")
    origin = _string(fields, "origin")
    ts = _ts(fields)
    return InvalidationEvent(
        urls=urls,
        tags=tags,
        prefixes=prefixes,
        keys=keys,
        routes=routes,
        key_prefixes=key_prefixes,
        flush=flush,
        soft=soft,
        id=given_id,
        origin=origin,
        ts=ts,
    )


def _canonical(event: InvalidationEvent) -> dict[str, Any]:
    out: dict[str, Any] = {"v": VERSION}
    for name in _ARRAYS:
        if getattr(event, name):
            out[name] = list(getattr(event, name))
    for name in _STRINGS:
        if getattr(event, name) is not None:
            out[name] = getattr(event, name)
    if event.soft:
        out["soft"] = True
    if event.ts is not None:
        out["ts"] = event.ts
    return out


def _dump(event: InvalidationEvent) -> bytes:
    return json.dumps(
        _canonical(event), sort_keys=True, separators=(",", ":"), ensure_ascii=False
    ).encode("utf-8")


def encode(event: InvalidationEvent) -> bytes:
    """The canonical bytes of `event` (what a sidecar publishes; `parse` reads them back
    to an equal event). Raises `EventError` (``too_large``) when they would exceed
    `MAX_EVENT_BYTES`: the caller splits such an event."""
    data = _dump(event)
    if len(data) > MAX_EVENT_BYTES:
        raise EventError(
            Reason.TOO_LARGE,
            f"the event encodes to {len(data)} bytes, more than the {MAX_EVENT_BYTES} allowed",
        )
    return data


def event_id(event: InvalidationEvent) -> str:
    """The idempotence key of `event`: its ``id`` when the producer gave one, else
    ``sha256:`` and the digest of its canonical form (so a redelivered message has the
    same key; two producers sending the same purge at different ``ts`` do not).

    Skip a replay only when the producer gave the id (``event.id is not None``): two
    identical events without ``id`` or ``ts`` may be two purges a moment apart (a script
    run twice), and skipping the second could leave an entry stored in between. Applying
    a purge twice costs only misses.
    """
    if event.id is not None:
        return event.id
    return "sha256:" + hashlib.sha256(_dump(event)).hexdigest()


def content_digest(event: InvalidationEvent) -> str:
    """32 hex digits of the SHA-256 of what `event` purges: its canonical form without
    ``id``, ``origin`` and ``ts``. Part of the once-key with the id, so that an id reused
    for another purge (or guessed ahead of time) never suppresses that purge."""
    fields = _canonical(event)
    for name in ("id", "origin", "ts"):
        fields.pop(name, None)
    data = json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(data.encode("utf-8")).hexdigest()[:32]
