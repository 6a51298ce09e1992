"""Response Vary and secondary keys (RFC 9110 §12.5.5; RFC 9111 §4.1)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from kong_plugin.vary import (
    NO_VARY,
    VarySpec,
    parse_vary,
    response_vary,
    secondary_key_parts,
    variant_matches,
)


def test_vary_names_are_lower_cased_deduplicated_and_sorted():
    assert parse_vary("Accept-Encoding, accept-language, ACCEPT-ENCODING") == VarySpec(
        ("accept-encoding", "accept-language")
    )


def test_vary_lines_are_combined():
    assert parse_vary(["Accept", "Origin"]).names == ("accept", "origin")


def test_vary_star_is_flagged_section_4_1():
    spec = parse_vary("Accept, *")
    assert spec.star
    assert spec.varies


def test_absent_or_empty_vary():
    assert parse_vary(None) is NO_VARY
    assert not parse_vary(" , ").varies
    assert response_vary({"content-type": "text/plain"}) is NO_VARY
    assert response_vary({"Vary": "Origin"}).names == ("origin",)


def test_invalid_names_are_skipped():
    assert parse_vary("Accept Encoding, x-ok").names == ("x-ok",)


def test_secondary_key_normalises_whitespace_and_joins_lines():
    parts = secondary_key_parts(
        ["accept-encoding", "x-absent"], {"accept-encoding": ["gzip", "  br   x"]}
    )
    assert parts == (("accept-encoding", "gzip, br x"), ("x-absent", None))


def test_absent_header_differs_from_empty_one():
    assert secondary_key_parts(["a"], {}) != secondary_key_parts(["a"], {"a": ""})


def test_variant_matches_only_when_every_varied_header_matches_section_4_1():
    stored = {"accept-language": "en", "accept-encoding": "gzip"}
    names = ["accept-encoding", "accept-language"]
    assert variant_matches(names, stored, {"Accept-Language": "en", "accept-encoding": "gzip"})
    assert not variant_matches(names, stored, {"accept-language": "fr", "accept-encoding": "gzip"})
    assert not variant_matches(names, stored, {"accept-language": "en"})
    assert variant_matches(["x"], stored, {"accept-language": "de"})  # x absent in both


@given(st.one_of(st.text(), st.lists(st.text(), max_size=4)))
def test_parse_vary_never_raises(value):
    spec = parse_vary(value)
    assert all(name == name.lower() for name in spec.names)
