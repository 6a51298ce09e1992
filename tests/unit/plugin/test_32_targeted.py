"""Targeted cache-control fields (RFC 9213): which directives decide, and where they are
used -- storing, freshness, reuse, sharing, forwarding."""

from __future__ import annotations

from typing import Any

import pytest

from kong_plugin import decide
from kong_plugin.cache_control import DELTA_MAX, EMPTY, CacheControl
from kong_plugin.cache_status import XCacheStatus
from kong_plugin.cacheability import request_decision, response_decision
from kong_plugin.config import PluginConfig, TargetedConfig, parse_config
from kong_plugin.errors import ConfigError
from kong_plugin.freshness import EntryTiming, freshness_lifetime, stale_windows
from kong_plugin.headers import Headers
from kong_plugin.http_date import format_http_date
from kong_plugin.inflight import RequestState
from kong_plugin.replies import Served, entry_reply
from kong_plugin.stored import Found, StoredEntry
from kong_plugin.targeted import (
    fields_to_clear,
    hidden_fields,
    response_cc,
    targeted_cc,
    without_hidden,
)

NOW = 1_700_000_000.0
DATE = format_http_date(NOW)
CFG = parse_config({"cache_control": True, "cache_ttl": 300})
OWN = "strata-cache-control"
CDN = "cdn-cache-control"
JSON = {"content-type": "application/json", "date": DATE}


def cc_of(headers: dict[str, Any], cfg: PluginConfig = CFG) -> CacheControl:
    return response_cc(headers, cfg)


def store(headers: dict[str, Any], cfg: PluginConfig = CFG, status: int = 200, **kw: Any) -> Any:
    return response_decision(
        "GET",
        status,
        {**JSON, **headers},
        EMPTY,
        cfg,
        request_time=NOW,
        response_time=NOW,
        **kw,
    )


# -- which field decides ---------------------------------------------------------------


def test_without_targeted_fields_cache_control_decides() -> None:
    cc = cc_of({"cache-control": "max-age=60, public"})
    assert (cc.max_age, cc.public, cc.targeted) == (60, True, False)


def test_strata_field_beats_cdn_cache_control_beats_cache_control_section_2_2() -> None:
    h = {"cache-control": "max-age=600", CDN: "max-age=60", OWN: "max-age=5"}
    assert cc_of(h).max_age == 5
    del h[OWN]
    assert cc_of(h).max_age == 60
    assert cc_of(h).targeted


def test_the_deciding_field_replaces_cache_control_entirely() -> None:
    cc = cc_of({"cache-control": "no-store, private, max-age=600", CDN: "max-age=60"})
    assert cc == CacheControl(max_age=60, targeted=True)


@pytest.mark.parametrize(
    "bad",
    [
        "max-age=60, &&&&&",  # not a Structured Field
        "Max-Age=60",  # keys are lower case
        "max-age =60",
        "",
        "   ",
    ],
)
def test_an_invalid_or_empty_targeted_field_is_ignored_as_a_whole_section_2_1(bad: str) -> None:
    h = {OWN: bad, CDN: "max-age=60", "cache-control": "max-age=600"}
    assert cc_of(h).max_age == 60
    del h[CDN]
    cc = cc_of(h)
    assert (cc.max_age, cc.targeted) == (600, False)


def test_a_valid_field_with_no_known_directive_still_decides() -> None:
    """RFC 9213 §3.1's ``CDN-Cache-Control: none``: valid, not empty, nothing in it."""
    cc = cc_of({CDN: "none", "cache-control": "no-store"})
    assert cc == CacheControl(targeted=True)


def test_cdn_cache_control_is_not_read_when_disabled() -> None:
    cfg = parse_config(
        {"cache_control": True, "targeted_cache_control": {"cdn_cache_control": False}}
    )
    assert cc_of({CDN: "max-age=60", "cache-control": "max-age=600"}, cfg).max_age == 600


def test_a_custom_field_name_is_read_case_insensitively() -> None:
    cfg = parse_config(
        {"cache_control": True, "targeted_cache_control": {"field": "Acme-Cache-Control"}}
    )
    assert cc_of({"ACME-Cache-Control": "max-age=7"}, cfg).max_age == 7
    assert cc_of({OWN: "max-age=7", "cache-control": "max-age=1"}, cfg).max_age == 1


def test_repeated_lines_are_one_dictionary() -> None:
    cc = cc_of({OWN: ["max-age=60", "must-revalidate"]})
    assert (cc.max_age, cc.must_revalidate) == (60, True)


# -- what the members mean ---------------------------------------------------------------


def test_delta_directives_are_non_negative_integers_capped_at_2_31() -> None:
    cc = targeted_cc(
        {OWN: "max-age=99999999999, s-maxage=0, stale-while-revalidate=30, stale-if-error=7"},
        (OWN,),
    )
    assert cc is not None
    assert (cc.max_age, cc.s_maxage) == (DELTA_MAX, 0)
    assert (cc.stale_while_revalidate, cc.stale_if_error) == (30, 7)


@pytest.mark.parametrize("value", ['"60"', "60.0", "-1", "?1", "sixty", ":YQ==:", "(60)", "?0"])
def test_a_value_of_the_wrong_type_is_ignored_section_2_1(value: str) -> None:
    cc = targeted_cc({OWN: f"max-age={value}, public"}, (OWN,))
    assert cc == CacheControl(public=True, targeted=True)
    assert "max-age" not in cc.invalid  # ignored, not "invalid so stale"


def test_boolean_directives_need_boolean_true() -> None:
    cc = targeted_cc(
        {
            OWN: "no-store, public=?1, must-revalidate, proxy-revalidate, must-understand, "
            "immutable, no-transform"
        },
        (OWN,),
    )
    assert cc == CacheControl(
        no_store=True,
        public=True,
        must_revalidate=True,
        proxy_revalidate=True,
        must_understand=True,
        immutable=True,
        no_transform=True,
        targeted=True,
    )
    ignored = targeted_cc({OWN: "no-store=?0, public=1, must-revalidate=yes"}, (OWN,))
    assert ignored == CacheControl(targeted=True)


def test_parameters_are_ignored() -> None:
    assert targeted_cc({OWN: "max-age=60;foo=bar, no-store;x"}, (OWN,)) == CacheControl(
        max_age=60, no_store=True, targeted=True
    )


@pytest.mark.parametrize("name", ["no-cache", "private"])
def test_qualified_forms_a_string_list_or_an_inner_list_of_strings(name: str) -> None:
    attr = name.replace("-", "_")
    for value in ('"Set-Cookie, X-User"', '("set-cookie" "X-User")'):
        cc = targeted_cc({OWN: f"{name}={value}"}, (OWN,))
        assert cc is not None
        assert getattr(cc, attr)
        assert getattr(cc, f"{attr}_fields") == frozenset({"set-cookie", "x-user"})
    bare = targeted_cc({OWN: name}, (OWN,))
    assert bare is not None and getattr(bare, attr) and not getattr(bare, f"{attr}_fields")
    for wrong in ("(1 2)", '("a" b)', "1", "token", "?0"):
        assert not getattr(targeted_cc({OWN: f"{name}={wrong}"}, (OWN,)), attr), wrong


def test_request_only_and_unknown_directives_are_ignored() -> None:
    cc = targeted_cc({OWN: "only-if-cached, min-fresh=5, max-stale=9, x-ext=1"}, (OWN,))
    assert cc == CacheControl(targeted=True)


# -- where the directives are used ------------------------------------------------------


def test_a_short_targeted_max_age_beats_a_long_cache_control_one_and_vice_versa() -> None:
    d = store({"cache-control": "max-age=600", OWN: "max-age=1"})
    assert d.store and d.timing.ttl == 1
    d = store({"cache-control": "max-age=1", CDN: "max-age=600"})
    assert d.store and d.timing.ttl == 600


def test_targeted_no_store_keeps_a_public_response_out() -> None:
    assert store({"cache-control": "public, max-age=600", CDN: "no-store"}).reason == "no-store"
    assert store({"cache-control": "max-age=600", OWN: "private"}).reason == "private"


def test_targeted_max_age_makes_a_no_store_response_storable_section_2_2() -> None:
    d = store({"cache-control": "no-store", CDN: "max-age=60"})
    assert d.store and d.timing.ttl == 60


def test_targeted_fields_count_even_without_cache_control_for_the_privacy_rules() -> None:
    cfg = parse_config({})
    assert store({CDN: "no-store"}, cfg).reason == "no-store"
    assert store({"cache-control": "no-store", CDN: "max-age=60"}, cfg).store


def test_expires_is_ignored_when_a_targeted_field_decides_section_2_2() -> None:
    expires = format_http_date(NOW + 500)
    h = {"expires": expires, CDN: "public", "cache-control": "max-age=10"}
    lifetime = freshness_lifetime(h, cc_of(h), CFG, status=200, received_at=NOW)
    assert (lifetime.seconds, lifetime.source) == (300, "default")  # public: cache_ttl
    h = {"expires": "0", CDN: "max-age=60"}
    assert freshness_lifetime(h, cc_of(h), CFG, status=200, received_at=NOW).seconds == 60
    h = {"expires": expires}
    assert freshness_lifetime(h, cc_of(h), CFG, status=200, received_at=NOW).seconds == 500


def test_stale_windows_come_from_the_targeted_field() -> None:
    h = {"cache-control": "max-age=1, must-revalidate", CDN: "max-age=1, stale-if-error=60"}
    assert stale_windows(cc_of(h), CFG) == (0, 60)


def test_sharing_with_a_guarded_request_reads_the_targeted_field() -> None:
    h = {"cache-control": "public, max-age=60", OWN: "max-age=60"}
    assert store(h, guard="authorization").reason == "authorization"
    h = {"cache-control": "max-age=60", OWN: "public, max-age=60"}
    assert store(h, guard="cookie").store


def entry(headers: dict[str, str], ttl: int = 60) -> StoredEntry:
    fields = {"content-type": ("text/plain",), "etag": ('"v1"',)}
    fields.update({k: (v,) for k, v in headers.items()})
    return StoredEntry(200, Headers(fields), b"hi", EntryTiming(NOW, ttl, 0, 0, ttl + 600))


def test_reuse_and_sharing_of_stored_entries_read_the_targeted_field() -> None:
    found = Found(entry({"cache-control": "max-age=60", OWN: "no-cache"}), age_s=1)
    request = request_decision("GET", Headers.of({}), CFG)
    assert isinstance(
        decide.after_lookup(found, request, "", Headers.of({}), CFG), decide.Revalidate
    )
    found = Found(entry({"cache-control": "no-cache", OWN: "max-age=60"}), age_s=1)
    assert isinstance(decide.after_lookup(found, request, "", Headers.of({}), CFG), decide.Serve)
    shared = entry({"cache-control": "max-age=60", CDN: "public, max-age=60"})
    assert decide.shareable(shared, "cookie", CFG)
    assert not decide.shareable(
        entry({"cache-control": "public", CDN: "max-age=60"}), "cookie", CFG
    )


# -- forwarding --------------------------------------------------------------------------


def targeted(**kw: Any) -> TargetedConfig:
    return TargetedConfig(**kw)


def test_hidden_fields_follow_the_forwarding_settings() -> None:
    assert hidden_fields(targeted()) == frozenset({OWN})
    assert hidden_fields(targeted(forward_field=True)) == frozenset()
    assert hidden_fields(targeted(forward_cdn_cache_control=False)) == frozenset({OWN, CDN})
    # a targeted field this cache does not honour is passed through (RFC 9213 §2.2)
    off = targeted(cdn_cache_control=False, forward_cdn_cache_control=False)
    assert hidden_fields(off) == frozenset({OWN})
    assert hidden_fields(targeted(field="Acme-CC")) == frozenset({"acme-cc"})


def test_a_proxied_response_clears_only_the_hidden_fields_it_carries() -> None:
    upstream = {"Strata-Cache-Control": "max-age=5", "CDN-Cache-Control": "max-age=9"}
    assert fields_to_clear(upstream, True, targeted()) == (OWN,)
    both = targeted(forward_cdn_cache_control=False)
    assert fields_to_clear(upstream, True, both) == (CDN, OWN)
    assert fields_to_clear({"cache-control": "max-age=5"}, True, both) == ()
    assert fields_to_clear(upstream, True, targeted(forward_field=True)) == ()
    # a header map cut short may hide them: clear them all
    assert fields_to_clear({}, False, both) == (CDN, OWN)


def test_without_hidden_keeps_everything_else() -> None:
    h = Headers({OWN: ("max-age=5",), CDN: ("max-age=9",), "etag": ('"x"',)})
    assert list(without_hidden(h, targeted())) == [CDN, "etag"]
    plain = Headers({"etag": ('"x"',)})
    assert without_hidden(plain, targeted()) is plain


def reply(cfg: PluginConfig, request_headers: dict[str, str] | None = None) -> Any:
    stored = entry({OWN: "max-age=60", CDN: "max-age=60", "cache-control": "max-age=5"})
    conditional = Headers.of(request_headers) if request_headers is not None else None
    served = Served(stored, 3, XCacheStatus.HIT, "strata; hit", conditional)
    state = RequestState("store", "GET", "example.com", "/p", key="k", request_time=NOW)
    return entry_reply(served, state, cfg)


def test_a_hit_replays_the_stored_fields_without_the_hidden_ones() -> None:
    out = reply(CFG)
    assert OWN not in out.headers and out.headers[CDN] == "max-age=60"
    assert out.headers["cache-control"] == "max-age=5"
    cfg = parse_config(
        {
            "cache_control": True,
            "targeted_cache_control": {"forward_field": True, "forward_cdn_cache_control": False},
        }
    )
    out = reply(cfg)
    assert out.headers[OWN] == "max-age=60" and CDN not in out.headers
    not_modified = reply(CFG, {"if-none-match": '"v1"'})
    assert not_modified.status == 304
    assert OWN not in not_modified.headers


@pytest.mark.parametrize(
    "name",
    [
        "Cache-Control",
        "CDN-Cache-Control",
        "Set-Cookie",
        "ETag",
        "Content-Type",
        "Vary",
        "X-Cache-Status",
        "Cache-Status",
        "Access-Control-Allow-Origin",
        "Strict-Transport-Security",
    ],
)
def test_a_field_with_a_meaning_of_its_own_cannot_be_the_targeted_field(name: str) -> None:
    with pytest.raises(ConfigError, match=r"targeted_cache_control\.field: .*meaning of its own"):
        parse_config({"targeted_cache_control": {"field": name}})
