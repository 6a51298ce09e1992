"""Responses that may never be served stale (RFC 9111 §4.2.4, §5.2.2.2, §5.2.2.4,
§5.2.2.8, §5.2.2.10): no stale window of any origin, no ``max-stale``, and a 504 instead of
a stale copy when the origin is down."""

from __future__ import annotations

import pytest

from kong_plugin import decide
from kong_plugin.cache_control import parse_cache_control
from kong_plugin.cache_status import XCacheStatus
from kong_plugin.config import parse_config
from kong_plugin.freshness import EntryTiming, evaluate_reuse, stale_prohibited, stale_windows
from kong_plugin.inflight import RequestState
from kong_plugin.replies import origin_unreachable
from tests.support.plugin_entries import NOW, entry, lookup, revalidating, upstream

#: Route windows on, and a storage_ttl so that the time past the windows is not a keep
#: window: whatever forbids stale below is the response's directive.
ROUTE = parse_config(
    {
        "cache_control": True,
        "stale_while_revalidate": 100,
        "stale_if_error": 100,
        "storage_ttl": 3600,
    }
)
FORBIDDING = ["must-revalidate", "proxy-revalidate", "s-maxage=60", "s-maxage=x", "no-cache"]


@pytest.mark.parametrize("directive", FORBIDDING)
def test_each_forbidding_directive_is_recognised(directive: str) -> None:
    assert stale_prohibited(parse_cache_control(f"max-age=60, {directive}"))
    assert not stale_prohibited(parse_cache_control("max-age=60, public"))


@pytest.mark.parametrize("directive", FORBIDDING)
def test_no_stale_window_of_any_origin_survives(directive: str) -> None:
    cc = parse_cache_control(f"{directive}, stale-while-revalidate=30, stale-if-error=40")
    assert stale_windows(cc, ROUTE) == (0, 0)  # not the response's, not the route's


def test_s_maxage_no_longer_keeps_its_own_windows() -> None:
    """A change: ``s-maxage=60, stale-while-revalidate=30`` used to be served stale."""
    cc = parse_cache_control("s-maxage=60, stale-while-revalidate=30")
    assert stale_windows(cc, ROUTE) == (0, 0)
    plain = parse_cache_control("max-age=60, stale-while-revalidate=30")
    assert stale_windows(plain, ROUTE) == (100, 100)


#: Stored with windows (e.g. before its headers said otherwise): the directives still win.
WINDOWED = EntryTiming(NOW, 60, 100, 100, 3600)


@pytest.mark.parametrize("directive", ["must-revalidate", "proxy-revalidate", "s-maxage=60"])
@pytest.mark.parametrize("request_cc", ["", "max-stale=1000", "stale-if-error=1000"])
def test_a_forbidding_entry_is_never_reused_stale(directive: str, request_cc: str) -> None:
    r = evaluate_reuse(
        WINDOWED, 70, parse_cache_control(directive), parse_cache_control(request_cc), ROUTE
    )
    assert (r.action, r.detail, r.stale_if_error) == ("revalidate", "must-revalidate", False)


def test_without_the_directive_the_same_entry_is_served_stale() -> None:
    none = parse_cache_control("")
    r = evaluate_reuse(WINDOWED, 70, parse_cache_control("max-age=60"), none, ROUTE)
    assert (r.action, r.stale_if_error) == ("stale", True)


def test_cache_control_off_ignores_the_directives_like_kong() -> None:
    cfg = parse_config({"stale_while_revalidate": 100})
    r = evaluate_reuse(
        WINDOWED, 70, parse_cache_control("must-revalidate"), parse_cache_control(""), cfg
    )
    assert r.action == "stale"


# -- the origin is down -------------------------------------------------------------------


def stored(cc: str) -> decide.AccessStep:
    return lookup(entry({"cache-control": cc, "etag": '"v1"'}, ttl=60), ROUTE, age_s=75)


@pytest.mark.parametrize("directive", FORBIDDING)
def test_a_stale_forbidding_entry_falls_back_to_a_504_not_to_itself(directive: str) -> None:
    step = stored(f"max-age=60, {directive}")
    assert isinstance(step, decide.Revalidate) and not step.stale_if_error
    down = step.if_origin_down
    assert isinstance(down, decide.OriginUnreachable)
    assert down.member == "strata; ttl=-15; detail=origin-unreachable"


def test_a_fresh_forbidding_entry_that_a_client_wants_revalidated_has_no_fallback() -> None:
    """§5.2.2.2 is about stale responses: a fresh one revalidated because the client asked
    goes to the origin as any other request."""
    step = lookup(
        entry({"cache-control": "max-age=60, must-revalidate"}, ttl=60),
        ROUTE,
        age_s=10,
        headers={"cache-control": "no-cache"},
    )
    assert isinstance(step, decide.Revalidate) and step.if_origin_down is None
    step = lookup(
        entry({"cache-control": "max-age=60, must-revalidate"}, ttl=60),
        ROUTE,
        age_s=10,
        headers={"cache-control": "max-age=5"},
    )
    assert isinstance(step, decide.Revalidate) and step.if_origin_down is None


def test_an_entry_that_may_stand_in_falls_back_to_itself() -> None:
    step = lookup(entry({"cache-control": "max-age=60"}, ttl=60, sie=100), ROUTE, age_s=75)
    assert isinstance(step, decide.Revalidate)
    assert isinstance(step.if_origin_down, decide.Serve)
    step = lookup(entry({"cache-control": "max-age=60"}, ttl=60), ROUTE, age_s=75)
    assert isinstance(step, decide.Revalidate) and step.if_origin_down is None  # no window


def test_without_cache_control_no_504_is_made_up() -> None:
    cfg = parse_config({"cache_ttl": 60})
    step = lookup(entry({"cache-control": "must-revalidate"}, ttl=60), cfg, age_s=75)
    assert isinstance(step, decide.Revalidate) and step.if_origin_down is None


def test_the_504_reply() -> None:
    state = RequestState("store", "GET", "example.com", "/p", key="v2:r:k")
    reply = origin_unreachable(state, ROUTE, "strata; ttl=-15; detail=origin-unreachable")
    assert (reply.status, reply.body) == (504, "")
    assert reply.headers["X-Cache-Status"] == XCacheStatus.REFRESH.value
    assert reply.headers["Cache-Status"] == "strata; ttl=-15; detail=origin-unreachable"


@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_an_origin_error_is_passed_through_not_the_stale_copy(status: int) -> None:
    step = stored("max-age=60, must-revalidate")
    assert isinstance(step, decide.Revalidate)
    state = revalidating(step.entry, age_s=75, stale_if_error=step.stale_if_error)
    answer = decide.after_response(state, upstream(status, {"content-type": "text/plain"}), ROUTE)
    assert isinstance(answer, decide.Proxied)
