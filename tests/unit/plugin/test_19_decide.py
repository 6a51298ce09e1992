"""The handler's decisions, called directly (`kong_plugin.decide`, `kong_plugin.replies`):
what a lookup's answer and an upstream response lead to, with no PDK and no sidecar."""

from __future__ import annotations

from typing import Any

import pytest

from kong_plugin import decide
from kong_plugin.cache_status import XCacheStatus
from kong_plugin.cacheability import RequestDecision, request_decision
from kong_plugin.config import PluginConfig, parse_config
from kong_plugin.credentials import Guard
from kong_plugin.freshness import EntryTiming
from kong_plugin.headers import Headers
from kong_plugin.http_date import format_http_date
from kong_plugin.inflight import RequestState
from kong_plugin.replies import Served, entry_reply, only_if_cached_miss
from kong_plugin.stored import Found, StoredEntry

NOW = 1_700_000_000.0
CFG = parse_config({"cache_control": True, "cache_ttl": 300})
ETAG = '"v1"'


def stored(
    *,
    ttl: int = 60,
    swr: int = 0,
    sie: int = 0,
    cc: str = "max-age=60",
    extra: dict[str, str] | None = None,
) -> StoredEntry:
    """A 200 text entry with an ETag, stored at NOW (its age is given with the lookup)."""
    fields = {"content-type": ("text/plain",), "cache-control": (cc,), "etag": (ETAG,)}
    fields.update({k: (v,) for k, v in (extra or {}).items()})
    return StoredEntry(200, Headers(fields), b"hello", EntryTiming(NOW, ttl, swr, sie, ttl + 600))


def request(headers: dict[str, str] | None = None, method: str = "GET") -> RequestDecision:
    return request_decision(method, Headers.of(headers or {}), CFG)


def after_lookup(
    found: Found,
    headers: dict[str, str] | None = None,
    rule: Guard = "",
    method: str = "GET",
    cfg: PluginConfig = CFG,
) -> decide.AccessStep:
    h = Headers.of(headers or {})
    return decide.after_lookup(found, request_decision(method, h, cfg), rule, h, cfg)


def state(**fields: Any) -> RequestState:
    fields.setdefault("key", "v2:r:k")
    fields.setdefault("request_time", NOW)
    return RequestState("store", "GET", "example.com", "/p", **fields)


# -- after a lookup ----------------------------------------------------------------------


def test_a_fresh_entry_is_served_with_the_sidecars_age() -> None:
    step = after_lookup(Found(stored(ttl=60), age_s=10.5))
    assert isinstance(step, decide.Serve) and not step.release
    served = step.served
    assert (served.word, served.age_s) == (XCacheStatus.HIT, 10.5)
    assert served.member == "strata; hit; ttl=50"
    assert served.clear is None  # the access phase clears nothing


def test_the_sidecars_age_decides_freshness_not_the_entrys_stored_at() -> None:
    """stored_at says 0 s old; the sidecar says 61 s: the entry is stale."""
    step = after_lookup(Found(stored(ttl=60), age_s=61))
    assert isinstance(step, decide.Revalidate)


def test_stale_within_swr_without_the_lease_is_served_stale() -> None:
    step = after_lookup(Found(stored(ttl=60, swr=30), age_s=70, fill_lease=False))
    assert isinstance(step, decide.Serve)
    assert step.served.word is XCacheStatus.STALE
    assert "detail=stale-while-revalidate" in step.served.member


def test_stale_within_swr_with_the_lease_revalidates_for_everyone() -> None:
    step = after_lookup(Found(stored(ttl=60, swr=30), age_s=70, fill_lease=True))
    assert isinstance(step, decide.Revalidate)
    assert step.set_upstream == {"If-None-Match": ETAG}
    assert step.clear_upstream == ()
    assert step.if_origin_down is None  # no stale-if-error window: nothing to fall back to


def test_a_revalidation_within_stale_if_error_can_fall_back_when_the_origin_is_down() -> None:
    step = after_lookup(Found(stored(ttl=60, sie=300), age_s=90))
    assert isinstance(step, decide.Revalidate) and step.stale_if_error
    fallback = step.if_origin_down
    assert isinstance(fallback, decide.Serve) and fallback.release
    assert fallback.served.word is XCacheStatus.STALE
    assert fallback.served.member == "strata; hit; ttl=-30; detail=origin-down"


def test_without_validators_the_clients_own_are_not_sent_upstream() -> None:
    entry = StoredEntry(
        200,
        Headers({"content-type": ("text/plain",), "cache-control": ("max-age=60",)}),
        b"x",
        EntryTiming(NOW, 60),
    )
    step = after_lookup(Found(entry, age_s=100), {"if-none-match": '"c"'})
    assert isinstance(step, decide.Revalidate) and step.client_conditional
    assert step.set_upstream == {}
    assert step.clear_upstream == ("if-none-match",)  # only what the client sent


def test_request_max_age_revalidates_a_fresh_entry() -> None:
    step = after_lookup(Found(stored(ttl=60), age_s=20), {"cache-control": "max-age=10"})
    assert isinstance(step, decide.Revalidate)


def test_a_miss_is_forwarded_to_be_stored() -> None:
    assert isinstance(after_lookup(Found(None)), decide.Forward)


def test_only_if_cached_miss_answers_504() -> None:
    step = after_lookup(Found(None), {"cache-control": "only-if-cached"})
    assert isinstance(step, decide.OnlyIfCachedMiss)
    reply = only_if_cached_miss(state(), CFG)
    assert (reply.status, reply.body) == (504, "")
    assert reply.headers["X-Cache-Status"] == "Miss"


@pytest.mark.parametrize(
    ("headers", "method", "reason"),
    [
        ({"cache-control": "no-store"}, "GET", "request-no-store"),
        ({}, "HEAD", "head"),
    ],
)
def test_a_miss_that_may_not_be_stored_bypasses_with_its_reason(
    headers: dict[str, str], method: str, reason: str
) -> None:
    assert after_lookup(Found(None), headers, method=method) == decide.Bypass(reason)


def test_an_entry_stored_for_someone_else_is_not_served_to_a_guarded_request() -> None:
    found = Found(stored(cc="max-age=60"), age_s=1)
    assert after_lookup(found, rule="authorization") == decide.Bypass("authorization")
    only = after_lookup(found, {"cache-control": "only-if-cached"}, rule="cookie")
    assert isinstance(only, decide.OnlyIfCachedMiss)
    shared = Found(stored(cc="public, max-age=60"), age_s=1)
    assert isinstance(after_lookup(shared, rule="authorization"), decide.Serve)


# -- after the upstream answered ----------------------------------------------------------


def upstream(status: int, headers: dict[str, Any], now: float = NOW, complete: bool = True):
    return decide.Upstream(status, headers, complete, now)


def revalidating(entry: StoredEntry, **fields: Any) -> RequestState:
    s = state(**fields)
    s.revalidating(entry, age_s=100.0, looked_up_at=NOW, stale_if_error=fields.get("sie", True))
    return s


def test_stale_if_error_serves_the_entry_aged_by_the_plugins_clock_since_the_lookup() -> None:
    s = revalidating(stored(ttl=60, sie=300))
    step = decide.after_response(s, upstream(503, {"X-Error": "boom"}, now=NOW + 2.5), CFG)
    assert isinstance(step, decide.Serve) and step.release
    served = step.served
    assert (served.word, served.age_s) == (XCacheStatus.STALE, 102.5)
    assert served.member == "strata; hit; fwd-status=503; detail=stale-if-error"
    assert served.clear is not None and "x-error" in served.clear


def test_an_error_without_stale_if_error_is_proxied() -> None:
    s = revalidating(stored(ttl=60))
    s.stale_if_error = False
    step = decide.after_response(s, upstream(503, {"content-type": "text/plain"}), CFG)
    assert isinstance(step, decide.Proxied) and not step.decision.store


def test_a_304_refreshes_the_entry_and_stores_it_with_new_timing() -> None:
    s = revalidating(stored(ttl=60), request_headers=[(b"if-none-match", ETAG.encode())])
    s.client_conditional = True
    not_modified = {"cache-control": "max-age=120", "date": format_http_date(NOW + 5)}
    step = decide.after_response(s, upstream(304, not_modified, now=NOW + 5), CFG)
    assert isinstance(step, decide.Refresh)
    assert step.store is not None
    assert step.store.headers.get("cache-control") == "max-age=120"
    # back-dated by the 5 s the upstream took (RFC 9111 §4.2.3 response_delay)
    assert step.store.timing.ttl == 120 and step.store.timing.stored_at == NOW
    assert (step.store.body, step.store.status) == (b"hello", 200)
    served = step.served
    assert (served.word, served.age_s) == (XCacheStatus.REFRESH, 5.0)
    assert served.member == "strata; hit; fwd=stale; fwd-status=304; detail=revalidated"
    reply = entry_reply(served, s, CFG)  # the client's own ETag matches: a 304
    assert (reply.status, reply.body) == (304, b"")


def test_a_304_whose_merged_response_may_not_be_stored_is_served_not_stored() -> None:
    s = revalidating(stored(ttl=60))
    step = decide.after_response(s, upstream(304, {}, now=NOW + 4, complete=False), CFG)
    assert isinstance(step, decide.Refresh) and step.store is None
    assert step.served.age_s == 104.0  # the sidecar's 100 s at the lookup, plus 4 s since


def test_a_no_store_response_is_a_bypass_of_a_miss() -> None:
    headers = {"content-type": "text/plain", "cache-control": "no-store"}
    step = decide.after_response(state(), upstream(200, headers), CFG)
    assert isinstance(step, decide.Proxied) and step.decision.reason == "no-store"
    plan = decide.plan_store(state(), upstream(200, headers), step.decision, b"", CFG)
    assert plan == decide.StorePlan(None, False, "no-store")
    word, member = decide.proxied_status(state(), 200, plan, False, CFG)
    assert word == XCacheStatus.BYPASS.value
    assert member == "strata; fwd=uri-miss; fwd-status=200; detail=no-store"


def test_too_many_header_lines_are_never_stored() -> None:
    step = decide.after_response(state(), upstream(200, {}, complete=False), CFG)
    assert isinstance(step, decide.Proxied) and step.decision.reason == "too-many-headers"


def test_a_storable_response_becomes_the_entry_to_store() -> None:
    headers = {"content-type": "text/plain", "cache-control": "max-age=60", "connection": "x"}
    step = decide.after_response(state(), upstream(200, headers), CFG)
    assert isinstance(step, decide.Proxied) and step.decision.store
    plan = decide.plan_store(state(), upstream(200, headers), step.decision, b"body", CFG)
    assert plan.entry is not None and plan.storable and plan.detail is None
    assert "connection" not in plan.entry.headers  # hop-by-hop: never stored
    assert (plan.entry.body, plan.entry.timing.ttl) == (b"body", 60)
    # no Date from the origin: the time it was received is recorded (RFC 9110 §6.6.1)
    assert plan.entry.headers.get("date") == "Tue, 14 Nov 2023 22:13:20 GMT"
    dated = {**headers, "date": "Mon, 13 Nov 2023 22:13:20 GMT"}
    kept = decide.plan_store(state(), upstream(200, dated), step.decision, b"body", CFG).entry
    assert kept is not None and kept.headers.get_all("date") == ("Mon, 13 Nov 2023 22:13:20 GMT",)
    assert decide.proxied_status(state(), 200, plan, True, CFG) == (
        "Miss",
        "strata; fwd=uri-miss; fwd-status=200; stored",
    )
    # the sidecar could not take it: still a cacheable miss, said so
    word, member = decide.proxied_status(state(), 200, plan, False, CFG, "store-failed")
    assert (word, member.endswith("detail=store-failed")) == ("Miss", True)


def test_a_body_over_the_limit_is_not_stored() -> None:
    cfg = parse_config({"cache_control": True, "max_body_bytes": 4})
    headers = {"content-type": "text/plain", "cache-control": "max-age=60"}
    step = decide.after_response(state(), upstream(200, headers), cfg)
    assert isinstance(step, decide.Proxied)
    plan = decide.plan_store(state(), upstream(200, headers), step.decision, b"12345", cfg)
    assert plan == decide.StorePlan(None, False, "too-large")


# -- the reply built from a served entry ---------------------------------------------------


def test_an_entry_reply_replays_the_entry_with_the_caches_headers() -> None:
    served = Served(stored(extra={"x-kong-upstream-latency": "3"}), 7.9, XCacheStatus.HIT, "m")
    reply = entry_reply(served, state(), CFG)
    assert (reply.status, reply.body) == (200, b"hello")
    assert reply.headers["Age"] == "7"
    assert reply.headers["X-Cache-Status"] == "Hit"
    assert "x-kong-upstream-latency" not in reply.headers


def test_a_response_phase_reply_clears_the_upstreams_other_headers() -> None:
    served = Served(stored(), 1, XCacheStatus.STALE, "m", clear=("x-error", "etag"))
    reply = entry_reply(served, state(), CFG)
    assert reply.headers["x-error"] == []
    assert reply.headers["etag"] == ETAG
