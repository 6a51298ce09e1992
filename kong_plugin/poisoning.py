"""Request headers that let a client reshape the origin's answer without being in the key.

Web cache poisoning works when the origin honours a request header the cache does not key
on: the attacker's request stores a response shaped by that header, and everyone else is
served it. Many frameworks and servers honour well-known "override" headers by default, so
on a request whose response may be stored the plugin removes them from the request it
forwards (``kong.service.request.clear_header``), unless the route keys on them
(``vary_headers``). The default ``strip_request_headers``
(`kong_plugin.schema.STRIP_REQUEST_HEADERS`):

* method overrides -- ``X-HTTP-Method-Override``, ``X-HTTP-Method``, ``X-Method-Override``
  (honoured by many REST frameworks' method-override middleware);
* URL rewrites -- ``X-Original-URL``, ``X-Rewrite-URL`` (IIS URL Rewrite; honoured by
  Symfony and Zend request objects);
* host overrides -- ``X-Host``, ``X-Forwarded-Server``, ``X-Original-Host``,
  ``X-HTTP-Host-Override``, and ``Forwarded`` (RFC 7239: ``host=``, ``proto=``, ``for=``),
  which Kong passes through untouched;
* scheme overrides -- ``X-Forwarded-Scheme``, ``X-Forwarded-SSL``, ``Front-End-Https``,
  ``X-Url-Scheme``, ``X-Forwarded-Protocol`` (Rack, Werkzeug and IIS read these to decide
  ``https``; a wrong answer becomes a cached redirect or absolute URLs to the wrong scheme).

Not on the list, on purpose: ``X-Forwarded-Proto``, ``-Host``, ``-Port``, ``-Path``,
``-Prefix`` and ``X-Real-IP``. Kong 3.9 computes them in ``runloop.access.before``
(``kong/runloop/handler.lua``) before any plugin runs and sends them with nginx's
``proxy_set_header`` (``kong/templates/nginx_kong.lua``): from a client outside
``trusted_ips`` (default: none) Kong replaces them with its own values, and from a trusted
one it forwards what that proxy sent -- clearing them in a plugin changes nothing either
way. ``X-Forwarded-For`` gets the client address appended, so its first entries are the
client's own words: an origin that trusts them is not a caching problem this plugin can fix.

Not guaranteed: an origin can honour any header; the list covers the well-known ones. The
headers are removed only from requests whose response may be stored, not from requests the
cache stays out of (their answers are never shared), nor from hits (never forwarded).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from kong_plugin.headers import Headers


def header_family(name: str) -> str:
    """`name` lower-cased with ``_`` read as ``-``: the spellings an origin may treat as one
    header. Kong's nginx runs with ``underscores_in_headers on``
    (``kong/templates/nginx_kong.lua``), so ``X_Original_URL`` reaches the origin, and
    CGI-style servers (PHP, WSGI: ``HTTP_X_ORIGINAL_URL``) read it as ``X-Original-URL``."""
    return name.lower().replace("_", "-")


#: What Kong sets on the upstream request itself (``proxy_set_header``): the ``-`` spelling
#: is Kong's, an ``_`` spelling is the client's and passes through untouched.
KONG_FORWARDED = frozenset(
    {
        "x-forwarded-for",
        "x-forwarded-proto",
        "x-forwarded-host",
        "x-forwarded-port",
        "x-forwarded-path",
        "x-forwarded-prefix",
        "x-real-ip",
    }
)


@dataclass(frozen=True, slots=True)
class StripRule:
    """Which request headers to strip: every spelling of `families` except the exact names
    the key holds (`keyed`). A keyed header is part of the key, so the origin may see it;
    its other spellings (``X_Host`` for a keyed ``X-Host``) are not in the key and are
    stripped like any override. An ``_`` spelling of a header Kong sets itself
    (`KONG_FORWARDED`: ``X_Forwarded_Host``) is stripped too, whenever stripping is on:
    Kong replaces only the ``-`` spelling."""

    families: frozenset[str]
    keyed: frozenset[str]

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, str):
            return False
        low = name.lower()
        if low in self.keyed:
            return False
        family = header_family(low)
        return family in self.families or (low != family and family in KONG_FORWARDED)

    def __bool__(self) -> bool:
        return bool(self.families)


def strip_set(names: Iterable[str], keyed: Iterable[str]) -> StripRule:
    """The rule for a route stripping `names`, whose key holds the headers `keyed`."""
    return StripRule(
        frozenset(header_family(n) for n in names), frozenset(k.lower() for k in keyed)
    )


def present(headers: Headers, strip: StripRule) -> tuple[str, ...]:
    """The request's header names (lower-cased, as sent: ``x_original_url`` stays so, since
    ``ngx.req.clear_header`` matches the name exactly) that `strip` covers, in the
    request's order. One pass over the request's header names: no PDK call, nothing
    allocated when none is present.
    """
    if not strip:
        return ()
    return tuple(name for name in headers if name in strip)


def without(lines: list[tuple[bytes, bytes]], names: tuple[str, ...]) -> list[tuple[bytes, bytes]]:
    """Request header lines minus `names` (lower-case): the request as the origin sees it."""
    drop = {n.encode("latin-1") for n in names}
    return [line for line in lines if line[0].lower() not in drop]
