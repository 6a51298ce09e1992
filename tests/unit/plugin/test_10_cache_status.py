"""What clients are told: RFC 9211 Cache-Status, Age (RFC 9111 §5.1), X-Cache-Status."""

from __future__ import annotations

import pytest

from kong_plugin.cache_status import (
    XCacheStatus,
    age_value,
    append_cache_status,
    cache_status_value,
)


def test_hit_with_ttl_rfc9211():
    assert cache_status_value("strata", hit=True, ttl=42) == "strata; hit; ttl=42"


def test_miss_stored_rfc9211():
    assert cache_status_value("strata", fwd="uri-miss", stored=True) == (
        "strata; fwd=uri-miss; stored"
    )


def test_revalidated_with_304():
    assert cache_status_value("strata", fwd="stale", fwd_status=304) == (
        "strata; fwd=stale; fwd-status=304"
    )


def test_stale_served_has_negative_ttl_and_detail():
    assert cache_status_value("strata", hit=True, ttl=-90, detail="stale-if-error") == (
        "strata; hit; ttl=-90; detail=stale-if-error"
    )


def test_collapsed_miss():
    assert cache_status_value("strata", fwd="uri-miss", collapsed=True) == (
        "strata; fwd=uri-miss; collapsed"
    )


def test_key_is_an_sf_string_and_detail_quoted_when_not_a_token():
    v = cache_status_value("strata", fwd="bypass", key='v1:r:"x"\\', detail="sidecar down")
    assert v == 'strata; fwd=bypass; key="v1:r:\\"x\\"\\\\"; detail="sidecar down"'


def test_non_ascii_is_replaced_in_sf_strings():
    assert cache_status_value("c", detail="caf\u00e9 ok") == 'c; detail="caf? ok"'


def test_appended_after_upstream_caches_rfc9211_section_2():
    assert append_cache_status(None, "strata; hit") == "strata; hit"
    assert append_cache_status("OriginCache; hit; ttl=1", "strata; hit") == (
        "OriginCache; hit; ttl=1, strata; hit"
    )


@pytest.mark.parametrize(
    ("seconds", "header"),
    [(0, "0"), (12.9, "12"), (-3, "0"), (10**12, "2147483648")],
)
def test_age_is_whole_non_negative_seconds_capped_section_5_1(seconds, header):
    assert age_value(seconds) == header


def test_x_cache_status_values_keep_kongs_spelling():
    assert [s.value for s in XCacheStatus] == ["Hit", "Miss", "Bypass", "Refresh", "Stale"]
