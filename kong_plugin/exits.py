"""How to end a request with a stored response through ``kong.response.exit`` so that the
client gets exactly that response (pure functions; the handler makes the call).

What Kong does with an exit (``kong/pdk/response.lua`` ``send``), and what it means here:

* Each header name given replaces the response's current value of that name; names not given
  keep their current values. In the ``access`` phase those are headers earlier plugins set. In
  the ``response`` phase they are the failed or revalidated upstream response's own headers,
  which Kong copied to the response before the phase ran (``kong/init.lua``
  ``Kong.response``): a stale-if-error answer would otherwise carry the error's
  ``Content-Encoding``, ``Set-Cookie``, ``Cache-Control``, validators... `response_phase_exit`
  clears every current name the stored response does not set, by giving it an empty array
  (``ngx.header[name] = {}`` removes a header).
* ``Content-Length`` is set to the length of the body given, unless the caller gave one. A
  response without content must not claim ``Content-Length: 0`` for a representation that
  has a length: `framing` omits it on 304 (RFC 9110 §15.4.5: a 304 carries no representation
  metadata beyond the fields listed there) and 204 (RFC 9110 §8.6), and for a HEAD request
  sends the stored body's length with no body (nginx sends no body for HEAD).

The names to clear are the upstream's own (the handler reads them from Kong's buffered
response, ``ngx.ctx.buffered_headers``), so headers other plugins set before the phase stay.
Where only ``kong.response.get_headers`` is available, those are cleared too (they cannot be
told apart there), and if that list was cut short, `ALWAYS_CLEAR` covers the fields that
matter.

Not guaranteed: a field outside `ALWAYS_CLEAR` that the upstream sent beyond the lines Kong
hands over (more than 1000) survives a response-phase exit in that fallback.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TypeAlias

KongHeaders: TypeAlias = dict[str, str | list[str]]

#: Statuses whose responses carry no content (RFC 9110 §6.4.1).
NO_CONTENT = frozenset({204, 304})
CONTENT_LENGTH = "content-length"
#: Names an exit must not clear: Kong sets ``Content-Length`` from the body (see `framing`),
#: refuses ``Transfer-Encoding`` with a warning per request, and nginx writes ``Connection``
#: itself (``ngx.resp.get_headers`` reports it, it is not in the header list).
KONG_MANAGED = frozenset({CONTENT_LENGTH, "transfer-encoding", "connection"})


def framing(method: str, status: int, body: bytes) -> tuple[bytes, KongHeaders]:
    """The body to pass to ``kong.response.exit`` and the ``Content-Length`` to set with it.

    An empty mapping means "let Kong set ``#body``"; ``[]`` clears the header.
    """
    if status in NO_CONTENT or status < 200:
        return b"", {CONTENT_LENGTH: []}
    if method == "HEAD":
        return b"", {CONTENT_LENGTH: str(len(body))}
    return body, {}


#: Cleared on a response-phase exit even when they were not seen: used when the upstream's
#: header list is incomplete (more lines than Kong hands over), so that no field describing
#: the failed response's representation, caching or cookies can reach the client.
ALWAYS_CLEAR = (
    "content-encoding",
    "content-range",
    "content-language",
    "content-location",
    "content-disposition",
    "content-md5",
    "set-cookie",
    "set-cookie2",
    "cache-control",
    "expires",
    "pragma",
    "etag",
    "last-modified",
    "vary",
    "location",
    "www-authenticate",
    "retry-after",
    "link",
    "surrogate-key",
    "cache-tag",
)


def response_phase_exit(out: Mapping[str, str | list[str]], current: Iterable[str]) -> KongHeaders:
    """`out` plus an empty-array entry for every `current` header name it does not set."""
    given = {name.lower() for name in out} | KONG_MANAGED
    merged: KongHeaders = dict(out)
    for name in current:
        low = name.lower()
        if low not in given:
            merged[low] = []
            given.add(low)
    return merged


def header_names(headers: Mapping[str, object] | None) -> list[str]:
    """The names of a Kong header map (``kong.response.get_headers()``), lower-cased."""
    return [str(name).lower() for name in headers or {}]
