"""The handler's decisions, as pure functions of plain inputs: what to do with a lookup's
answer (``access``) and with the upstream's response (``response``).

No PDK, no I/O, no clock: the time is an argument (`now`, the plugin's clock) and an
entry's age is the sidecar's (`kong_plugin.stored.Found`). Each function returns a value
saying what to do; `kong_plugin.handler` does it (PDK calls, sidecar calls, process state).

After a lookup (`after_lookup`):

* an entry stored for someone else, found by a request with credentials the key does not
  separate -> `Bypass` with that rule (or the only-if-cached 504), entry left alone;
* an entry the rules let answer -> `Serve` (fresh, or stale within
  ``stale-while-revalidate`` / ``max-stale``);
* an entry that must be revalidated, or a stale one whose fill lease this request holds
  -> `Revalidate` (conditional upstream request); its `Revalidate.if_origin_down` is the
  step to take instead when the origin is failing: the `Serve` of the entry when it may
  stand in for it (stale-if-error), or `OriginUnreachable` (a 504, RFC 9111 §5.2.2.2)
  for a stale entry that may never be served stale (``must-revalidate``,
  ``proxy-revalidate``, ``s-maxage``, ``no-cache``: `freshness.stale_prohibited`);
  the revalidating request is the client's own with the entry's validators instead of the
  client's (`kong_plugin.validation`); for the lease holder within
  ``stale-while-revalidate`` with ``background_refresh`` on, `Revalidate.in_background` is
  the stale `Serve` to answer with at once while the entry is refreshed in the background
  (RFC 5861 §3, `kong_plugin.refresh`);
* no entry: ``only-if-cached`` -> `OnlyIfCachedMiss`; a request that may not store ->
  `Bypass`; else `Forward` (fetch and store).

After the upstream answered (`after_response`): a 304 to a revalidation -> `Refresh` (the
entry with merged headers and new timing, stored again if it may be; a 304 naming another
entity-tag updates nothing and drops the entry, RFC 9111 §4.3.4); a 500/502/503/504
while the entry may stand in -> `Serve` (stale-if-error); anything else -> `Proxied` with
the store decision, then `plan_store` and `proxied_headers`.

Not guaranteed: these functions decide, they do not check what the sidecar or Kong will do
with the result (a store may be refused, an entry evicted meanwhile).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from kong_plugin.cache_control import EMPTY
from kong_plugin.cache_status import XCacheStatus, cache_status_value
from kong_plugin.cacheability import RequestDecision, StoreDecision, response_decision
from kong_plugin.config import PluginConfig
from kong_plugin.credentials import Guard, allows_sharing
from kong_plugin.event_tags import entry_tags as event_entry_tags
from kong_plugin.freshness import (
    ERROR_STATUSES,
    age_later,
    evaluate_reuse,
    is_fresh,
    stale_prohibited,
)
from kong_plugin.headers import Headers, storable_headers
from kong_plugin.http_date import format_http_date
from kong_plugin.inflight import RequestState
from kong_plugin.invalidation import entry_tags
from kong_plugin.replies import Served, names_to_clear
from kong_plugin.route_facts import Names
from kong_plugin.stored import Found, StoredEntry
from kong_plugin.targeted import response_cc
from kong_plugin.validation import merge_304, revalidation_headers, updates_entry

#: The client's own validators (cleared upstream when the entry has none to send instead).
CONDITIONAL = ("if-none-match", "if-modified-since")
#: Not-stored reasons that come from the request, not the response (a client must not be
#: able to turn coalescing off for a key).
REQUEST_REASONS = frozenset(
    {"head", "method", "request-no-store", "too-many-headers", "cookie", "authorization"}
)


# -- access ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Serve:
    """End the request with a stored entry; `release`: give up the fill lease first."""

    served: Served
    release: bool = False


@dataclass(frozen=True, slots=True)
class Revalidate:
    """Ask the upstream, with the entry's validators (`set_upstream`) or without the
    client's (`clear_upstream`); keep the entry for a 304 or an error."""

    entry: StoredEntry
    stale_if_error: bool
    client_conditional: bool
    set_upstream: dict[str, str] = field(default_factory=dict)
    clear_upstream: tuple[str, ...] = ()
    if_origin_down: Serve | OriginUnreachable | None = None
    #: This request holds the fill lease of an entry inside its stale-while-revalidate
    #: window and background refreshes are on: the `Serve` to answer with at once, the
    #: refresh then running in the background (`kong_plugin.refresh`); None: revalidate
    #: here, as when the handler cannot refresh this request in the background.
    in_background: Serve | None = None


@dataclass(frozen=True, slots=True)
class Bypass:
    """Proxy without the cache (``Cache-Status: fwd=bypass; detail=<reason>``); after a
    lookup, the fill lease is given up first (as for `OnlyIfCachedMiss`)."""

    reason: str


@dataclass(frozen=True, slots=True)
class OnlyIfCachedMiss:
    """Answer 504: no stored response may answer an ``only-if-cached`` request."""


@dataclass(frozen=True, slots=True)
class OriginUnreachable:
    """Answer 504: the origin is down and the stored entry may not be served stale
    (RFC 9111 §5.2.2.2); `member` is the ``Cache-Status`` to send."""

    member: str


@dataclass(frozen=True, slots=True)
class Forward:
    """Proxy, and store the response if it may be stored (a miss)."""


AccessStep = Serve | Revalidate | Bypass | OnlyIfCachedMiss | OriginUnreachable | Forward


def shareable(entry: StoredEntry, rule: Guard, cfg: PluginConfig) -> bool:
    """May a request under credential rule `rule` (`kong_plugin.credentials`) be served
    this stored entry?"""
    return allows_sharing(response_cc(entry.headers, cfg), rule, cfg)


def after_lookup(
    found: Found, request: RequestDecision, rule: Guard, headers: Headers, cfg: PluginConfig
) -> AccessStep:
    """What to do with a lookup's answer (module docstring). `request`: the request's
    `request_decision`; `rule`: its credential rule; `headers`: its headers."""
    entry = found.entry
    if entry is not None:
        if rule and not shareable(entry, rule, cfg):
            # stored for someone else: go upstream, store nothing, leave the entry alone
            return OnlyIfCachedMiss() if request.only_if_cached else Bypass(rule)
        return _stored(entry, found, request, headers, cfg)
    if request.only_if_cached:
        return OnlyIfCachedMiss()
    if not request.store:
        return Bypass(request.reason or "request")
    return Forward()


def _stored(
    entry: StoredEntry,
    found: Found,
    request: RequestDecision,
    headers: Headers,
    cfg: PluginConfig,
) -> Serve | Revalidate:
    stored_cc = response_cc(entry.headers, cfg)
    reuse = evaluate_reuse(entry.timing, found.age_s, stored_cc, request.cc, cfg)
    action = reuse.action
    in_background: Serve | None = None
    if action == "stale" and reuse.background_revalidate and found.fill_lease:
        action = "revalidate"  # this request refreshes the entry for everyone
        if cfg.background_refresh.enabled:
            # RFC 5861 §3: served stale at once; the refresh need not keep anyone waiting
            member = cache_status_value(
                cfg.cache_status_name, hit=True, ttl=reuse.ttl, detail=reuse.detail
            )
            stale = Served(entry, found.age_s, XCacheStatus.STALE, member, conditional=headers)
            in_background = Serve(stale)
    if action != "revalidate":
        word = XCacheStatus.HIT if action == "fresh" else XCacheStatus.STALE
        detail = None if action == "fresh" else reuse.detail
        member = cache_status_value(cfg.cache_status_name, hit=True, ttl=reuse.ttl, detail=detail)
        return Serve(Served(entry, found.age_s, word, member, conditional=headers))
    if_origin_down: Serve | OriginUnreachable | None = None
    if reuse.stale_if_error:
        # the origin is failing: answer from the stored copy instead of adding to it
        member = cache_status_value(
            cfg.cache_status_name, hit=True, ttl=reuse.ttl, detail="origin-down"
        )
        served = Served(entry, found.age_s, XCacheStatus.STALE, member, conditional=headers)
        if_origin_down = Serve(served, release=True)
    elif (
        cfg.cache_control
        and stale_prohibited(stored_cc)
        and not is_fresh(entry.timing, found.age_s)
    ):
        # never served stale, and the origin cannot confirm it: 504, not a dead origin
        member = cache_status_value(
            cfg.cache_status_name, ttl=reuse.ttl, detail="origin-unreachable"
        )
        if_origin_down = OriginUnreachable(member)
    conditional = revalidation_headers(entry.headers)
    sent = {name.lower() for name in conditional}
    # the client's own validators never go upstream: the 304 must speak for this entry
    own = tuple(name for name in CONDITIONAL if name in headers)
    return Revalidate(
        entry,
        reuse.stale_if_error,
        bool(own),
        set_upstream=conditional,
        clear_upstream=tuple(name for name in own if name not in sent),
        if_origin_down=if_origin_down,
        in_background=in_background,
    )


# -- response --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Refresh:
    """The upstream confirmed the entry (304): answer with `served`; store `store` (None:
    the refreshed entry may not be stored, give up the fill lease); `drop`: the 304 did
    not identify the entry (`kong_plugin.validation.updates_entry`), remove it from the
    cache so that the next request fetches in full."""

    served: Served
    store: StoredEntry | None
    drop: bool = False


@dataclass(frozen=True, slots=True)
class Proxied:
    """The upstream's response goes to the client; `decision` says whether it may be
    stored (before its body is read)."""

    decision: StoreDecision


ResponseStep = Refresh | Serve | Proxied


@dataclass(frozen=True, slots=True)
class Upstream:
    """The upstream's answer as the ``response`` phase read it: `complete` says whether
    `headers` holds all of its header lines; `now` is the plugin's clock."""

    status: int
    headers: Mapping[str, Any]
    complete: bool
    now: float


def after_response(state: RequestState, upstream: Upstream, cfg: PluginConfig) -> ResponseStep:
    """What to do with the upstream's answer to a cacheable request (module docstring)."""
    status = upstream.status
    stale = state.stale
    request_cc = state.request_cc or EMPTY
    if stale is not None and status == 304:
        return _refresh(state, stale, upstream, cfg)
    if stale is not None and state.stale_if_error and status in ERROR_STATUSES:
        member = cache_status_value(
            cfg.cache_status_name, hit=True, fwd_status=status, detail="stale-if-error"
        )
        age = age_later(state.stale_age_s, state.looked_up_at, upstream.now)
        clear = names_to_clear(upstream.headers, upstream.complete)
        return Serve(Served(stale, age, XCacheStatus.STALE, member, clear=clear), release=True)
    if not upstream.complete:
        return Proxied(StoreDecision(False, "too-many-headers"))
    decision = response_decision(
        state.method,
        status,
        upstream.headers,
        request_cc,
        cfg,
        request_time=state.request_time,
        response_time=upstream.now,
        guard=state.guard,
    )
    return Proxied(decision)


def _refresh(
    state: RequestState, stale: StoredEntry, upstream: Upstream, cfg: PluginConfig
) -> Refresh:
    """The entry with the 304's headers merged in (RFC 9111 §3.2, §4.3.4); stored again
    with new timing when the merged response may be stored; served (a 304 if the client's
    validators match).

    A 304 that names another entity-tag than the entry's updates nothing (§4.3.4): the
    client gets the stored response as it was, and the entry is dropped (`Refresh.drop`).
    Why that answer: the origin evaluated the entry's own validators and said "not
    modified", so the stored body is what it vouched for; only the 304's metadata belongs
    to something else. Passing the 304 on would answer a request the client did not make
    (its own validators were replaced by the entry's), and an error would blame the
    client for the origin's inconsistency. Dropping the entry (rather than leaving it)
    makes the next request fetch in full instead of asking the same question again."""
    merged = merge_304(stale.headers, upstream.headers)
    decision = response_decision(
        state.method,
        stale.status,
        merged,
        state.request_cc or EMPTY,
        cfg,
        request_time=state.request_time,
        response_time=upstream.now,
        guard=state.guard,
    )
    member = cache_status_value(
        cfg.cache_status_name, hit=True, fwd="stale", fwd_status=304, detail="revalidated"
    )
    conditional = None
    lines = state.request_headers
    if state.client_conditional or any(n.lower() == b"range" for n, _ in lines):
        # the client's validators may make it a 304, its Range a 206/416 (entry_reply);
        # every line kept (a repeated field is not cut down to its last line)
        fields: dict[str, list[str]] = {}
        for n, v in lines:
            name = n.decode("latin-1").lower()
            fields.setdefault(name, []).append(v.decode("utf-8", "surrogateescape"))
        conditional = Headers.of(fields)
    clear = names_to_clear(upstream.headers, upstream.complete)
    if upstream.complete and not updates_entry(stale.headers, upstream.headers):
        mismatch = cache_status_value(
            cfg.cache_status_name,
            hit=True,
            fwd="stale",
            fwd_status=304,
            detail="validator-mismatch",
        )
        age = age_later(state.stale_age_s, state.looked_up_at, upstream.now)
        served = Served(stale, age, XCacheStatus.REFRESH, mismatch, conditional, clear)
        return Refresh(served, None, drop=True)
    if upstream.complete and decision.store and decision.timing is not None:
        # as a stored 200 would be: without the fields a qualified private= names
        headers = merged.without(decision.strip_headers)
        refreshed = StoredEntry(
            stale.status, headers, stale.body, decision.timing, stale.tags, decision.vary
        )
        age = decision.timing.age(upstream.now)
        store: StoredEntry | None = refreshed
    else:
        refreshed = StoredEntry(
            stale.status, merged, stale.body, stale.timing, stale.tags, stale.vary
        )
        age = age_later(state.stale_age_s, state.looked_up_at, upstream.now)
        store = None
    served = Served(refreshed, age, XCacheStatus.REFRESH, member, conditional, clear)
    return Refresh(served, store)


@dataclass(frozen=True, slots=True)
class StorePlan:
    """What to store of a proxied response: `entry` (None: nothing), whether the response
    may be stored at all (`storable`, after the body's size is known) and the
    ``Cache-Status`` detail when it is not stored."""

    entry: StoredEntry | None
    storable: bool
    detail: str | None


def storable(decision: StoreDecision, body: bytes, cfg: PluginConfig) -> bool:
    """`plan_store` will make an entry of this response (unless its tags do not fit)."""
    return decision.store and decision.timing is not None and len(body) <= cfg.max_body_bytes


def plan_store(
    state: RequestState,
    upstream: Upstream,
    decision: StoreDecision,
    body: bytes,
    cfg: PluginConfig,
    names: Names | None = None,
) -> StorePlan:
    """The entry to store for a response `decision` allowed (`body` read only then).

    With ``event_tags`` on, the entry also carries the event tags of the request's path
    and query as sent (`kong_plugin.event_tags`) and of `names` (None: no names known)."""
    if decision.store and len(body) > cfg.max_body_bytes:
        return StorePlan(None, False, "too-large")
    if not decision.store:
        return StorePlan(None, False, decision.reason)
    if decision.timing is None:
        return StorePlan(None, True, None)
    scheme: tuple[str, ...] = ()
    if cfg.event_tags:
        names = names or Names()
        scheme = event_entry_tags(
            state.path,
            state.query,
            fold_case=cfg.ignore_uri_case,
            route_name=names.route,
            service_name=names.service,
        )
    tags = entry_tags(state.host, state.path, upstream.headers, cfg, scheme)
    if tags.dropped:
        return StorePlan(None, True, "tags-dropped")
    headers = storable_headers(upstream.headers, strip=decision.strip_headers)
    if "date" not in headers:  # RFC 9110 §6.6.1: a cache records when it received it
        headers = Headers({**dict(headers.items()), "date": (format_http_date(upstream.now),)})
    entry = StoredEntry(
        status=upstream.status,
        headers=headers,
        body=body,
        timing=decision.timing,
        tags=tuple(tags.tags),
        vary=tuple(decision.vary),
    )
    return StorePlan(entry, True, None)


def proxied_status(
    state: RequestState,
    status: int,
    plan: StorePlan,
    stored: bool,
    cfg: PluginConfig,
    unstored: str = "store-failed",
) -> tuple[str, str]:
    """(``X-Cache-Status``, ``Cache-Status`` member) of a proxied response; `stored`: a
    tier holds it; `unstored`: why a storable one was not (`sidecar_jobs.store_now`)."""
    detail = plan.detail
    if plan.entry is not None and not stored:
        detail = unstored
    word = state.status_word
    if not stored and word == XCacheStatus.MISS.value and not plan.storable:
        word = XCacheStatus.BYPASS.value  # as Kong's proxy-cache: not cacheable
    member = cache_status_value(
        cfg.cache_status_name,
        fwd=state.fwd,  # type: ignore[arg-type]
        fwd_status=status,
        stored=stored,
        detail=detail,
    )
    return word, member
