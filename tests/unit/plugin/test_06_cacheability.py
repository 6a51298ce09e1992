"""Request and response cacheability (RFC 9111 §3, §3.5, §5.2; Kong's gates)."""

from __future__ import annotations

import pytest

from kong_plugin.cache_control import EMPTY, parse_cache_control
from kong_plugin.cacheability import (
    content_length_exceeds,
    request_decision,
    response_decision,
)
from kong_plugin.config import parse_config
from kong_plugin.http_date import format_http_date

NOW = 1_700_000_000.0
DATE = format_http_date(NOW)
CC_OFF = parse_config({})
CC_ON = parse_config({"cache_control": True})
JSON = {"content-type": "application/json", "date": DATE}


def store(status=200, headers=None, config=CC_OFF, *, method="GET", request_cc=EMPTY, **kw):
    h = dict(JSON) if headers is None else headers
    return response_decision(
        method, status, h, request_cc, config, request_time=NOW, response_time=NOW, **kw
    )


# --- request_decision -----------------------------------------------------------------


def test_plain_get_is_looked_up_and_stored():
    d = request_decision("GET", {}, CC_OFF)
    assert (d.lookup, d.store, d.reason, d.method) == (True, True, "", "GET")
    assert not d.bypass


def test_method_not_configured_bypasses():
    d = request_decision("DELETE", {}, CC_OFF)
    assert d.bypass
    assert d.reason == "method"


def test_head_is_looked_up_under_get_but_never_stored():
    d = request_decision("HEAD", {}, CC_OFF)
    assert (d.lookup, d.store, d.method) == (True, False, "GET")


def test_range_requests_bypass_the_cache_when_ranges_are_not_served():
    """serve_ranges off: a Range request must never get a full 200 from the cache (the
    range serving itself is tested in test_35_ranges.py)."""
    d = request_decision("GET", {"range": "bytes=0-10"}, parse_config({"serve_ranges": False}))
    assert d.bypass
    assert d.reason == "range"


@pytest.mark.parametrize("field", ["if-match", "if-unmodified-since"])
def test_preconditions_go_to_the_origin(field):
    assert request_decision("GET", {field: '"x"'}, CC_OFF).reason == "precondition"


def test_request_no_cache_refreshes_but_stores_section_5_2_1_4():
    """Kong bypasses (#14120); RFC 9111: validate with the origin, response storable."""
    d = request_decision("GET", {"cache-control": "no-cache"}, CC_ON)
    assert (d.lookup, d.store, d.reason) == (False, True, "request-no-cache")


def test_request_no_store_may_be_served_but_not_stored_section_5_2_1_5():
    d = request_decision("GET", {"cache-control": "no-store"}, CC_ON)
    assert (d.lookup, d.store, d.reason) == (True, False, "request-no-store")


def test_request_directives_are_ignored_without_cache_control_like_kong():
    d = request_decision("GET", {"cache-control": "no-cache, no-store"}, CC_OFF)
    assert (d.lookup, d.store) == (True, True)
    assert d.cc is EMPTY


def test_only_if_cached_is_flagged_section_5_2_1_7():
    assert request_decision("GET", {"cache-control": "only-if-cached"}, CC_ON).only_if_cached
    assert not request_decision("GET", {"cache-control": "only-if-cached"}, CC_OFF).only_if_cached


# --- response_decision: gates ---------------------------------------------------------


def test_default_config_stores_a_json_200_for_cache_ttl():
    d = store()
    assert d.store
    assert d.reason == "stored"
    assert d.timing is not None
    assert (d.timing.ttl, d.timing.stored_at, d.timing.storage_ttl) == (300, NOW, 300)


@pytest.mark.parametrize("status", [100, 206, 304])
def test_interim_partial_and_not_modified_are_never_stored(status):
    config = parse_config({"response_code": [status, 200], "cache_control": True})
    h = {**JSON, "cache-control": "max-age=60"}
    assert store(status, h, config).reason == "status"


def test_status_must_be_in_response_code_without_cache_control():
    assert store(500).reason == "status"
    assert store(404).store


def test_explicit_freshness_makes_any_status_storable_with_cache_control():
    assert store(500, {**JSON, "cache-control": "max-age=10"}, CC_ON).store
    assert store(500, {**JSON, "last-modified": format_http_date(NOW - 1000)}, CC_ON).reason == (
        "status"
    )


@pytest.mark.parametrize(
    ("configured", "actual", "stored"),
    [
        ("application/json", "application/json", True),
        ("application/json", "Application/JSON", True),
        ("application/json", "application/json; charset=utf-8", False),
        ("application/json; charset=utf-8", "application/json; charset=UTF-8", True),
        ("application/json; charset=utf-8", 'application/json;charset="utf-8"', True),
        ("application/*", "application/xml", True),
        ("*/*", "image/png", True),
        ("*", "image/png", True),
        ("text/*", "application/json", False),
        ("application/json; a=1; b=2", "application/json; b=2; a=1", True),
        ("application/json; a=1", "application/json; a=1; b=2", False),
    ],
)
def test_content_type_matching_like_kong_3_2(configured, actual, stored):
    config = parse_config({"content_type": [configured]})
    assert store(200, {"content-type": actual}, config).store is stored


def test_missing_or_repeated_content_type_is_not_stored():
    assert store(200, {"date": DATE}).reason == "content-type"
    assert store(200, {"content-type": ["application/json", "text/plain"]}).reason == (
        "content-type"
    )


# --- privacy rules: both modes --------------------------------------------------------


@pytest.mark.parametrize("config", [CC_OFF, CC_ON], ids=["cache_control=false", "true"])
@pytest.mark.parametrize(
    ("extra", "reason"),
    [
        ({"cache-control": "no-store"}, "no-store"),
        ({"cache-control": "private, max-age=60"}, "private"),
        ({"set-cookie": "session=1"}, "set-cookie"),
        ({"vary": "Accept, *"}, "vary-star"),
    ],
)
def test_shared_cache_never_stores_private_data_section_3(config, extra, reason):
    assert store(200, {**JSON, **extra}, config).reason == reason


def test_must_understand_lets_a_known_status_ignore_no_store_section_5_2_2_3():
    h = {**JSON, "cache-control": "must-understand, no-store, max-age=60"}
    assert store(200, h, CC_ON).store


def test_qualified_private_stores_without_the_named_fields_section_5_2_2_7():
    d = store(200, {**JSON, "cache-control": 'private="x-user", max-age=60', "x-user": "u"}, CC_ON)
    assert d.store
    assert d.strip_headers == frozenset({"x-user"})


@pytest.mark.parametrize("config", [CC_OFF, CC_ON], ids=["cache_control=false", "true"])
def test_authorization_requires_public_or_s_maxage_section_3_5(config):
    h = {**JSON, "cache-control": "max-age=60"}
    assert store(200, h, config, guard="authorization").reason == "authorization"
    for directive in ("public", "s-maxage=60"):
        h = {**JSON, "cache-control": f"max-age=60, {directive}"}
        assert store(200, h, config, guard="authorization").store, directive


def test_must_revalidate_shares_an_authorization_response_only_when_it_is_honoured():
    """RFC 9111 §3.5 lets must-revalidate share it; with cache_control=false Strata ignores
    the response's lifetime (cache_ttl applies), so must-revalidate would protect nothing."""
    h = {**JSON, "cache-control": "max-age=0, must-revalidate", "etag": '"v1"'}
    assert store(200, h, CC_ON, guard="authorization").store
    assert store(200, h, CC_OFF, guard="authorization").reason == "authorization"


@pytest.mark.parametrize("config", [CC_OFF, CC_ON], ids=["cache_control=false", "true"])
def test_a_cookie_request_stores_only_an_explicitly_shared_response(config):
    for cc in ("max-age=60", "max-age=60, must-revalidate", None):
        h = {**JSON, "cache-control": cc} if cc else dict(JSON)
        assert store(200, h, config, guard="cookie").reason == "cookie", cc
    for cc in ("public, max-age=60", "s-maxage=60"):
        assert store(200, {**JSON, "cache-control": cc}, config, guard="cookie").store, cc


def test_an_unguarded_request_stores_as_before():
    """No credentials, or credentials the key separates (`credentials.guard` is "")."""
    assert store(200, dict(JSON), CC_OFF).store


def test_response_vary_names_are_recorded():
    d = store(200, {**JSON, "vary": "Accept-Encoding, accept-language"})
    assert d.vary == ("accept-encoding", "accept-language")


def test_oversized_bodies_are_not_stored():
    config = parse_config({"max_body_bytes": 10})
    assert store(200, config=config, body_size=11).reason == "too-large"
    assert store(200, config=config, body_size=10).store
    assert store(200, {**JSON, "content-length": "11"}, config).reason == "too-large"
    assert content_length_exceeds({"content-length": "11"}, config)
    assert not content_length_exceeds({"content-length": "junk"}, config)


def test_head_responses_and_request_no_store_are_not_stored():
    assert store(method="HEAD").reason == "head"
    assert store(request_cc=parse_cache_control("no-store"), config=CC_ON).reason == (
        "request-no-store"
    )
    assert store(request_cc=parse_cache_control("no-store"), config=CC_OFF).store


# --- TTL table ------------------------------------------------------------------------


def test_without_cache_control_ttl_is_cache_ttl_and_response_freshness_is_ignored():
    config = parse_config({"cache_ttl": 42, "stale_while_revalidate": 8})
    d = store(200, {**JSON, "cache-control": "max-age=1000, no-cache"}, config)
    assert d.timing is not None
    assert (d.timing.ttl, d.timing.stale_while_revalidate, d.timing.storage_ttl) == (42, 8, 50)
    assert not d.revalidate


def test_upstream_age_backdates_the_entry_section_4_2_3():
    d = store(200, {**JSON, "age": "20"}, CC_OFF)
    assert d.timing is not None
    assert d.timing.stored_at == NOW - 20
    assert d.timing.ttl == 320  # still fresh for cache_ttl after receipt


def test_cache_control_max_age_is_the_ttl():
    d = store(200, {**JSON, "cache-control": "max-age=60, stale-if-error=100"}, CC_ON)
    assert d.timing is not None
    assert (d.timing.ttl, d.timing.stale_if_error, d.timing.storage_ttl) == (60, 100, 160)
    assert d.lifetime is not None
    assert d.lifetime.source == "max-age"


def test_cache_control_heuristic_and_public_default():
    lm = format_http_date(NOW - 10_000)
    d = store(200, {**JSON, "last-modified": lm}, CC_ON)
    assert d.timing is not None
    assert d.timing.ttl == 1000
    d = store(
        200,
        {**JSON, "cache-control": "public"},
        parse_config({"cache_control": True, "cache_ttl": 77}),
    )
    assert d.timing is not None
    assert d.timing.ttl == 77


def test_cache_control_without_any_freshness_is_not_stored_like_kong():
    assert store(200, dict(JSON), CC_ON).reason == "no-freshness"


def test_no_cache_response_is_stored_for_revalidation_section_5_2_2_4():
    """Kong drops no-cache responses; RFC 9111 stores them and validates every use."""
    d = store(200, {**JSON, "cache-control": "no-cache", "etag": '"v1"'}, CC_ON)
    assert d.store
    assert d.revalidate
    assert d.timing is not None
    assert d.timing.ttl == 0
    assert d.timing.storage_ttl == CC_ON.keep_ttl  # kept keep_ttl (> cache_ttl) to revalidate
    assert store(200, {**JSON, "cache-control": "no-cache"}, CC_ON).reason == "no-cache"


def test_stale_on_arrival_is_kept_only_to_revalidate():
    h = {**JSON, "cache-control": "max-age=10", "age": "30"}
    assert store(200, h, CC_ON).reason == "stale-on-arrival"
    d = store(200, {**h, "last-modified": format_http_date(NOW - 5)}, CC_ON)
    assert d.store
    assert d.revalidate


def test_stale_on_arrival_within_a_stale_window_is_stored():
    h = {**JSON, "cache-control": "max-age=10, stale-while-revalidate=60", "age": "30"}
    d = store(200, h, CC_ON)
    assert d.store
    assert not d.revalidate


def test_storage_ttl_overrides_the_storage_lifetime():
    config = parse_config({"cache_ttl": 60, "storage_ttl": 3600})
    d = store(200, {**JSON, "age": "5"}, config)
    assert d.timing is not None
    assert (d.timing.ttl, d.timing.storage_ttl) == (65, 3605)
