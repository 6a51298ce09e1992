"""Freshness lifetime, age, stale windows and reuse (RFC 9111 §4.2; RFC 5861)."""

from __future__ import annotations

import pytest

from kong_plugin.cache_control import DELTA_MAX, EMPTY, parse_cache_control
from kong_plugin.config import parse_config
from kong_plugin.freshness import (
    HEURISTIC_CAP,
    EntryTiming,
    age_value,
    corrected_initial_age,
    current_age,
    evaluate_reuse,
    freshness_lifetime,
    is_fresh,
    stale_windows,
)
from kong_plugin.http_date import format_http_date

NOW = 1_700_000_000.0
DATE = format_http_date(NOW)
CC_ON = parse_config({"cache_control": True, "cache_ttl": 300})
CC_OFF = parse_config({"cache_ttl": 300})
DAY = 86400


def lifetime(headers, status=200, config=CC_ON):
    cc = parse_cache_control(headers.get("cache-control"))
    return freshness_lifetime(headers, cc, config, status=status, received_at=NOW)


# --- §4.2.1 explicit lifetime ---------------------------------------------------------


def test_s_maxage_beats_max_age_beats_expires_for_a_shared_cache():
    expires = format_http_date(NOW + 1000)
    h = {"cache-control": "max-age=60, s-maxage=120", "date": DATE, "expires": expires}
    assert lifetime(h).seconds == 120
    assert lifetime(h).source == "s-maxage"
    h["cache-control"] = "max-age=60"
    assert (lifetime(h).seconds, lifetime(h).source) == (60, "max-age")
    del h["cache-control"]
    assert (lifetime(h).seconds, lifetime(h).source) == (1000, "expires")


def test_expires_without_date_counts_from_receipt():
    assert lifetime({"expires": format_http_date(NOW + 50)}).seconds == 50


def test_invalid_expires_means_already_stale_section_5_3():
    for bad in ("0", "yesterday", ""):
        result = lifetime({"expires": bad, "date": DATE, "last-modified": format_http_date(0)})
        assert result.seconds == 0
        assert result.source == "expires"


def test_expires_in_the_past_is_zero_not_negative():
    assert lifetime({"expires": format_http_date(NOW - 100), "date": DATE}).seconds == 0


def test_several_expires_lines_take_the_earliest():
    h = {"expires": [format_http_date(NOW + 500), format_http_date(NOW + 100)], "date": DATE}
    assert lifetime(h).seconds == 100


def test_invalid_max_age_is_stale_even_with_expires_section_4_2_1():
    h = {"cache-control": "max-age=soon", "expires": format_http_date(NOW + 500), "date": DATE}
    assert lifetime(h).seconds == 0


# --- §4.2.2 heuristics ---------------------------------------------------------------


def test_heuristic_is_ten_percent_of_last_modified_age():
    h = {"date": DATE, "last-modified": format_http_date(NOW - 10_000)}
    result = lifetime(h)
    assert (result.seconds, result.source) == (1000, "heuristic")


def test_heuristic_is_capped_at_one_day():
    h = {"date": DATE, "last-modified": format_http_date(NOW - 365 * DAY)}
    assert lifetime(h).seconds == HEURISTIC_CAP == DAY


@pytest.mark.parametrize("status", [200, 203, 204, 300, 301, 308, 404, 405, 410, 414, 501])
def test_heuristic_applies_to_heuristically_cacheable_statuses(status):
    h = {"date": DATE, "last-modified": format_http_date(NOW - 10_000)}
    assert lifetime(h, status=status).seconds == 1000


@pytest.mark.parametrize("status", [201, 302, 307, 403, 500, 503])
def test_no_heuristic_for_other_statuses_unless_public(status):
    h = {"date": DATE, "last-modified": format_http_date(NOW - 10_000)}
    assert lifetime(h, status=status).source == "none"
    h["cache-control"] = "public"
    assert lifetime(h, status=status).seconds == 1000


def test_public_without_last_modified_gets_cache_ttl():
    result = lifetime({"cache-control": "public", "date": DATE})
    assert (result.seconds, result.source) == (300, "default")


def test_no_freshness_information_means_none():
    assert lifetime({"date": DATE}).source == "none"


def test_last_modified_in_the_future_gives_zero():
    h = {"date": DATE, "last-modified": format_http_date(NOW + 100)}
    assert lifetime(h).seconds == 0


# --- §4.2.3 age -----------------------------------------------------------------------


def test_age_header_and_response_delay_are_added():
    h = {"date": DATE, "age": "30"}
    assert corrected_initial_age(h, request_time=NOW - 2, response_time=NOW) == 32


def test_apparent_age_from_date_when_larger():
    h = {"date": format_http_date(NOW - 100), "age": "5"}
    assert corrected_initial_age(h, request_time=NOW, response_time=NOW) == 100


def test_missing_date_and_age_are_zero_an_invalid_first_age_is_beyond_any_lifetime():
    """§5.1: only the first member counts; an invalid one makes the response stale on
    arrival (behaviour changed: an invalid Age used to count as 0, the largest valid won)."""
    assert corrected_initial_age({}, request_time=NOW, response_time=NOW) == 0
    assert corrected_initial_age({"age": "x"}, request_time=NOW, response_time=NOW) == DELTA_MAX
    assert age_value({"age": ["x", "7", "3"]}) == DELTA_MAX
    assert age_value({"age": ["7", "x", "300"]}) == 7


def test_current_age_adds_resident_time():
    h = {"date": DATE, "age": "10"}
    assert current_age(h, request_time=NOW, response_time=NOW, now=NOW + 50) == 60


# --- stale windows --------------------------------------------------------------------


def test_without_cache_control_only_the_route_windows_count():
    c = parse_config({"stale_while_revalidate": 5, "stale_if_error": 6})
    cc = parse_cache_control("must-revalidate, stale-while-revalidate=100")
    assert stale_windows(cc, c) == (5, 6)


def test_with_cache_control_the_larger_window_wins():
    c = parse_config({"cache_control": True, "stale_while_revalidate": 5, "stale_if_error": 600})
    cc = parse_cache_control("max-age=1, stale-while-revalidate=100, stale-if-error=60")
    assert stale_windows(cc, c) == (100, 600)


@pytest.mark.parametrize("directive", ["must-revalidate", "proxy-revalidate", "no-cache"])
def test_revalidation_directives_forbid_stale_section_4_2_4(directive):
    c = parse_config({"cache_control": True, "stale_while_revalidate": 5, "stale_if_error": 6})
    cc = parse_cache_control(f"max-age=1, {directive}, stale-while-revalidate=100")
    assert stale_windows(cc, c) == (0, 0)


def test_s_maxage_forbids_every_stale_window_even_its_own_section_5_2_2_10():
    c = parse_config({"cache_control": True, "stale_while_revalidate": 500, "stale_if_error": 500})
    assert stale_windows(parse_cache_control("s-maxage=60"), c) == (0, 0)
    cc = parse_cache_control("s-maxage=60, stale-while-revalidate=30, stale-if-error=40")
    assert stale_windows(cc, c) == (0, 0)


# --- reuse ----------------------------------------------------------------------------

TIMING = EntryTiming(stored_at=NOW, ttl=100, stale_while_revalidate=20, stale_if_error=300)


def reuse(age, stored="", request="", timing=TIMING, config=CC_ON):
    return evaluate_reuse(
        timing, age, parse_cache_control(stored), parse_cache_control(request), config
    )


def test_fresh_entry_is_served_with_remaining_ttl():
    r = reuse(40)
    assert (r.action, r.age, r.ttl) == ("fresh", 40, 60)
    assert is_fresh(TIMING, 99.9)
    assert not is_fresh(TIMING, 100)


def test_stale_while_revalidate_serves_and_refreshes_rfc5861():
    r = reuse(110)
    assert r.action == "stale"
    assert r.background_revalidate
    assert r.ttl == -10
    assert r.detail == "stale-while-revalidate"


def test_beyond_stale_while_revalidate_revalidates_but_may_serve_on_error():
    r = reuse(150)
    assert r.action == "revalidate"
    assert r.stale_if_error
    assert not reuse(500).stale_if_error


def test_no_window_means_no_stale_at_the_exact_expiry():
    timing = EntryTiming(stored_at=NOW, ttl=100)
    assert reuse(100, timing=timing).action == "revalidate"


def test_request_max_age_section_5_2_1_1():
    assert reuse(40, request="max-age=30").action == "revalidate"
    assert reuse(20, request="max-age=30").action == "fresh"


def test_request_min_fresh_section_5_2_1_3():
    assert reuse(90, request="min-fresh=20").action == "revalidate"
    assert reuse(70, request="min-fresh=20").action == "fresh"
    assert reuse(110, request="min-fresh=1").action == "revalidate"


def test_request_max_stale_section_5_2_1_2():
    """With storage_ttl the entry is kept past its windows and max-stale may use it
    (without storage_ttl that time is the keep window: revalidation only)."""
    storing = parse_config({"cache_control": True, "cache_ttl": 300, "storage_ttl": DAY})
    timing = EntryTiming(stored_at=NOW, ttl=100)
    r = reuse(130, request="max-stale=60", timing=timing, config=storing)
    assert (r.action, r.detail) == ("stale", "max-stale")
    assert reuse(130, request="max-stale=10", timing=timing, config=storing).action == (
        "revalidate"
    )
    assert reuse(10**6, request="max-stale", timing=timing, config=storing).action == "stale"


@pytest.mark.parametrize("stored", ["must-revalidate", "proxy-revalidate", "s-maxage=100"])
def test_max_stale_cannot_override_revalidation_directives_section_4_2_4(stored):
    timing = EntryTiming(stored_at=NOW, ttl=100)
    r = reuse(130, stored=stored, request="max-stale=60", timing=timing)
    assert r.action == "revalidate"
    assert r.detail == "must-revalidate"


def test_no_cache_response_always_revalidates_section_5_2_2_4():
    r = reuse(0, stored="no-cache")
    assert r.action == "revalidate"
    assert not r.stale_if_error


def test_request_no_cache_revalidates_section_5_2_1_4():
    assert reuse(0, request="no-cache").action == "revalidate"


def test_request_stale_if_error_widens_the_error_window_rfc5861():
    storing = parse_config({"cache_control": True, "cache_ttl": 300, "storage_ttl": DAY})
    timing = EntryTiming(stored_at=NOW, ttl=100)
    assert not reuse(200, timing=timing, config=storing).stale_if_error
    assert reuse(200, request="stale-if-error=200", timing=timing, config=storing).stale_if_error


def test_without_cache_control_request_directives_are_ignored_like_kong():
    r = evaluate_reuse(TIMING, 40, EMPTY, parse_cache_control("no-cache, max-age=0"), CC_OFF)
    assert r.action == "fresh"
    r = evaluate_reuse(TIMING, 40, parse_cache_control("no-cache"), EMPTY, CC_OFF)
    assert r.action == "fresh"


def test_entry_timing_round_trips_through_proto_milliseconds():
    timing = EntryTiming(
        stored_at=NOW + 0.5, ttl=60, stale_while_revalidate=5, stale_if_error=7, storage_ttl=90
    )
    ms = timing.to_ms()
    assert ms == {
        "stored_at_ms": int((NOW + 0.5) * 1000),
        "ttl_ms": 60000,
        "stale_while_revalidate_ms": 5000,
        "stale_if_error_ms": 7000,
        "storage_ttl_ms": 90000,
    }
    assert EntryTiming.from_ms(**ms) == timing
    assert timing.age(NOW + 10.5) == 10
