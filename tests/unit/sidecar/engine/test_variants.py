"""Variant markers and variant keys (sidecar/engine/variants.py): pure functions."""

from __future__ import annotations

from sidecar.core.clock import ManualClock
from sidecar.engine.variants import (
    MARKER_STATUS,
    VARIANT_SEPARATOR,
    is_marker,
    new_marker,
    request_values,
    variant_key,
)
from tests.support.entries import entry


def test_a_marker_lives_as_long_as_its_entry_and_carries_only_the_vary_list(
    clock: ManualClock,
) -> None:
    e = entry(clock, vary=("accept", "accept-language"), tags=("t",), storage_ttl_ms=9_000)
    marker = new_marker(e)
    assert is_marker(marker) and not is_marker(e)
    assert marker.status == MARKER_STATUS
    assert marker.vary == e.vary and marker.headers == () and marker.tags == ()
    assert (marker.stored_at_ms, marker.ttl_ms, marker.storage_ttl_ms) == (
        e.stored_at_ms,
        e.ttl_ms,
        e.storage_ttl_ms,
    )
    assert marker.expires_at_ms == e.expires_at_ms
    assert len(marker.body) == 8 and new_marker(e).body != marker.body  # a fresh nonce
    assert new_marker(e, nonce=b"12345678").body == b"12345678"


def test_request_values_join_lines_trim_and_mark_absent_headers() -> None:
    headers = ((b"Accept", b"text/html"), (b"accept", b"  application/json  "), (b"x", b"1"))
    assert request_values(("accept", "x", "missing"), headers) == [
        b"text/html, application/json",
        b"1",
        b"\x00",
    ]
    assert request_values(("a",), ((b"a", b"one\t two"),)) == [b"one two"]


def test_variant_keys_depend_on_the_values_and_the_marker(clock: ManualClock) -> None:
    marker = new_marker(entry(clock, vary=("accept",)), nonce=b"\x01" * 8)
    json = variant_key(b"k", marker, ((b"accept", b"json"),))
    html = variant_key(b"k", marker, ((b"accept", b"html"),))
    assert json != html
    assert json == variant_key(b"k", marker, ((b"Accept", b"json"),))  # names: any case
    assert json.startswith(b"k" + VARIANT_SEPARATOR + b"01" * 8 + b":")  # purge by prefix
    other = new_marker(entry(clock, vary=("accept",)), nonce=b"\x02" * 8)
    assert variant_key(b"k", other, ((b"accept", b"json"),)) != json  # a new marker hides them


def test_an_absent_header_differs_from_an_empty_one(clock: ManualClock) -> None:
    marker = new_marker(entry(clock, vary=("accept",)), nonce=b"n" * 8)
    assert variant_key(b"k", marker, ()) != variant_key(b"k", marker, ((b"accept", b""),))


def test_values_are_length_prefixed_so_they_cannot_be_shifted(clock: ManualClock) -> None:
    marker = new_marker(entry(clock, vary=("a", "b")), nonce=b"n" * 8)
    one = variant_key(b"k", marker, ((b"a", b"xy"), (b"b", b"z")))
    two = variant_key(b"k", marker, ((b"a", b"x"), (b"b", b"yz")))
    assert one != two
