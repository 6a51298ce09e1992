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

from kong_plugin.headers import Headers


def strip_set(names: Iterable[str], keyed: Iterable[str]) -> frozenset[str]:
    """The lower-cased names to strip: `names` minus those the key holds (`keyed`)."""
    return frozenset(n.lower() for n in names) - {k.lower() for k in keyed}


def present(headers: Headers, strip: frozenset[str]) -> tuple[str, ...]:
    """The names of `strip` this request carries (lower-cased, in the request's order).

    One pass over the request's header names: no PDK call, nothing allocated when none is
    present.
    """
    if not strip:
        return ()
    return tuple(name for name in headers if name in strip)


def without(lines: list[tuple[bytes, bytes]], names: tuple[str, ...]) -> list[tuple[bytes, bytes]]:
    """Request header lines minus `names` (lower-case): the request as the origin sees it."""
    drop = {n.encode("latin-1") for n in names}
    return [line for line in lines if line[0].lower() not in drop]
