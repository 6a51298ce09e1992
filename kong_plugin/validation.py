"""Validation: revalidating a stored response with the origin (RFC 9111 §4.3.1, §4.3.4)
and answering a client's own conditional request from a stored one (§4.3.2, RFC 9110
§13.1-13.2).

* `revalidation_headers` -- the conditional request a cache sends: ``If-None-Match`` with
  the stored ``ETag``; ``If-Modified-Since`` with the stored ``Last-Modified``, or with
  ``Date`` when there is neither ``Last-Modified`` nor ``ETag`` (RFC 9110 §13.1.3 allows
  the Date; with an ETag the origin would ignore it anyway). Empty: cannot revalidate.
* `merge_304` -- §3.2: every field of the 304 replaces the stored one, except those never
  stored (hop-by-hop, ``Set-Cookie``, ``Age``, rate-limit counters ...), ``Content-Length``,
  and the fields the stored body depends on (``Content-Encoding``, ``Content-Range``).
  Stored fields keep their order; new ones are appended in the 304's order.
* `evaluate_conditional` -- should a fresh (or validated) entry answer this client with
  304? Only for GET/HEAD and a 2xx stored status. ``If-None-Match`` (weak comparison,
  ``*``, lists) takes precedence; ``If-Modified-Since`` is used only without it, and only
  if it is one valid HTTP-date, compared with ``Last-Modified`` (else ``Date``).
  ``If-Match``/``If-Unmodified-Since`` requests never reach here: `request_decision`
  sends them to the origin.
* `not_modified_response_headers` -- RFC 9110 §15.4.5: a 304 carries ``Cache-Control``,
  ``Content-Location``, ``Date``, ``ETag``, ``Expires``, ``Vary``, and ``Last-Modified``
  only when there is no ETag. The caller adds ``Age`` and the X-Cache headers.

Not guaranteed: entity-tags are parsed leniently (an unquoted tag is compared as an opaque
string); If-Modified-Since dates later than the current time are not rejected.
"""

from __future__ import annotations

import re

from kong_plugin.headers import HeaderInput, Headers, storable_headers
from kong_plugin.http_date import parse_http_date

_ETAG_RE = re.compile(r'(W/)?"([^"]*)"|(W/)?([^\s,"]+)')
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


def revalidation_headers(stored_headers: HeaderInput) -> dict[str, str]:
    """Conditional request fields to validate a stored response (§4.3.1)."""
    h = Headers.of(stored_headers)
    out: dict[str, str] = {}
    etag = h.get("etag")
    if etag:
        out["If-None-Match"] = etag
    last_modified = h.get("last-modified")
    if last_modified and parse_http_date(last_modified) is not None:
        out["If-Modified-Since"] = last_modified
    elif not etag:
        date = h.get("date")
        if date and parse_http_date(date) is not None:
            out["If-Modified-Since"] = date
    return out


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
    ims_lines = req.get_all("if-modified-since")
    if len(ims_lines) != 1:
        return False
    since = parse_http_date(ims_lines[0])
    if since is None:
        return False
    modified = parse_http_date(stored.get("last-modified"))
    if modified is None:
        modified = parse_http_date(stored.get("date"))
    return modified is not None and modified <= since


def not_modified_response_headers(stored_headers: HeaderInput) -> Headers:
    """The fields a 304 generated from a stored response carries (RFC 9110 §15.4.5)."""
    stored = Headers.of(stored_headers)
    fields = {name: stored.get_all(name) for name in NOT_MODIFIED_FIELDS if name in stored}
    if "etag" not in stored and "last-modified" in stored:
        fields["last-modified"] = stored.get_all("last-modified")
    return Headers(fields)
