"""Validation: conditional requests to the origin and from clients (RFC 9111 §4.3;
RFC 9110 §13)."""

from __future__ import annotations

import pytest

from kong_plugin.headers import Headers
from kong_plugin.http_date import format_http_date
from kong_plugin.validation import (
    evaluate_conditional,
    merge_304,
    not_modified_response_headers,
    parse_entity_tags,
    revalidation_headers,
)

NOW = 1_700_000_000.0
LM = format_http_date(NOW - 3600)
DATE = format_http_date(NOW)


# --- §4.3.1 sending a validation request ------------------------------------------------


def test_revalidation_uses_etag_and_last_modified():
    h = {"etag": '"v1"', "last-modified": LM, "date": DATE}
    assert revalidation_headers(h) == {"If-None-Match": '"v1"', "If-Modified-Since": LM}


def test_revalidation_falls_back_to_date_without_validators():
    assert revalidation_headers({"date": DATE}) == {"If-Modified-Since": DATE}
    assert revalidation_headers({"etag": 'W/"x"', "date": DATE}) == {"If-None-Match": 'W/"x"'}


def test_no_validator_means_no_conditional_request():
    assert revalidation_headers({"content-type": "text/plain"}) == {}
    assert revalidation_headers({"last-modified": "garbage"}) == {}


# --- §3.2 / §4.3.4 freshening with a 304 -------------------------------------------------


def test_merge_304_replaces_fields_and_keeps_order():
    stored = {
        "content-type": "application/json",
        "etag": '"v1"',
        "cache-control": "max-age=10",
        "x-a": "1",
    }
    update = {"cache-control": "max-age=99", "date": DATE, "x-b": "2"}
    merged = merge_304(stored, update)
    assert list(merged) == ["content-type", "etag", "cache-control", "x-a", "date", "x-b"]
    assert merged.get("cache-control") == "max-age=99"
    assert merged.get("etag") == '"v1"'


def test_merge_304_never_touches_body_bound_or_unstorable_fields():
    stored = {"content-length": "10", "content-encoding": "gzip", "content-type": "text/plain"}
    update = {
        "content-length": "0",
        "content-encoding": "br",
        "connection": "close",
        "set-cookie": "a=1",
        "age": "3",
        "x-ratelimit-remaining": "4",
    }
    merged = merge_304(stored, update)
    assert merged == Headers.of(stored)


def test_merge_304_replaces_all_lines_of_a_repeated_field():
    merged = merge_304({"link": ["<a>", "<b>"]}, {"link": "<c>"})
    assert merged.get_all("link") == ("<c>",)


# --- §4.3.2 answering a client's conditional request ---------------------------------


STORED = {"etag": '"abc"', "last-modified": LM, "date": DATE, "content-type": "text/plain"}


@pytest.mark.parametrize(
    "inm",
    ['"abc"', 'W/"abc"', '"zzz", "abc"', '"a,b", W/"abc"', "*", 'W/"x",W/"abc"'],
)
def test_if_none_match_weak_comparison_answers_304(inm):
    assert evaluate_conditional({"if-none-match": inm}, 200, STORED)


@pytest.mark.parametrize("inm", ['"abcd"', '"ab"', '""', "junk"])
def test_if_none_match_mismatch_serves_the_full_response(inm):
    assert not evaluate_conditional({"if-none-match": inm}, 200, STORED)


def test_weak_stored_etag_matches_strong_request_tag():
    assert evaluate_conditional({"if-none-match": '"abc"'}, 200, {"etag": 'W/"abc"'})


def test_if_none_match_takes_precedence_over_if_modified_since_rfc9110_13_2_2():
    req = {"if-none-match": '"other"', "if-modified-since": DATE}
    assert not evaluate_conditional(req, 200, STORED)


def test_if_modified_since_against_last_modified():
    assert evaluate_conditional({"if-modified-since": DATE}, 200, STORED)
    assert evaluate_conditional({"if-modified-since": LM}, 200, STORED)
    earlier = format_http_date(NOW - 7200)
    assert not evaluate_conditional({"if-modified-since": earlier}, 200, STORED)


def test_if_modified_since_uses_date_without_last_modified_section_4_3_2():
    stored = {"date": DATE}
    assert evaluate_conditional({"if-modified-since": DATE}, 200, stored)
    earlier = format_http_date(NOW - 1)
    assert not evaluate_conditional({"if-modified-since": earlier}, 200, stored)


def test_invalid_or_repeated_if_modified_since_is_ignored_rfc9110_13_1_3():
    assert not evaluate_conditional({"if-modified-since": "yesterday"}, 200, STORED)
    assert not evaluate_conditional({"if-modified-since": [DATE, DATE]}, 200, STORED)


def test_conditionals_apply_only_to_get_head_and_2xx():
    assert not evaluate_conditional({"if-none-match": "*"}, 404, STORED)
    assert not evaluate_conditional({"if-none-match": "*"}, 200, STORED, method="POST")
    assert evaluate_conditional({"if-none-match": "*"}, 200, STORED, method="HEAD")


def test_parse_entity_tags():
    assert parse_entity_tags("*") == (True, ())
    assert parse_entity_tags(' W/"a" , "b,c"') == (False, ("a", "b,c"))


# --- RFC 9110 §15.4.5 -----------------------------------------------------------------


def test_304_carries_only_the_metadata_fields():
    stored = {
        **STORED,
        "cache-control": "max-age=60",
        "vary": "accept",
        "x-other": "1",
        "expires": DATE,
        "content-location": "/a",
    }
    h = not_modified_response_headers(stored)
    assert set(h) == {"cache-control", "content-location", "date", "etag", "expires", "vary"}


def test_304_includes_last_modified_when_there_is_no_etag():
    h = not_modified_response_headers({"last-modified": LM, "content-type": "text/plain"})
    assert set(h) == {"last-modified"}
