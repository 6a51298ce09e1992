"""Parsing rules that decide storing and freshness: ``Age`` (RFC 9111 §5.1), delta-seconds
(§1.2.2), ``Expires`` (§5.3), heuristic freshness (§4.2.2, RFC 9110 §15.1), ``Set-Cookie``
(``cache_set_cookie``) and the ``*/*`` media range (RFC 9110 §12.5.1)."""

from __future__ import annotations

from typing import Any

import pytest

from kong_plugin.cache_control import DELTA_MAX, EMPTY, parse_cache_control, parse_delta_seconds
from kong_plugin.cacheability import response_decision
from kong_plugin.config import PluginConfig, parse_config
from kong_plugin.decide import Upstream, plan_store
from kong_plugin.freshness import age_value, corrected_initial_age, freshness_lifetime
from kong_plugin.headers import Headers, replay_headers, storable_headers
from kong_plugin.http_date import format_http_date
from kong_plugin.inflight import RequestState
from kong_plugin.mime import content_types_match, parse_media_range

NOW = 1_700_000_000.0
DATE = format_http_date(NOW)
CC_ON = parse_config({"cache_control": True, "cache_ttl": 300})
CC_OFF = parse_config({"cache_ttl": 300})
JSON = {"content-type": "application/json", "date": DATE}
LAST_MODIFIED = format_http_date(NOW - 10_000)


def store(headers: dict[str, Any], cfg: PluginConfig = CC_ON, status: int = 200, **kw: Any) -> Any:
    return response_decision(
        "GET", status, headers, EMPTY, cfg, request_time=NOW, response_time=NOW, **kw
    )


# -- Age -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("age", "expected"),
    [
        ("30", 30),
        ("7200, 0", 7200),  # a comma-combined field: the first member
        (["0", "7200"], 0),  # several lines: the first
        (["7200", "0"], 7200),
        (" 12 ", 12),
        (", 5", 5),  # empty list elements are skipped (RFC 9110 §5.6.1)
        ("0000000000000000000042", 42),
        ("99999999999", DELTA_MAX),
    ],
)
def test_only_the_first_age_member_counts_section_5_1(age: Any, expected: int) -> None:
    assert age_value({"age": age}) == expected


@pytest.mark.parametrize("age", ["abc", "-7200", "7200.0", "+5", "old, 0", "", ["x", "0"]])
def test_an_invalid_first_age_is_older_than_any_lifetime(age: Any) -> None:
    assert age_value({"age": age}) == DELTA_MAX
    h = {**JSON, "age": age}
    assert corrected_initial_age(h, request_time=NOW, response_time=NOW) == DELTA_MAX


def test_no_age_is_zero() -> None:
    assert age_value({}) == 0


def test_an_invalid_age_makes_the_response_stale_on_arrival() -> None:
    h = {**JSON, "cache-control": "max-age=3600", "age": "abc"}
    assert store(h).reason == "stale-on-arrival"
    d = store({**h, "etag": '"v1"'})
    assert d.store and d.revalidate  # kept only to be revalidated
    assert store({**h, "age": "0, abc"}).store


# -- delta-seconds ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("000000000060", 60),
        ("0" * 5000 + "60", 60),
        ("0000000000000", 0),
        ("2147483648", DELTA_MAX),
        ("2147483649", DELTA_MAX),
        ("00000000002147483649", DELTA_MAX),
        ("9" * 5000, DELTA_MAX),
    ],
)
def test_delta_seconds_leading_zeros_and_cap_section_1_2_2(value: str, expected: int) -> None:
    assert parse_delta_seconds(value) == expected
    for directive in ("max-age", "s-maxage", "stale-while-revalidate", "stale-if-error"):
        cc = parse_cache_control(f"{directive}={value}")
        assert getattr(cc, directive.replace("-", "_")) == expected, directive
        assert not cc.invalid


def test_a_capped_max_age_is_still_stored() -> None:
    d = store({**JSON, "cache-control": "max-age=99999999999999"})
    assert d.store and d.timing.ttl == DELTA_MAX


# -- Expires ------------------------------------------------------------------------------


def lifetime(headers: dict[str, Any], status: int = 200) -> Any:
    cc = parse_cache_control(headers.get("cache-control"))
    return freshness_lifetime(headers, cc, CC_ON, status=status, received_at=NOW)


@pytest.mark.parametrize(
    "bad",
    ["0", "-1", "Sun, 06 Nov 2094 08:49:37 +0000", "Thu, 18 Aug 2050 02:01:18 UTC", "soon"],
)
def test_an_invalid_expires_means_already_expired_section_5_3(bad: str) -> None:
    result = lifetime({"date": DATE, "expires": bad, "last-modified": LAST_MODIFIED})
    assert (result.seconds, result.source) == (0, "expires")
    assert store({**JSON, "expires": bad}).reason == "stale-on-arrival"


@pytest.mark.parametrize("directive", ["max-age=60", "s-maxage=60"])
def test_an_invalid_expires_is_ignored_beside_max_age_or_s_maxage(directive: str) -> None:
    result = lifetime({"date": DATE, "expires": "0", "cache-control": directive})
    assert result.seconds == 60
    assert store({**JSON, "expires": "0", "cache-control": directive}).store


def test_expires_in_every_date_form_and_past_2038() -> None:
    far = NOW + 40 * 365 * 86400
    for value in (
        format_http_date(NOW + 90),
        "Tuesday, 14-Nov-23 22:14:50 GMT",  # NOW + 90 in RFC 850
        "Tue Nov 14 22:14:50 2023",
    ):
        assert lifetime({"date": DATE, "expires": value}).seconds == 90, value
    assert lifetime({"date": DATE, "expires": format_http_date(far)}).seconds == far - NOW
    assert lifetime({"date": DATE, "expires": "Fri, 31 Dec 9999 23:59:59 GMT"}).seconds == (
        DELTA_MAX
    )


# -- heuristic freshness and response_code -----------------------------------------------

HEURISTIC = [200, 203, 204, 300, 301, 308, 404, 405, 410, 414, 501]


@pytest.mark.parametrize("status", HEURISTIC)
def test_heuristically_cacheable_statuses_whatever_response_code_says(status: int) -> None:
    """Behaviour changed: with cache_control the route's response_code is not consulted."""
    cfg = parse_config({"cache_control": True, "response_code": [418]})
    d = store({**JSON, "last-modified": LAST_MODIFIED}, cfg, status)
    assert d.store, status
    assert (d.timing.ttl, d.lifetime.source) == (1000, "heuristic")


@pytest.mark.parametrize("status", [201, 202, 302, 307, 403, 500, 503, 599])
def test_other_statuses_need_public_or_explicit_freshness(status: int) -> None:
    cfg = parse_config({"cache_control": True, "response_code": [status]})
    h = {**JSON, "last-modified": LAST_MODIFIED}
    assert store(h, cfg, status).reason in ("no-freshness", "status")
    assert store({**h, "cache-control": "public"}, cfg, status).timing.ttl == 1000
    assert store({**JSON, "cache-control": "public"}, cfg, status).timing.ttl == 300
    assert store({**JSON, "cache-control": "max-age=5"}, CC_ON, status).store


def test_a_no_cache_response_of_a_status_nothing_makes_storable_is_not_stored() -> None:
    """RFC 9111 §3: no explicit freshness, not heuristically cacheable, not public."""
    h = {**JSON, "cache-control": "no-cache", "etag": '"v1"'}
    assert store(h, CC_ON, 500).reason == "status"
    assert store(h, CC_ON, 404).store


def test_206_is_never_stored() -> None:
    cfg = parse_config({"cache_control": True, "response_code": [206]})
    h = {**JSON, "last-modified": LAST_MODIFIED, "cache-control": "max-age=60, public"}
    assert store(h, cfg, 206).reason == "status"


def test_without_cache_control_response_code_stays_kongs_gate() -> None:
    h = {**JSON, "last-modified": LAST_MODIFIED}
    assert store(h, CC_OFF, 410).reason == "status"
    assert store(h, CC_OFF, 404).store


# -- Set-Cookie ---------------------------------------------------------------------------

COOKIE_ON = parse_config({"cache_control": True, "cache_set_cookie": True})


@pytest.mark.parametrize("name", ["set-cookie", "set-cookie2"])
def test_set_cookie_is_stored_only_when_opted_in(name: str) -> None:
    h = {**JSON, "cache-control": "max-age=60", name: "sid=1"}
    assert store(h).reason == "set-cookie"
    assert store(h, parse_config({"cache_set_cookie": True})).store
    assert store(h, COOKIE_ON).store


def test_set_cookie_opt_in_keeps_every_other_rule() -> None:
    h = {**JSON, "set-cookie": "sid=1"}
    assert store({**h, "cache-control": "private, max-age=60"}, COOKIE_ON).reason == "private"
    assert store({**h, "cache-control": "no-store"}, COOKIE_ON).reason == "no-store"
    assert store(h, COOKIE_ON).reason == "no-freshness"
    guarded = store({**h, "cache-control": "max-age=60"}, COOKIE_ON, guard="cookie")
    assert guarded.reason == "cookie"


def test_the_set_cookie_lines_are_never_stored_nor_replayed() -> None:
    upstream = {
        **JSON,
        "cache-control": "max-age=60",
        "set-cookie": ["a=1", "b=2"],
        "Set-Cookie2": "c=3",
    }
    decision = store(upstream, COOKIE_ON)
    state = RequestState("store", "GET", "example.com", "/p", key="k", request_time=NOW)
    plan = plan_store(state, Upstream(200, upstream, True, NOW), decision, b"{}", COOKIE_ON)
    assert plan.entry is not None
    stored = plan.entry.headers
    assert "set-cookie" not in stored and "set-cookie2" not in stored
    assert stored.get("cache-control") == "max-age=60"
    # an entry written by another writer with the lines still in it replays none
    foreign = Headers.of({"set-cookie": "a=1", "etag": '"x"'})
    assert list(replay_headers(foreign)) == ["etag"]
    assert list(storable_headers(foreign)) == ["etag"]


# -- content_type */* ---------------------------------------------------------------------


@pytest.mark.parametrize("configured", ["*/*", "*", " */* "])
@pytest.mark.parametrize(
    "content_type",
    [
        {"content-type": "image/png"},
        {"content-type": "not a media type"},
        {"content-type": ""},
        {},
        {"content-type": ["text/plain", "application/json"]},
        {"content-type": "application/json; charset=utf-8"},
    ],
)
def test_the_whole_media_range_matches_any_content_type_section_12_5_1(
    configured: str, content_type: dict[str, Any]
) -> None:
    cfg = parse_config({"cache_control": True, "content_type": [configured]})
    h = {"date": DATE, "cache-control": "max-age=60", **content_type}
    assert store(h, cfg).store


@pytest.mark.parametrize(
    ("configured", "content_type"),
    [
        (["*/*; charset=utf-8"], "application/json"),
        (["application/*"], "text/plain"),
        (["text/*"], ["text/plain", "text/plain"]),
        (["application/json"], "junk"),
    ],
)
def test_other_ranges_keep_the_kong_rules(configured: list[str], content_type: Any) -> None:
    cfg = parse_config({"cache_control": True, "content_type": configured})
    h = {"date": DATE, "cache-control": "max-age=60", "content-type": content_type}
    assert store(h, cfg).reason == "content-type"


def test_content_types_match_directly() -> None:
    everything = (parse_media_range("*/*"),)
    json_only = (parse_media_range("application/json"),)
    assert all(r is not None for r in everything + json_only)
    ranges_all = tuple(r for r in everything if r is not None)
    ranges_json = tuple(r for r in json_only if r is not None)
    assert content_types_match((), ranges_all)
    assert not content_types_match((), ranges_json)
    assert content_types_match(("application/json",), ranges_json)
    assert not content_types_match(("application/json", "application/json"), ranges_json)
    assert content_types_match(("x", "y"), ranges_json + ranges_all)
