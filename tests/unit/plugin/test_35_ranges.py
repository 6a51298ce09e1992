"""Byte ranges answered from stored responses (`kong_plugin.ranges`, `replies.entry_reply`,
`cacheability.request_decision`, `decide`): RFC 9110 §14, §13.1.5, §13.2.2, §15.3.7,
§15.5.17."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kong_plugin import decide
from kong_plugin.cache_status import XCacheStatus
from kong_plugin.cacheability import request_decision
from kong_plugin.config import PluginConfig, parse_config
from kong_plugin.freshness import EntryTiming
from kong_plugin.headers import Headers
from kong_plugin.http_date import format_http_date
from kong_plugin.inflight import RequestState
from kong_plugin.ranges import (
    MAX_RANGE_FIELD,
    Partial,
    RangeSpec,
    Unsatisfiable,
    if_range_holds,
    parse_range,
    resolve,
    select_range,
)
from kong_plugin.replies import Served, entry_reply
from kong_plugin.stored import Found, StoredEntry

NOW = 1_700_000_000.0
CFG = parse_config({"cache_control": True, "cache_ttl": 300})
OFF = parse_config({"cache_control": True, "serve_ranges": False})
BODY = b"0123456789"
ETAG = '"v1"'
MODIFIED = format_http_date(NOW - 3600)
DATE = format_http_date(NOW)


def entry(
    body: bytes = BODY, status: int = 200, extra: dict[str, str] | None = None
) -> StoredEntry:
    fields = {
        "content-type": "text/plain",
        "cache-control": "max-age=60",
        "etag": ETAG,
        "last-modified": MODIFIED,
        "date": DATE,
        "x-origin": "kept",
    }
    fields.update(extra or {})
    return StoredEntry(status, Headers.of(fields), body, EntryTiming(NOW, 60, 0, 0, 660))


def state(method: str = "GET") -> RequestState:
    return RequestState("store", method, "example.com", "/p", key="v2:r:k", request_time=NOW)


def reply(
    request: dict[str, str],
    stored: StoredEntry | None = None,
    method: str = "GET",
    cfg: PluginConfig = CFG,
) -> Any:
    served = Served(stored or entry(), 5.0, XCacheStatus.HIT, "strata; hit", Headers.of(request))
    return entry_reply(served, state(method), cfg)


# -- parse_range (§14.1, §14.1.1) -----------------------------------------------------


@pytest.mark.parametrize(
    ("value", "spec"),
    [
        ("bytes=0-4", RangeSpec(0, 4)),
        ("bytes=5-", RangeSpec(5, None)),
        ("bytes=-3", RangeSpec(None, 3)),
        ("BYTES=2-2", RangeSpec(2, 2)),  # range units are case-insensitive (§14.1)
        ("bytes=-0", RangeSpec(None, 0)),  # valid, unsatisfiable
        ("bytes=0-4, ", RangeSpec(0, 4)),  # empty list elements are allowed (§5.6.1)
        (" bytes=7-9 ", RangeSpec(7, 9)),
    ],
)
def test_a_single_byte_range_is_parsed(value: str, spec: RangeSpec) -> None:
    assert parse_range(value) == spec


@pytest.mark.parametrize(
    "value",
    [
        "",
        "bytes=0-4,6-7",  # several ranges: served whole, no multipart/byteranges
        "bytes=-1,0-0",
        "bytes=4-2",  # last-pos below first-pos is invalid (§14.1.1)
        "items=0-1",  # another unit
        "bytes 0-1",
        "bytes=",
        "bytes=-",
        "bytes=a-b",
        "bytes=1-x",
        "bytes=0x1-2",
        "bytes=\u0661-2",  # a digit of another script is not a DIGIT
        "bytes=1 - 2",
        "bytes=0-" + "9" * MAX_RANGE_FIELD,  # over-long
    ],
)
def test_a_range_to_ignore_parses_to_none(value: str) -> None:
    assert parse_range(value) is None


@given(st.text(max_size=60))
def test_parse_range_never_raises(value: str) -> None:
    spec = parse_range(value)
    assert spec is None or spec.first is not None or spec.last is not None


# -- resolve (§14.1.1 satisfiability) ----------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "length", "answer"),
    [
        (RangeSpec(0, 4), 10, Partial(0, 4, 10)),
        (RangeSpec(3, None), 10, Partial(3, 9, 10)),
        (RangeSpec(8, 100), 10, Partial(8, 9, 10)),  # last beyond the end: clamped
        (RangeSpec(9, 9), 10, Partial(9, 9, 10)),
        (RangeSpec(None, 3), 10, Partial(7, 9, 10)),
        (RangeSpec(None, 30), 10, Partial(0, 9, 10)),  # a longer suffix: the whole body
        (RangeSpec(10, None), 10, Unsatisfiable(10)),  # first >= length
        (RangeSpec(12, 20), 10, Unsatisfiable(10)),
        (RangeSpec(None, 0), 10, Unsatisfiable(10)),  # suffix -0
        (RangeSpec(0, 0), 0, Unsatisfiable(0)),  # an empty body has no byte 0
        (RangeSpec(None, 5), 0, None),  # satisfiable by §14.1.1, nothing to send: whole
    ],
)
def test_ranges_resolve_against_the_length(
    spec: RangeSpec, length: int, answer: Partial | Unsatisfiable | None
) -> None:
    assert resolve(spec, length) == answer


@given(st.integers(0, 50), st.one_of(st.none(), st.integers(0, 80)), st.integers(0, 60))
def test_a_partial_is_inside_the_body(first: int, last: int | None, length: int) -> None:
    if last is not None and last < first:
        return
    answer = resolve(RangeSpec(first, last), length)
    body = bytes(range(length))
    if isinstance(answer, Partial):
        part = answer.slice(body)
        assert 0 <= answer.first <= answer.last < length
        assert part == body[first : (length if last is None else last + 1)]
        assert len(part) == answer.last - answer.first + 1
    else:
        assert answer == Unsatisfiable(length) and first >= length


# -- If-Range (§13.1.5) ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("if_range", "holds"),
    [
        (ETAG, True),
        ('"v2"', False),
        ('W/"v1"', False),  # a weak tag never matches strongly
        (MODIFIED, True),  # equal to Last-Modified, one hour before Date: strong
        (format_http_date(NOW - 3599), False),
        ("not a date", False),
        ('"v1', False),
    ],
)
def test_if_range_holds_for_a_strong_match_only(if_range: str, holds: bool) -> None:
    assert if_range_holds(if_range, entry().headers) is holds


def test_if_range_with_a_weak_stored_etag_never_holds() -> None:
    assert not if_range_holds('"v1"', entry(extra={"etag": 'W/"v1"'}).headers)


def test_if_range_date_needs_last_modified_a_second_before_date() -> None:
    """§8.8.2.2: a Last-Modified less than a second before Date is a weak validator."""
    same_second = entry(extra={"last-modified": DATE, "date": DATE}).headers
    assert not if_range_holds(DATE, same_second)
    no_date = Headers.of({"last-modified": MODIFIED})
    assert not if_range_holds(MODIFIED, no_date)


def test_select_range_applies_if_range_or_serves_the_whole() -> None:
    stored = entry().headers
    ranged = {"range": "bytes=0-1"}
    assert select_range("GET", ranged, 200, stored, 10) == Partial(0, 1, 10)
    assert select_range("GET", {**ranged, "if-range": ETAG}, 200, stored, 10) == Partial(0, 1, 10)
    assert select_range("GET", {**ranged, "if-range": '"old"'}, 200, stored, 10) is None
    assert select_range("HEAD", ranged, 200, stored, 10) is None  # §14.2: GET only
    assert select_range("GET", ranged, 404, stored, 10) is None  # only a stored 200
    repeated = Headers({"range": ("bytes=0-1", "bytes=2-3")})
    assert select_range("GET", repeated, 200, stored, 10) is None


# -- the replies -------------------------------------------------------------------------


def test_a_single_range_is_answered_206_with_the_stored_fields() -> None:
    out = reply({"range": "bytes=2-5"})
    assert (out.status, out.body) == (206, b"2345")
    h = out.headers
    assert h["content-range"] == "bytes 2-5/10"
    assert h["accept-ranges"] == "bytes"
    # §15.3.7: the fields a 200 would have (Content-Length comes from the body sent)
    for name in ("content-type", "cache-control", "etag", "last-modified", "date", "x-origin"):
        assert name in h
    assert "content-length" not in h
    assert h["X-Cache-Status"] == "Hit"


@pytest.mark.parametrize(
    ("value", "body", "content_range"),
    [
        ("bytes=7-", b"789", "bytes 7-9/10"),
        ("bytes=-2", b"89", "bytes 8-9/10"),
        ("bytes=8-1000", b"89", "bytes 8-9/10"),
        ("bytes=0-0", b"0", "bytes 0-0/10"),
    ],
)
def test_open_suffix_and_clamped_ranges(value: str, body: bytes, content_range: str) -> None:
    out = reply({"range": value})
    assert (out.status, out.body, out.headers["content-range"]) == (206, body, content_range)


@pytest.mark.parametrize("value", ["bytes=10-", "bytes=-0", "bytes=50-60"])
def test_an_unsatisfiable_range_is_416_with_the_length(value: str) -> None:
    out = reply({"range": value})
    assert (out.status, out.body) == (416, b"")
    h = out.headers
    assert h["content-range"] == "bytes */10"
    assert h["accept-ranges"] == "bytes"
    assert h["etag"] == ETAG and h["X-Cache-Status"] == "Hit"
    # no content, and not the stored response: neither content fields nor freshness
    for name in ("content-type", "cache-control", "x-origin"):
        assert name not in h


def test_a_range_of_an_empty_body_is_416() -> None:
    out = reply({"range": "bytes=0-"}, entry(body=b""))
    assert (out.status, out.headers["content-range"]) == (416, "bytes */0")


@pytest.mark.parametrize(
    "request_headers",
    [
        {"range": "bytes=0-1,4-5"},  # several ranges: the whole 200, no multipart
        {"range": "bytes=5-2"},
        {"range": "lines=1-2"},
        {"range": "bytes=0-" + "1" * 1100},
        {"range": "bytes=0-1", "if-range": '"changed"'},
        {"range": "bytes=0-1", "if-range": 'W/"v1"'},
    ],
)
def test_a_range_to_ignore_gets_the_whole_200(request_headers: dict[str, str]) -> None:
    out = reply(request_headers)
    assert (out.status, out.body) == (200, BODY)
    assert "content-range" not in out.headers


def test_a_matching_conditional_wins_over_range_section_13_2_2() -> None:
    out = reply({"range": "bytes=0-1", "if-none-match": ETAG})
    assert (out.status, out.body) == (304, b"")
    assert "content-range" not in out.headers


def test_head_and_stored_non_200_ignore_the_range() -> None:
    head = reply({"range": "bytes=0-1"}, method="HEAD")
    assert (head.status, head.body, head.headers["content-length"]) == (200, b"", "10")
    not_found = reply({"range": "bytes=0-1"}, entry(status=404))
    assert (not_found.status, not_found.body) == (404, BODY)


def test_the_range_applies_to_the_stored_encoded_bytes() -> None:
    """With a stored Content-Encoding, the encoded bytes are the representation."""
    gz = bytes(range(200, 220))
    out = reply({"range": "bytes=0-3"}, entry(body=gz, extra={"content-encoding": "gzip"}))
    assert (out.status, out.body) == (206, gz[:4])
    assert out.headers["content-encoding"] == "gzip"
    assert out.headers["content-range"] == "bytes 0-3/20"


def test_with_serve_ranges_off_a_range_reaching_entry_reply_gets_the_whole() -> None:
    out = reply({"range": "bytes=0-1"}, cfg=OFF)
    assert (out.status, out.body) == (200, BODY)


def test_a_response_phase_206_clears_the_upstreams_other_fields() -> None:
    served = Served(
        entry(),
        1.0,
        XCacheStatus.REFRESH,
        "strata; hit",
        Headers.of({"range": "bytes=0-2"}),
        clear=("x-upstream-only", "etag"),
    )
    out = entry_reply(served, state(), CFG)
    assert (out.status, out.body) == (206, b"012")
    assert out.headers["x-upstream-only"] == []  # cleared
    assert out.headers["etag"] == ETAG  # set from the entry


# -- request_decision and after_lookup ---------------------------------------------------


def test_a_range_get_is_looked_up_never_stored_and_never_waits() -> None:
    d = request_decision("GET", {"range": "bytes=0-1"}, CFG)
    assert (d.lookup, d.store, d.reason, d.may_wait) == (True, False, "range", False)
    plain = request_decision("GET", {}, CFG)
    assert plain.may_wait


def test_a_heads_range_is_ignored_section_14_2() -> None:
    d = request_decision("HEAD", {"range": "bytes=0-1"}, CFG)
    assert (d.lookup, d.store, d.reason, d.may_wait) == (True, False, "head", True)


def test_range_with_other_methods_or_serving_off_bypasses() -> None:
    post = parse_config({"cache_control": True, "request_method": ["GET", "HEAD", "POST"]})
    assert request_decision("POST", {"range": "bytes=0-1"}, post).bypass
    off = request_decision("GET", {"range": "bytes=0-1"}, OFF)
    assert off.bypass and off.reason == "range"


def test_range_with_request_no_cache_is_a_bypass_it_may_not_store() -> None:
    d = request_decision("GET", {"range": "bytes=0-1", "cache-control": "no-cache"}, CFG)
    assert d.bypass and d.reason == "range"


def test_range_with_a_precondition_still_goes_to_the_origin() -> None:
    d = request_decision("GET", {"range": "bytes=0-1", "if-match": ETAG}, CFG)
    assert d.bypass and d.reason == "precondition"


def lookup(found: Found, headers: dict[str, str]) -> decide.AccessStep:
    h = Headers.of(headers)
    return decide.after_lookup(found, request_decision("GET", h, CFG), "", h, CFG)


def test_a_range_miss_is_a_bypass_that_gives_the_fill_lease_up() -> None:
    step = lookup(Found(None, fill_lease=True), {"range": "bytes=0-1"})
    assert step == decide.Bypass("range")  # the handler releases the lease for a Bypass


def test_a_range_hit_is_served_with_the_request_headers() -> None:
    step = lookup(Found(entry(), age_s=1), {"range": "bytes=0-1"})
    assert isinstance(step, decide.Serve)
    out = entry_reply(step.served, state(), CFG)
    assert (out.status, out.body) == (206, b"01")


def test_after_a_304_revalidation_a_range_is_still_answered_206() -> None:
    """decide._refresh hands the request headers on when the request has a Range."""
    s = state()
    s.request_headers = [(b"range", b"bytes=1-3"), (b"x-a", b"1"), (b"x-a", b"2")]
    s.revalidating(entry(), age_s=100.0, looked_up_at=NOW, stale_if_error=False)
    not_modified = {"cache-control": "max-age=120", "date": format_http_date(NOW + 1)}
    step = decide.after_response(s, decide.Upstream(304, not_modified, True, NOW + 1), CFG)
    assert isinstance(step, decide.Refresh)
    conditional = step.served.conditional
    assert conditional is not None and conditional.get_all("x-a") == ("1", "2")
    out = entry_reply(step.served, s, CFG)
    assert (out.status, out.body) == (206, b"123")
    assert out.headers["content-range"] == "bytes 1-3/10"
    assert out.headers["cache-control"] == "max-age=120"  # the refreshed fields


def test_after_a_304_without_range_or_conditional_no_request_headers_are_kept() -> None:
    s = state()
    s.request_headers = [(b"accept", b"*/*")]
    s.revalidating(entry(), age_s=100.0, looked_up_at=NOW, stale_if_error=False)
    step = decide.after_response(s, decide.Upstream(304, {}, True, NOW + 1), CFG)
    assert isinstance(step, decide.Refresh) and step.served.conditional is None
