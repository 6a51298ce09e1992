"""Validation: revalidating a stored response with the origin (RFC 9111 §4.3.1, §4.3.3,
§4.3.4) and answering a client's own conditional request from a stored one (§4.3.2,
RFC 9110 §13.1-13.2).

* `revalidation_headers` -- the conditional request a cache sends (§4.3.1):
  ``If-None-Match`` with the stored ``ETag`` as stored, strong or weak (``W/"x"`` stays
  weak). An ``ETag`` stored without its quotes (``abc``, ``W/abc``) is sent quoted
  (``"abc"``, ``W/"abc"``); one that cannot be an entity-tag (a ``"`` inside, a control
  character, a space, several ``ETag`` fields that differ) is not sent (RFC 9110 §8.8.3).
  ``If-Modified-Since`` carries the stored ``Last-Modified`` when it is one valid
  HTTP-date, exactly as stored (RFC 9110 §13.1.3 advises the string received); with no
  usable ``ETag`` and no valid ``Last-Modified``, the stored ``Date`` (§4.3.2 lets a
  cache validate on it; an origin evaluates If-None-Match first anyway). Empty: the entry
  cannot be validated, the request fetches in full.
  The rest of the revalidating request is the client's own: it found this entry, so it
  carries the header fields the stored ``Vary`` names with the values that selected it
  (the sidecar picks a variant by them, `kong_plugin.vary`), as §4.3.1 asks. Its own
  validators are replaced by these (`kong_plugin.decide`), or removed when the entry
  has none of that kind: a 304 must answer for the stored response, not for whatever the
  client holds.
* `updates_entry` -- §4.3.4: does a 304 identify the stored response for update? Not when
  it carries an ``ETag`` naming another entity-tag than the stored one, or when the stored
  response has none (a strong validator the stored response lacks, or a weak one that
  does not correspond to it). Tags are compared by their opaque part, weak flags ignored
  (the weak comparison, RFC 9110 §8.8.3.2) -- deliberately: a server compressing its 200s
  sends them with a weakened ``W/"x"`` but its 304s with the strong ``"x"`` (RFC 9110
  §8.8.3.3 weak tags from content coding), and the strong comparison would never let
  such an entry be refreshed. A 304 with no ``ETag`` identifies the entry: it answers
  the conditional request sent for this one entry (§4.3.4 asks that of a 304 without
  validators when there is a single stored response).
* `merge_304` -- §3.2: every field of the 304 replaces the stored one, except those never
  stored (hop-by-hop, ``Set-Cookie``, ``Age``, rate-limit counters ...,
  `kong_plugin.headers.storable_headers`), ``Content-Length``, and the fields the stored
  body depends on: ``Content-Encoding`` (the stored bytes are in the stored coding; a 304
  naming another would mislabel them) and ``Content-Range`` (it describes the stored
  bytes; §3.2 also lets a cache ignore it as processed by the recipient). Every other
  field, ``Content-Type`` and ``Content-Language`` included, is updated as §3.2 asks.
  Stored fields keep their order; new ones are appended in the 304's order.
* `evaluate_conditional` -- should a fresh (or validated) entry answer this client with
  304? Only for GET/HEAD and a 2xx stored status. ``If-None-Match`` (weak comparison,
  ``*``, lists) takes precedence; ``If-Modified-Since`` is used only without it, and only
  if it is one valid HTTP-date, compared with ``Last-Modified`` (else ``Date``, §4.3.2).
  A date later than the stored ``Date`` is ignored (the full response is sent): RFC 9110
  §13.1.3 reads the date on the origin's clock, and the stored ``Date`` is the latest
  time of that clock the cache knows (RFC 2616 §14.25 called a date later than the
  server's time invalid); such a date cannot come from this response's own
  ``Last-Modified`` or ``Date``, and a full 200 is never wrong. Without a valid ``Date``
  there is nothing to compare with and the date is used as is.
  ``If-Match``/``If-Unmodified-Since`` requests never reach here: `request_decision`
  sends them to the origin.
* `not_modified_response_headers` -- RFC 9110 §15.4.5: a 304 carries ``Cache-Control``,
  ``Content-Location``, ``Date``, ``ETag``, ``Expires``, ``Vary``, and ``Last-Modified``
  only when there is no ETag. The caller adds ``Age`` and the X-Cache headers.

Not guaranteed: a client's ``If-None-Match`` is parsed leniently (an unquoted tag is
compared as an opaque string); ``Last-Modified`` in a 304 is not compared with the stored
one (only ``ETag`` decides §4.3.4).
"""

from __future__ import annotations

import re

from kong_plugin.headers import HeaderInput, Headers, storable_headers
from kong_plugin.http_date import parse_http_date

_ETAG_RE = re.compile(r'(W/)?"([^"]*)"|(W/)?([^\s,"]+)')
#: RFC 9110 §8.8.3 etagc: %x21 / %x23-7E / obs-text. Non-ASCII characters stand for
#: obs-text, except lone surrogates (undecodable bytes), which cannot be sent on.
_ETAGC = "\x21\x23-\x7e\x80-\ud7ff\ue000-\U0010ffff"
_ENTITY_TAG_RE = re.compile(f'(W/)?"([{_ETAGC}]*)"')
_BARE_TAG_RE = re.compile(f"(W/)?([{_ETAGC}]+)")
_OWS = " \t"
#: Fields a 304 may not overwrite: the stored body depends on them (§3.2).
BODY_BOUND = frozenset({"content-length", "content-encoding", "content-range"})
NOT_MODIFIED_FIELDS = ("cache-control", "content-location", "date", "etag", "expires", "vary")


def parse_entity_tags(value: str) -> tuple[bool, tuple[str, ...]]:
    """(star, opaque tags) of an ``If-None-Match``/``ETag`` value; weak flags dropped."""
    if value.strip() == "*":
        return True, ()
    tags = []
    for m in _ETAG_RE.finditer(value):
        quoted, bare = m.group(2), m.group(4)
        tags.append(quoted if quoted is not None else bare)
    return False, tuple(tags)


def entity_tag(value: str) -> str | None:
    """`value` (one ``ETag`` field) as a valid entity-tag (RFC 9110 §8.8.3): as it is when
    it already is one, quoted when it lacks only the quotes, None when it cannot be one."""
    value = value.strip(_OWS)
    if _ENTITY_TAG_RE.fullmatch(value):
        return value
    bare = _BARE_TAG_RE.fullmatch(value)
    if bare is None:
        return None
    weak, opaque = bare.groups()
    return f'{weak or ""}"{opaque}"'


def stored_entity_tag(headers: HeaderInput) -> str | None:
    """The stored response's entity-tag (`entity_tag`), None if it has no usable one."""
    lines = set(Headers.of(headers).get_all("etag"))
    if len(lines) != 1:
        return None
    return entity_tag(lines.pop())


def _opaque(tag: str) -> str:
    """The opaque-tag of a valid entity-tag, without quotes and weak flag."""
    return tag.removeprefix("W/")[1:-1]


def revalidation_headers(stored_headers: HeaderInput) -> dict[str, str]:
    """Conditional request fields to validate a stored response (§4.3.1)."""
    h = Headers.of(stored_headers)
    out: dict[str, str] = {}
    etag = stored_entity_tag(h)
    if etag is not None:
        out["If-None-Match"] = etag
    last_modified = h.get("last-modified")
    if last_modified and parse_http_date(last_modified) is not None:
        out["If-Modified-Since"] = last_modified.strip(_OWS)
    elif etag is None:
        date = h.get("date")
        if date and parse_http_date(date) is not None:
            out["If-Modified-Since"] = date.strip(_OWS)
    return out


def updates_entry(stored_headers: HeaderInput, not_modified_headers: HeaderInput) -> bool:
    """§4.3.4: may this 304 update the stored response (module docstring)?"""
    lines = Headers.of(not_modified_headers).get_all("etag")
    if not lines:
        return True
    stored = stored_entity_tag(stored_headers)
    if stored is None:
        return False
    for line in lines:
        tag = entity_tag(line)
        if tag is None or _opaque(tag) != _opaque(stored):
            return False
    return True


def merge_304(stored_headers: HeaderInput, not_modified_headers: HeaderInput) -> Headers:
    """The stored header fields updated from a 304 (Not Modified) response (§3.2, §4.3.4)."""
    stored = Headers.of(stored_headers)
    update = storable_headers(not_modified_headers).without(BODY_BOUND)
    merged = dict(stored.items())
    for name, values in update.items():
        merged[name] = values
    return Headers(merged)


def _weak_match(request_tags: tuple[str, ...], stored_etag: str) -> bool:
    star, stored = parse_entity_tags(stored_etag)
    if star or len(stored) != 1:
        return False
    return stored[0] in request_tags


def _if_modified_since(request: Headers, stored: Headers) -> bool:
    """RFC 9110 §13.1.3 / RFC 9111 §4.3.2: not modified since the client's date?"""
    lines = request.get_all("if-modified-since")
    if len(lines) != 1:
        return False
    since = parse_http_date(lines[0])
    if since is None:
        return False
    date = parse_http_date(stored.get("date"))
    if date is not None and since > date:
        return False  # later than the origin's latest known time: ignored
    modified = parse_http_date(stored.get("last-modified"))
    if modified is None:
        modified = date
    return modified is not None and modified <= since


def evaluate_conditional(
    request_headers: HeaderInput,
    stored_status: int,
    stored_headers: HeaderInput,
    *,
    method: str = "GET",
) -> bool:
    """True if the client's conditional request is answered with 304 from this entry."""
    if method not in ("GET", "HEAD") or not 200 <= stored_status < 300:
        return False
    req = Headers.of(request_headers)
    stored = Headers.of(stored_headers)
    if_none_match = req.combined("if-none-match")
    if if_none_match is not None:
        star, tags = parse_entity_tags(if_none_match)
        if star:
            return True
        etag = stored.get("etag")
        return etag is not None and _weak_match(tags, etag)
    return _if_modified_since(req, stored)


def not_modified_response_headers(stored_headers: HeaderInput) -> Headers:
    """The fields a 304 generated from a stored response carries (RFC 9110 §15.4.5)."""
    stored = Headers.of(stored_headers)
    fields = {name: stored.get_all(name) for name in NOT_MODIFIED_FIELDS if name in stored}
    if "etag" not in stored and "last-modified" in stored:
        fields["last-modified"] = stored.get_all("last-modified")
    return Headers(fields)
