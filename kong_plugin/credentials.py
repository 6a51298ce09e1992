"""Requests that carry credentials the cache key does not separate, and when a shared entry
may still serve them (cache deception, RFC 9111 §3.5).

A request with ``Cookie`` or ``Authorization`` usually gets an answer meant for whoever
those credentials name. If the key does not hold them, two things go wrong on a shared
cache: that answer is stored and served to everyone (``/account/x.css`` with a session
cookie, stored because of its extension, then served to anyone who asks), and an entry
stored for someone else -- a "please log in" page -- is served to the logged-in user.
So such a request is *guarded* (`guard` names the rule: ``cookie`` or ``authorization``):

* it is served a stored entry only if that entry's ``Cache-Control`` allows sharing, and
  its own response is stored only if that response does (`allows_sharing`);
* otherwise it goes to the origin, stores nothing, never waits for another client's fill
  and leaves the stored entry alone (`kong_plugin.decide`).

"Allows sharing" means ``public`` or ``s-maxage`` (an origin that says either has thought
about shared caches). RFC 9111 §3.5 also lets ``must-revalidate`` share a response to a
request with ``Authorization``; that is honoured only with ``cache_control: true``, where
the entry really is revalidated once stale -- with ``cache_control: false`` Strata ignores
the response's lifetime and serves the entry for ``cache_ttl``, so ``must-revalidate``
protects nothing there. ``Cookie`` is not in RFC 9111 at all (a cookie-bearing request is
cacheable by the letter of the RFC); the rule for it is a safe default, set per route by
``cookie_requests``: ``explicit`` (this rule), ``bypass`` (the cache stays out of such
requests entirely: no lookup, no store) or ``ignore`` (the old, unsafe behaviour, for
routes whose origin never personalises by cookie).

A request is not guarded when the key already separates its credentials: the key holds
an authenticated consumer (``consumer_scope``, `kong_plugin.cache_key.CacheKey.consumer_scoped`),
or the credential header itself is in ``vary_headers``.

Not guaranteed: credentials in other places (a query parameter, a custom header, a client
certificate) are not recognised unless an auth plugin turns them into a consumer; ``public``
or ``s-maxage`` on a personalised response is believed.
"""

from __future__ import annotations

from typing import Literal

from kong_plugin.cache_control import CacheControl
from kong_plugin.config import PluginConfig
from kong_plugin.headers import Headers
from kong_plugin.identity import Identity

Guard = Literal["", "authorization", "cookie"]


def cookie_unkeyed(headers: Headers, config: PluginConfig) -> bool:
    """The request carries a ``Cookie`` that the route's key does not hold."""
    return "cookie" in headers and "cookie" not in config.vary_header_names


def guard(headers: Headers, who: Identity, consumer_scoped: bool, config: PluginConfig) -> Guard:
    """Which credential rule applies to a request: "" when none, or when the key holds an
    authenticated consumer (`consumer_scoped`); ``cookie`` wins when both apply, since it
    is the stricter one."""
    if consumer_scoped:
        return ""
    if config.cookie_requests != "ignore" and cookie_unkeyed(headers, config):
        return "cookie"
    if who.authenticated and not (
        "authorization" in headers and "authorization" in config.vary_header_names
    ):
        return "authorization"
    return ""


def allows_sharing(cc: CacheControl, rule: Guard, config: PluginConfig) -> bool:
    """May a response with directives `cc` be stored for, or served to, a request under
    `rule`? Always for an unguarded request."""
    if not rule or cc.public or cc.s_maxage is not None:
        return True
    return rule == "authorization" and config.cache_control and cc.must_revalidate
