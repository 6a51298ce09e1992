"""The keep window (RFC 9111 §4.3; nginx/Varnish "keep"): a response with a validator is
kept ``keep_ttl`` past its freshness and stale windows, only to be revalidated."""

from __future__ import annotations

from typing import Any

import pytest

from kong_plugin import decide
from kong_plugin.cache_control import EMPTY, parse_cache_control
from kong_plugin.cacheability import StoreDecision, response_decision
from kong_plugin.config import PluginConfig, parse_config
from kong_plugin.freshness import EntryTiming, Reuse, evaluate_reuse
from kong_plugin.http_date import format_http_date
from kong_plugin.schema import MAX_TTL_SECONDS
from tests.support.plugin_entries import NOW, entry, lookup

DATE = format_http_date(NOW)
LM = format_http_date(NOW - 3600)
CC_ON = parse_config({"cache_control": True, "cache_ttl": 300})
KEEP = CC_ON.keep_ttl


def decision(headers: dict[str, str], cfg: PluginConfig = CC_ON, **kw: Any) -> StoreDecision:
    h = {"content-type": "application/json", "date": DATE, **headers}
    return response_decision("GET", 200, h, EMPTY, cfg, request_time=NOW, response_time=NOW, **kw)


def storage(headers: dict[str, str], cfg: PluginConfig = CC_ON) -> int:
    d = decision(headers, cfg)
    assert d.store and d.timing is not None, d.reason
    return d.timing.storage_ttl


# -- storage TTL ----------------------------------------------------------------------


def test_the_default_keep_ttl_is_an_hour() -> None:
    assert KEEP == 3600


@pytest.mark.parametrize("validator", [{"etag": '"v1"'}, {"last-modified": LM}])
def test_a_response_with_a_validator_is_kept_past_its_windows(validator: dict[str, str]) -> None:
    assert storage({"cache-control": "max-age=60", **validator}) == 60 + KEEP
    windows = "max-age=60, stale-while-revalidate=30, stale-if-error=100"
    assert storage({"cache-control": windows, **validator}) == 60 + 100 + KEEP


def test_a_response_without_a_validator_is_kept_as_before() -> None:
    assert storage({"cache-control": "max-age=60"}) == 60
    assert storage({"cache-control": "max-age=60, stale-if-error=100"}) == 160


def test_the_keep_window_does_not_change_freshness_or_the_stale_windows() -> None:
    d = decision({"cache-control": "max-age=60, stale-while-revalidate=30", "etag": '"v1"'})
    assert d.timing is not None
    assert (d.timing.ttl, d.timing.stale_while_revalidate, d.timing.stale_if_error) == (60, 30, 0)


def test_keep_ttl_zero_keeps_nothing_more() -> None:
    cfg = parse_config({"cache_control": True, "keep_ttl": 0})
    assert storage({"cache-control": "max-age=60", "etag": '"v1"'}, cfg) == 60


def test_storage_ttl_wins_over_the_keep_window() -> None:
    cfg = parse_config({"cache_control": True, "cache_ttl": 300, "storage_ttl": 500})
    assert storage({"cache-control": "max-age=60", "etag": '"v1"'}, cfg) == 500
    assert storage({"cache-control": "max-age=60", "etag": '"v1"', "age": "7"}, cfg) == 507


def test_without_cache_control_the_route_ttl_is_kept_too() -> None:
    cfg = parse_config({"cache_ttl": 300, "stale_if_error": 20})
    assert storage({"etag": '"v1"'}, cfg) == 300 + 20 + KEEP
    assert storage({}, cfg) == 320


def test_the_total_never_exceeds_the_sidecars_cap_nor_shortens_what_was_kept() -> None:
    near = MAX_TTL_SECONDS - 10
    assert storage({"cache-control": f"max-age={near}", "etag": '"v1"'}) == MAX_TTL_SECONDS
    huge = MAX_TTL_SECONDS * 2  # the sidecar clamps this one itself (entry_bounds)
    assert storage({"cache-control": f"max-age={huge}", "etag": '"v1"'}) == huge


def test_keep_ttl_never_makes_a_config_invalid() -> None:
    year = MAX_TTL_SECONDS
    cfg = parse_config({"cache_ttl": year - 10, "stale_if_error": 10, "keep_ttl": year})
    assert storage({"etag": '"v1"'}, cfg) == year


def test_entries_kept_only_for_revalidation_get_the_keep_window_and_at_least_cache_ttl() -> None:
    assert storage({"cache-control": "no-cache", "etag": '"v1"'}) == max(KEEP, 300)
    no_keep = parse_config({"cache_control": True, "cache_ttl": 300, "keep_ttl": 0})
    assert storage({"cache-control": "no-cache", "etag": '"v1"'}, no_keep) == 300
    # stale on arrival (30 s old, 10 s of freshness): stored as stale from its arrival, kept
    # keep_ttl (at least cache_ttl) from then
    late = {"cache-control": "max-age=10", "age": "30", "last-modified": LM}
    assert storage(late) == max(KEEP, 300)
    assert storage(late, no_keep) == 300


def test_an_absurd_or_invalid_age_never_dates_an_entry_before_the_epoch() -> None:
    for age in ("abc", "2147483648", "99999999999999", "2147483000"):
        for extra in ({"etag": '"v1"'}, {}):
            headers = {"content-type": "application/json", "cache-control": "max-age=2147483648"}
            decision = response_decision(
                "GET",
                200,
                {**headers, "age": age, **extra},
                EMPTY,
                CC_ON,
                request_time=NOW,
                response_time=NOW,
            )
            if decision.timing is not None:
                assert decision.timing.stored_at >= 0, (age, extra)


# -- reuse of a kept entry --------------------------------------------------------------

#: Fresh 60 s, 10 s of stale-while-revalidate, 20 s of stale-if-error, then kept.
KEPT = EntryTiming(NOW, 60, 10, 20, 60 + 20 + KEEP)


def reuse(age: float, request: str = "", cfg: PluginConfig = CC_ON) -> Reuse:
    return evaluate_reuse(KEPT, age, EMPTY, parse_cache_control(request), cfg)


def test_past_its_windows_a_kept_entry_is_only_revalidated() -> None:
    r = reuse(60 + 21)
    assert (r.action, r.stale_if_error) == ("revalidate", False)


def test_max_stale_does_not_reach_into_the_keep_window() -> None:
    assert reuse(60 + 15, "max-stale=1000").action == "stale"  # within its windows
    assert reuse(60 + 21, "max-stale=1000").action == "revalidate"
    assert reuse(60 + 21, "max-stale").action == "revalidate"


def test_a_requests_stale_if_error_does_not_reach_into_the_keep_window() -> None:
    assert reuse(60 + 15, "stale-if-error=1000").stale_if_error
    assert not reuse(60 + 21, "stale-if-error=1000").stale_if_error


def test_with_storage_ttl_the_time_past_the_windows_is_not_a_keep_window() -> None:
    cfg = parse_config({"cache_control": True, "cache_ttl": 300, "storage_ttl": 7200})
    assert reuse(60 + 500, "max-stale=1000", cfg).action == "stale"


def test_a_kept_entry_is_revalidated_with_its_validator() -> None:
    stored = entry(
        {"content-type": "text/plain", "cache-control": "max-age=60", "etag": '"v1"'},
        ttl=60,
        storage_ttl=60 + KEEP,
    )
    step = lookup(stored, CC_ON, age_s=2000, headers={"cache-control": "max-stale=9999"})
    assert isinstance(step, decide.Revalidate)
    assert step.set_upstream == {"If-None-Match": '"v1"'}
    assert step.if_origin_down is None  # no stale-if-error, nothing forbids stale: proxied
