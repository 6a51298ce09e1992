"""May this request use the cache, and may this response be stored? (RFC 9111 §3, §3.5,
§5.2; Kong proxy-cache's ``request_method``/``response_code``/``content_type`` gates.)

`request_decision` (access phase) -- in this order:

============================  ===========  ==========  ==================================
request                       lookup       store       reason
============================  ===========  ==========  ==================================
method not in request_method  no           no          ``method``
``Range`` on a GET [r]        yes          no          ``range``: a stored 200 answers 206
                                                       or 416 (`kong_plugin.ranges`); a
                                                       miss is a bypass that never waits
``Range`` otherwise           no           no          ``range`` (``serve_ranges`` off, or
                                                       a method other than GET/HEAD; a
                                                       HEAD's Range is ignored, §14.2)
``If-Match`` / ``If-Unmod..`` no           no          ``precondition`` (origin decides)
``no-cache`` [cc]             no           yes         ``request-no-cache`` (Refresh)
``no-store`` [cc]             yes          no          ``request-no-store``
HEAD                          yes (GET)    no          ``head`` (a HEAD has no body)
``only-if-cached`` [cc]       yes          yes         miss -> 504 (§5.2.1.7)
credentials                   yes [g]      see below   `kong_plugin.credentials` (Cookie,
                                                       Authorization, hidden by an auth
                                                       plugin, consumer)
============================  ===========  ==========  ==================================

[cc] = only with ``cache_control=true``; otherwise request directives are ignored (Kong).
[r] = with ``serve_ranges`` (default); the rows below still apply (a ``no-cache`` Range
request is a bypass: it may not store what the origin answers).
[g] = a guarded request (credentials the key does not separate) is served only entries
whose ``Cache-Control`` allows sharing; with ``cookie_requests=bypass`` one guarded by its
``Cookie`` is not looked up at all (the handler decides, once it knows the consumer).

`response_decision` (response phase). Whatever ``cache_control`` says, Strata never stores:
1xx, 206 or 304 responses; ``no-store`` (unless ``must-understand`` and a status it
understands, §5.2.2.3); unqualified ``private`` (a qualified ``private="f"`` stores the
response without field ``f``, §5.2.2.7); any ``Set-Cookie`` (unless ``cache_set_cookie``:
then stored without its ``Set-Cookie`` lines); ``Vary: *``; a response to a
guarded request -- ``Cookie`` or ``Authorization`` the key does not separate -- unless it
says ``public`` or ``s-maxage`` (or, for ``Authorization`` with ``cache_control=true``,
``must-revalidate``, §3.5; see `kong_plugin.credentials`); a body over ``max_body_bytes``;
a Content-Type outside ``content_type`` (Kong >= 3.2 matching; absent or repeated -> not
stored; a bare ``*/*`` in ``content_type`` matches anything, `kong_plugin.mime`).
"Directives" are the response's own: a valid targeted field (RFC 9213) replaces
``Cache-Control`` for all of this (`kong_plugin.targeted.response_cc`).

Freshness lifetime (TTL) and stale windows:

===============  ===========================================  ============================
cache_control    response                                     stored with
===============  ===========================================  ============================
false (default)  status in response_code                      ttl = cache_ttl (Kong); route
                                                              stale windows; CC ignored
                                                              except the privacy rules
true             s-maxage / max-age / Expires (any status)    that lifetime (RFC wins)
true             none of them, status heuristically           10% of Date-Last-Modified,
                 cacheable (RFC 9110 §15.1) or ``public``,    capped at 1 day
                 Last-Modified
true             none of them, ``public``, no Last-Modified   cache_ttl
true             none of them otherwise                       not stored (as Kong)
true             ``no-cache`` (any form), with a validator    stored, revalidated on every
                                                              use (Kong: not stored)
true             already stale on arrival, no stale window    only if it has a validator,
                                                              for revalidation
===============  ===========================================  ============================

With ``cache_control=true`` the route's ``response_code`` is not consulted at all: RFC
9111 §3 and §4.2.2 decide (a ``no-cache`` response of a status that is neither
heuristically cacheable nor ``public``, and without explicit freshness, is not stored).

Storage TTL = ``storage_ttl`` if set; else lifetime + the larger stale window, plus
``keep_ttl`` for a response with a validator (``ETag`` or ``Last-Modified``): the keep
window (RFC 9111 §4.3), in which the entry is only revalidated with a conditional request,
never served unvalidated (`freshness.evaluate_reuse`). Entries kept only for revalidation
(``no-cache``, stale on arrival) are stored as stale from their arrival (``stored_at`` =
now, lifetime 0, whatever their ``Age`` said) for ``keep_ttl``, and at least ``cache_ttl``.
Adding ``keep_ttl`` never takes the total above `MAX_TTL_SECONDS` (the sidecar's default
cap), so no config is refused for it. All counted from the back-dated ``stored_at`` (see
`freshness`), which is never before the epoch (an absurd ``Age`` is capped there).

Not guaranteed: POST/PATCH/PUT responses are stored when configured (Kong compatibility)
even though RFC 9111 §2 would only reuse them for later GETs; ranges are served only
from stored complete responses, never stored themselves (a 206 is never stored).
"""

from __future__ import annotations

from dataclasses import dataclass

from kong_plugin.cache_control import EMPTY, CacheControl, parse_cache_control
from kong_plugin.config import PluginConfig
from kong_plugin.credentials import Guard, allows_sharing
from kong_plugin.freshness import (
    HEURISTIC_STATUSES,
    EntryTiming,
    Lifetime,
    corrected_initial_age,
    freshness_lifetime,
    stale_windows,
)
from kong_plugin.headers import HeaderInput, Headers
from kong_plugin.mime import content_types_match
from kong_plugin.schema import MAX_TTL_SECONDS
from kong_plugin.targeted import response_cc
from kong_plugin.vary import response_vary

#: Final status codes whose caching rules Strata implements (RFC 9110 §15, minus 206/304).
UNDERSTOOD_STATUSES = frozenset(
    {200, 201, 202, 203, 204, 205, 300, 301, 302, 303, 307, 308}
    | {400, 401, 402, 403, 404, 405, 406, 407, 408, 409, 410, 411, 412, 413, 414, 415, 416}
    | {417, 421, 422, 426, 500, 501, 502, 503, 504, 505}
)


@dataclass(frozen=True, slots=True)
class RequestDecision:
    """How the cache may treat a request (see the table in the module docstring)."""

    lookup: bool
    store: bool
    reason: str
    method: str
    cc: CacheControl = EMPTY
    only_if_cached: bool = False
    #: on a miss, may wait for another request's fill of the key (a Range request does
    #: not: it takes no part in filling)
    may_wait: bool = True

    @property
    def bypass(self) -> bool:
        """Neither look up nor store: the cache stays out of this request."""
        return not self.lookup and not self.store


@dataclass(frozen=True, slots=True)
class StoreDecision:
    """Whether and how to store a response; `reason` is ``stored`` or why not."""

    store: bool
    reason: str
    timing: EntryTiming | None = None
    lifetime: Lifetime | None = None
    vary: tuple[str, ...] = ()
    strip_headers: frozenset[str] = frozenset()
    revalidate: bool = False


def request_decision(method: str, headers: HeaderInput, config: PluginConfig) -> RequestDecision:
    """Classify a request in the access phase (pure; see the module docstring)."""
    key_method = "GET" if method == "HEAD" else method
    if method not in config.methods:
        return RequestDecision(False, False, "method", key_method)
    h = Headers.of(headers)
    ranged = "range" in h
    if ranged and not (config.serve_ranges and method in ("GET", "HEAD")):
        return RequestDecision(False, False, "range", key_method)
    ranged = ranged and method == "GET"  # RFC 9110 §14.2: a HEAD's Range is ignored
    if "if-match" in h or "if-unmodified-since" in h:
        return RequestDecision(False, False, "precondition", key_method)
    cc = parse_cache_control(h.get_all("cache-control")) if config.cache_control else EMPTY
    lookup = not cc.no_cache
    store = not cc.no_store and method != "HEAD" and not ranged
    if not lookup:
        reason = "range" if ranged else "request-no-cache"
    elif cc.no_store:
        reason = "request-no-store"
    elif method == "HEAD":
        reason = "head"
    elif ranged:
        reason = "range"
    else:
        reason = ""
    return RequestDecision(
        lookup, store, reason, key_method, cc, cc.only_if_cached, may_wait=not ranged
    )


def has_validator(headers: HeaderInput) -> bool:
    """An ``ETag`` or ``Last-Modified`` lets the entry be revalidated (§4.3.1)."""
    h = Headers.of(headers)
    return "etag" in h or "last-modified" in h


def _kept(seconds: int, config: PluginConfig) -> int:
    """`seconds` plus the keep window (``keep_ttl``, §4.3: kept to be revalidated), the
    sum capped at `MAX_TTL_SECONDS` (the sidecar's default cap) but never below `seconds`."""
    return min(seconds + config.keep_ttl, max(seconds, MAX_TTL_SECONDS))


def content_length_exceeds(headers: HeaderInput, config: PluginConfig) -> bool:
    """True if a declared ``Content-Length`` is over ``max_body_bytes`` (bail before buffering)."""
    value = Headers.of(headers).get("content-length")
    return value is not None and value.strip().isdigit() and int(value) > config.max_body_bytes


def _privacy_block(
    status: int, h: Headers, cc: CacheControl, guard: Guard, config: PluginConfig
) -> str:
    if cc.no_store and not (cc.must_understand and status in UNDERSTOOD_STATUSES):
        return "no-store"
    if cc.private and not cc.private_fields:
        return "private"
    if ("set-cookie" in h or "set-cookie2" in h) and not config.cache_set_cookie:
        return "set-cookie"  # with cache_set_cookie the lines are stored without it
    if not allows_sharing(cc, guard, config):
        return guard
    return ""


def response_decision(
    method: str,
    status: int,
    headers: HeaderInput,
    request_cc: CacheControl,
    config: PluginConfig,
    *,
    request_time: float,
    response_time: float,
    body_size: int | None = None,
    guard: Guard = "",
) -> StoreDecision:
    """Decide whether to store an upstream response, and its timing (module docstring).

    `method` is the request's method; `request_cc` its directives (`RequestDecision.cc`);
    `guard` the credential rule that applies to it (`kong_plugin.credentials.guard`: it
    carried ``Cookie`` or ``Authorization`` the key does not separate). Times are seconds
    since the epoch.
    """
    if method == "HEAD":
        return StoreDecision(False, "head")
    if method not in config.methods:
        return StoreDecision(False, "method")
    if config.cache_control and request_cc.no_store:
        return StoreDecision(False, "request-no-store")
    if status < 200 or status in (206, 304):
        return StoreDecision(False, "status")
    if not config.cache_control and status not in config.status_codes:
        return StoreDecision(False, "status")
    h = Headers.of(headers)
    if not content_types_match(h.get_all("content-type"), config.content_type_ranges):
        return StoreDecision(False, "content-type")
    cc = response_cc(h, config)
    blocked = _privacy_block(status, h, cc, guard, config)
    if blocked:
        return StoreDecision(False, blocked)
    vary = response_vary(h)
    if vary.star:
        return StoreDecision(False, "vary-star")
    if (body_size is not None and body_size > config.max_body_bytes) or content_length_exceeds(
        h, config
    ):
        return StoreDecision(False, "too-large")

    initial_age = corrected_initial_age(h, request_time=request_time, response_time=response_time)
    revalidate = False
    if config.cache_control:
        lifetime = freshness_lifetime(h, cc, config, status=status, received_at=response_time)
        if not lifetime.explicit and status not in HEURISTIC_STATUSES and not cc.public:
            return StoreDecision(False, "status")  # §3: nothing makes it storable
        ttl = lifetime.seconds
        swr, sie = stale_windows(cc, config)
        if cc.no_cache:
            revalidate = True
        elif lifetime.source == "none":
            return StoreDecision(False, "no-freshness")
        else:
            revalidate = ttl + max(swr, sie) <= initial_age
    else:
        lifetime = Lifetime(config.cache_ttl, "default")
        ttl = initial_age + config.cache_ttl
        swr, sie = config.stale_while_revalidate, config.stale_if_error

    if revalidate:
        if not has_validator(h):
            return StoreDecision(False, "no-cache" if cc.no_cache else "stale-on-arrival")
        # only ever revalidated: stored as stale from now on, whatever its claimed age (an
        # invalid or absurd Age must not date the entry before the epoch)
        ttl = initial_age = swr = sie = 0
        keep = max(_kept(ttl, config), config.cache_ttl)
    else:
        keep = ttl + max(swr, sie)
        if has_validator(h):
            keep = _kept(keep, config)
    if config.storage_ttl is not None:
        keep = initial_age + config.storage_ttl
    timing = EntryTiming(
        stored_at=response_time - min(initial_age, max(0, int(response_time))),
        ttl=ttl,
        stale_while_revalidate=swr,
        stale_if_error=sie,
        storage_ttl=keep,
    )
    return StoreDecision(
        True, "stored", timing, lifetime, vary.names, cc.private_fields, revalidate
    )
