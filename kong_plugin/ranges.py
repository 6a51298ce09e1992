"""Byte ranges served from a stored response (RFC 9110 §14, §13.1.5, §15.3.7, §15.5.17).

Pure functions: `parse_range` reads a ``Range`` field, `if_range_holds` evaluates
``If-Range`` against a stored response, `select_range` says how a stored response answers
a request -- whole (None), one part (`Partial`, a 206) or not at all (`Unsatisfiable`, a
416) -- and `partial_headers` / `unsatisfiable_headers` give the header fields of those
answers. `kong_plugin.replies.entry_reply` puts them together.

The rules, in the order `select_range` applies them:

* only a ``GET`` has range semantics (§14.2): for any other method the field is ignored;
  so is it when the stored status is not 200 (a 206 would describe a representation
  Strata does not hold);
* a ``Range`` is ignored -- the whole 200 is served, as §14.2 allows -- when it is absent,
  repeated, longer than `MAX_RANGE_FIELD`, not syntactically a ``ranges-specifier``
  (§14.1), of a unit other than ``bytes`` (units are case-insensitive, §14.1), or asks for
  more than one range (no ``multipart/byteranges``: see below);
* ``If-Range`` (§13.1.5): the range applies only if the field is an entity-tag that
  strongly matches the stored ``ETag`` (§8.8.3.2: neither weak, identical opaque tags), or
  an HTTP-date equal to the stored ``Last-Modified`` that is a strong validator (§8.8.2.2:
  at least one second before the stored ``Date``); otherwise the whole 200;
* one ``first-last`` / ``first-`` / ``-suffix`` range: satisfiable (§14.1.1) when
  ``first`` is below the length or the suffix is not 0; ``last`` beyond the end is
  clamped, a suffix longer than the body selects all of it -> `Partial`; otherwise
  `Unsatisfiable` (``Content-Range: bytes */length``, §14.4). A suffix range of an empty
  body is satisfiable by §14.1.1 yet has no byte to send: the whole (empty) 200 is served.

Client conditionals (``If-None-Match``/``If-Modified-Since``) are evaluated before any of
this by the caller: a 304 wins over a range (§13.2.2).

Not guaranteed: several ranges are never answered as ``multipart/byteranges`` (the whole
200 goes out instead, which §14.2 allows); a range applies to the stored bytes as they are,
so with a stored ``Content-Encoding`` it selects encoded bytes (that encoding is the
representation, §8.4); a 416 carries the validators and ``Vary``, not the stored
representation's other fields (see `unsatisfiable_headers`).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from kong_plugin.headers import HeaderInput, Headers
from kong_plugin.http_date import parse_http_date
from kong_plugin.validation import entity_tag, stored_entity_tag

#: A ``Range`` field longer than this is ignored (a single byte range needs a few dozen).
MAX_RANGE_FIELD = 1024
ACCEPT_RANGES = "bytes"
#: What a 416 carries of the stored response: its validators and ``Vary`` (§15.5.17 asks
#: only for ``Content-Range``; the body-describing fields would describe bytes not sent).
UNSATISFIABLE_FIELDS = ("date", "etag", "last-modified", "vary")
_DIGITS = frozenset("0123456789")


@dataclass(frozen=True, slots=True)
class RangeSpec:
    """One ``byte-range-spec`` (§14.1.1): ``first-last`` (`last` None when open-ended) or,
    with `first` None, the suffix range ``-suffix`` in `last`."""

    first: int | None
    last: int | None

    @property
    def suffix(self) -> bool:
        return self.first is None


@dataclass(frozen=True, slots=True)
class Partial:
    """Bytes `first`..`last` (inclusive) of a `length`-byte body: a 206 (§15.3.7)."""

    first: int
    last: int
    length: int

    @property
    def content_range(self) -> str:
        return f"bytes {self.first}-{self.last}/{self.length}"

    def slice(self, body: bytes) -> bytes:
        return body[self.first : self.last + 1]


@dataclass(frozen=True, slots=True)
class Unsatisfiable:
    """No byte of a `length`-byte body is selected: a 416 (§15.5.17)."""

    length: int

    @property
    def content_range(self) -> str:
        return f"bytes */{self.length}"


RangeAnswer = Partial | Unsatisfiable


def _number(text: str) -> int | None:
    """A ``1*DIGIT`` (ASCII only; `str.isdigit` would accept other scripts' digits)."""
    if not text or not _DIGITS.issuperset(text):
        return None
    return int(text)


def _spec(item: str) -> RangeSpec | None:
    first_text, dash, last_text = item.partition("-")
    if not dash:
        return None
    last = _number(last_text) if last_text else None
    if last_text and last is None:
        return None
    if not first_text:  # suffix-range = "-" suffix-length
        return RangeSpec(None, last) if last is not None else None
    first = _number(first_text)
    if first is None or (last is not None and last < first):
        return None  # §14.1.1: last-pos below first-pos makes the range-spec invalid
    return RangeSpec(first, last)


def _parse(value: str) -> RangeSpec | None:
    unit, equals, range_set = value.strip(" \t").partition("=")
    if not equals or unit.lower() != "bytes":
        return None
    # range-set = 1#range-spec: empty list elements are allowed and skipped (§5.6.1)
    items = [item.strip(" \t") for item in range_set.split(",")]
    items = [item for item in items if item]
    if len(items) != 1:
        return None  # none, or several ranges: served whole (no multipart/byteranges)
    return _spec(items[0])


_parse_memo = lru_cache(maxsize=512)(_parse)


def parse_range(value: str | None) -> RangeSpec | None:
    """The single byte range a ``Range`` value asks for, or None when the field is to be
    ignored (absent, too long, invalid, another unit, several ranges). Never raises."""
    if not value or len(value) > MAX_RANGE_FIELD:
        return None
    return _parse_memo(value) if len(value) <= 128 else _parse(value)


def resolve(spec: RangeSpec, length: int) -> RangeAnswer | None:
    """`spec` applied to a `length`-byte body (§14.1.1); None: serve the whole body (a
    suffix range of an empty body)."""
    if spec.suffix:
        suffix = spec.last or 0
        if suffix == 0:
            return Unsatisfiable(length)
        if length == 0:
            return None
        return Partial(max(length - suffix, 0), length - 1, length)
    first = spec.first or 0
    if first >= length:
        return Unsatisfiable(length)
    last = length - 1 if spec.last is None else min(spec.last, length - 1)
    return Partial(first, last, length)


def if_range_holds(if_range: str, stored_headers: HeaderInput) -> bool:
    """§13.1.5: may the range apply? An entity-tag must strongly match the stored ``ETag``
    (a weak one on either side never does); an HTTP-date must equal the stored
    ``Last-Modified``, itself at least 1 s before the stored ``Date`` (§8.8.2.2)."""
    stored = Headers.of(stored_headers)
    value = if_range.strip(" \t")
    if value.startswith(('"', "W/", "w/")):
        # strong comparison (§8.8.3.2): both valid entity-tags, neither weak, the same
        stored_tag = stored_entity_tag(stored)
        return (
            entity_tag(value) == value
            and not value.startswith("W/")
            and stored_tag is not None
            and not stored_tag.startswith("W/")
            and stored_tag == value
        )
    since = parse_http_date(value)
    modified = parse_http_date(stored.get("last-modified"))
    date = parse_http_date(stored.get("date"))
    if since is None or modified is None or date is None:
        return False
    return since == modified and date - modified >= 1


def select_range(
    method: str, request_headers: HeaderInput, status: int, stored_headers: HeaderInput, length: int
) -> RangeAnswer | None:
    """How a stored response (`status`, `stored_headers`, a `length`-byte body) answers a
    request: None (whole), `Partial` or `Unsatisfiable` (module docstring)."""
    if method != "GET" or status != 200:
        return None
    request = Headers.of(request_headers)
    lines = request.get_all("range")
    if len(lines) != 1:
        return None
    spec = parse_range(lines[0])
    if spec is None:
        return None
    if_range = request.get_all("if-range")
    if if_range and (len(if_range) != 1 or not if_range_holds(if_range[0], stored_headers)):
        return None
    return resolve(spec, length)


def partial_headers(replayed: Headers, answer: Partial) -> Headers:
    """The fields of a 206: `replayed`, the fields the whole 200 would have (§15.3.7;
    ``Content-Length`` is set from the part sent), plus ``Content-Range`` and
    ``Accept-Ranges``."""
    return replayed.with_values("content-range", (answer.content_range,)).with_values(
        "accept-ranges", (ACCEPT_RANGES,)
    )


def unsatisfiable_headers(replayed: Headers, answer: Unsatisfiable) -> Headers:
    """The fields of a 416: ``Content-Range: bytes */length`` (§14.4, §15.5.17),
    ``Accept-Ranges``, and the `UNSATISFIABLE_FIELDS` of `replayed` (the fields the whole
    200 would have). Not the stored freshness (``Cache-Control``, ``Expires``): the 416 is
    not the stored response, and a cache downstream must not keep it in its place; not the
    content fields (``Content-Type``, ``Content-Encoding``...): the 416 has no content."""
    fields = {name: replayed.get_all(name) for name in UNSATISFIABLE_FIELDS if name in replayed}
    fields["content-range"] = (answer.content_range,)
    fields["accept-ranges"] = (ACCEPT_RANGES,)
    return Headers(fields)
