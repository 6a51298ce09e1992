"""Cache-Control parsing (RFC 9111 §5.2, §1.2.2, §4.2.1; RFC 5861)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kong_plugin.cache_control import (
    DELTA_MAX,
    EMPTY,
    CacheControl,
    parse_cache_control,
    parse_delta_seconds,
)


def test_absent_is_empty():
    assert parse_cache_control(None) is EMPTY
    assert parse_cache_control("") is EMPTY
    assert parse_cache_control([]) is EMPTY


def test_common_response_directives():
    cc = parse_cache_control("public, max-age=60, s-maxage=120, stale-while-revalidate=30")
    assert cc.public
    assert cc.max_age == 60
    assert cc.s_maxage == 120
    assert cc.stale_while_revalidate == 30
    assert not cc.private
    assert not cc.no_store


def test_directive_names_are_case_insensitive_section_5_2():
    cc = parse_cache_control("No-Store, MAX-AGE=5, Must-Revalidate")
    assert cc.no_store
    assert cc.max_age == 5
    assert cc.must_revalidate


def test_multiple_field_lines_are_one_list_section_5_2():
    cc = parse_cache_control(["max-age=10", "no-cache", "stale-if-error=99"])
    assert cc.max_age == 10
    assert cc.no_cache
    assert cc.stale_if_error == 99


def test_quoted_string_argument_may_contain_commas():
    cc = parse_cache_control('no-cache="set-cookie, x-foo", max-age=30')
    assert cc.no_cache
    assert cc.no_cache_fields == frozenset({"set-cookie", "x-foo"})
    assert cc.max_age == 30


def test_qualified_private_records_fields_section_5_2_2_7():
    cc = parse_cache_control('private="Set-Cookie"')
    assert cc.private
    assert cc.private_fields == frozenset({"set-cookie"})


def test_unqualified_wins_over_qualified():
    cc = parse_cache_control('private="x", private')
    assert cc.private
    assert cc.private_fields == frozenset()


def test_quoted_delta_seconds_is_accepted():
    assert parse_cache_control('max-age="5"').max_age == 5


@pytest.mark.parametrize("bad", ["abc", "-1", "1.5", "", " ", "0x10", "\u0661"])
def test_invalid_delta_seconds_is_ignored_and_flagged_section_4_2_1(bad):
    cc = parse_cache_control(f"max-age={bad}")
    assert cc.max_age is None
    assert "max-age" in cc.invalid
    assert cc.has_explicit_freshness


def test_missing_argument_is_invalid():
    cc = parse_cache_control("s-maxage")
    assert cc.s_maxage is None
    assert "s-maxage" in cc.invalid


def test_values_above_2_31_are_capped_section_1_2_2():
    assert parse_cache_control("max-age=2147483648").max_age == DELTA_MAX
    assert parse_cache_control("max-age=99999999999999999999").max_age == DELTA_MAX
    assert parse_cache_control("max-age=" + "9" * 5000).max_age == DELTA_MAX
    assert parse_cache_control("max-age=2147483647").max_age == 2147483647
    assert parse_cache_control("max-age=4294967296").max_age == DELTA_MAX


def test_duplicate_directives_keep_the_most_restrictive_section_4_2_1():
    cc = parse_cache_control(
        "max-age=60, max-age=10, min-fresh=5, min-fresh=20, s-maxage=9, s-maxage=3"
    )
    assert cc.max_age == 10
    assert cc.s_maxage == 3
    assert cc.min_fresh == 20


def test_max_stale_without_value_means_any_staleness():
    assert parse_cache_control("max-stale").max_stale == DELTA_MAX
    assert parse_cache_control("max-stale=30").max_stale == 30


def test_request_directives():
    cc = parse_cache_control("no-cache, only-if-cached, min-fresh=3, max-age=0")
    assert cc.no_cache
    assert cc.only_if_cached
    assert cc.min_fresh == 3
    assert cc.max_age == 0


def test_must_understand_and_unknown_directives():
    cc = parse_cache_control('must-understand, no-store, x-custom=1, community="UCI"')
    assert cc.must_understand
    assert cc.no_store
    assert cc == CacheControl(must_understand=True, no_store=True)


def test_empty_elements_and_whitespace_are_tolerated():
    cc = parse_cache_control(" ,, public ,  max-age = 7 ,")
    assert cc.public
    assert cc.max_age == 7


def test_unterminated_quote_does_not_swallow_valid_directives_before_it():
    cc = parse_cache_control('max-age=5, no-cache="set-cookie')
    assert cc.max_age == 5
    assert cc.no_cache


def test_long_values_parse_like_short_ones():
    """Long (possibly hostile) values bypass the memo but not the rules."""
    long_value = "max-age=5, " + "x-pad, " * 60 + "no-store"
    assert len(long_value) > 256
    assert parse_cache_control(long_value) == CacheControl(max_age=5, no_store=True)


def test_parse_delta_seconds():
    assert parse_delta_seconds("0") == 0
    assert parse_delta_seconds("007") == 7
    assert parse_delta_seconds("+7") is None


@given(st.text())
def test_parser_never_raises_on_arbitrary_text(value):
    result = parse_cache_control(value)
    assert isinstance(result, CacheControl)
    for v in (result.max_age, result.s_maxage, result.max_stale, result.min_fresh):
        assert v is None or 0 <= v <= DELTA_MAX


@given(st.lists(st.text(alphabet=st.sampled_from(' ,="\\=-amxgeoncsti0123456789'), max_size=30)))
def test_parser_never_raises_on_directive_like_lines(lines):
    assert isinstance(parse_cache_control(lines), CacheControl)
