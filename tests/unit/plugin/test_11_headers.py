"""Header maps from Kong, hop-by-hop removal and what is never stored or replayed
(RFC 9110 §7.6.1, §5.3, §5.6.7; Kong proxy-cache anchors §1.5)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from kong_plugin.headers import (
    Headers,
    replay_headers,
    storable_headers,
    strip_hop_by_hop,
)
from kong_plugin.http_date import format_http_date, parse_http_date

IMF = 784111777.0  # Sun, 06 Nov 1994 08:49:37 GMT


def test_kong_maps_become_case_insensitive_multi_valued():
    h = Headers.of({"Content-Type": "text/plain", "set-cookie": ["a=1", "b=2"], "ETag": '"x"'})
    assert h.get("content-type") == "text/plain"
    assert h.get("CONTENT-TYPE") == "text/plain"
    assert h.get_all("Set-Cookie") == ("a=1", "b=2")
    assert h.combined("set-cookie") == "a=1, b=2"
    assert "etag" in h
    assert h.get("missing") is None
    assert h.get_all("missing") == ()
    assert Headers.of(h) is h


def test_same_name_in_two_cases_is_merged():
    assert Headers.of({"X-A": "1", "x-a": "2"}).get_all("x-a") == ("1", "2")


def test_to_kong_round_trips():
    raw = {"a": "1", "b": ["2", "3"]}
    assert Headers.of(raw).to_kong() == raw
    assert list(Headers.of(raw).lines()) == [("a", "1"), ("b", "2"), ("b", "3")]


def test_hop_by_hop_and_connection_listed_fields_are_removed_rfc9110_7_6_1():
    h = {
        "connection": "close, X-Secret",
        "keep-alive": "timeout=5",
        "te": "trailers",
        "trailer": "x",
        "transfer-encoding": "chunked",
        "upgrade": "h2c",
        "proxy-authenticate": "Basic",
        "proxy-foo": "1",
        "x-secret": "s",
        "content-type": "a/b",
    }
    assert list(strip_hop_by_hop(h)) == ["content-type"]


def test_never_stored_fields_and_rate_limit_counters():
    h = {
        "set-cookie": "a=1",
        "age": "5",
        "content-length": "10",
        "x-cache-status": "Hit",
        "x-cache-key": "k",
        "x-ratelimit-remaining-minute": "4",
        "ratelimit-remaining": "3",
        "ratelimit-policy": "10;w=60",
        "x-kong-upstream-latency": "3",
        "etag": '"e"',
        "cache-status": "origin; hit",
    }
    assert list(storable_headers(h)) == ["etag", "cache-status"]
    assert list(replay_headers(h)) == ["etag", "cache-status"]


def test_connection_listed_fields_are_never_stored():
    h = {"connection": "x-hop", "x-hop": "1", "etag": "e"}
    assert list(storable_headers(h)) == ["etag"]


def test_storable_headers_strips_named_private_fields():
    assert list(storable_headers({"x-user": "u", "etag": "e"}, strip={"x-user"})) == ["etag"]


def test_http_date_formats_rfc9110_5_6_7():
    assert parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT") == IMF
    assert parse_http_date("Sunday, 06-Nov-94 08:49:37 GMT") == IMF
    assert parse_http_date("Sun Nov  6 08:49:37 1994") == IMF
    assert format_http_date(IMF) == "Sun, 06 Nov 1994 08:49:37 GMT"


def test_invalid_http_dates_are_none():
    for bad in (
        None,
        "",
        "0",
        "-1",
        "tomorrow",
        "Sun, 32 Nov 1994 08:49:37 GMT",
        "Sun, 06 Nov 1994 25:49:37 GMT",
        "a, 1 Jan 99999999999 1:1:1 GMT",
    ):
        assert parse_http_date(bad) is None, bad


@given(st.text())
def test_http_date_parser_never_raises(value):
    result = parse_http_date(value)
    assert result is None or isinstance(result, float)


@given(st.dictionaries(st.text(max_size=8), st.one_of(st.text(), st.lists(st.text(), max_size=3))))
def test_header_filters_never_raise(raw):
    h = Headers.of(raw)
    assert set(storable_headers(h)) <= set(h)
