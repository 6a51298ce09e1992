"""The stored byte format: round trips, compression, and corrupt values refused."""

from __future__ import annotations

import os

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sidecar.core.model import CachedResponse
from sidecar.tiers.codec import CorruptEntryError, decode, encode

headers = st.lists(
    st.tuples(st.binary(min_size=1, max_size=20), st.binary(max_size=40)), max_size=8
)
entries = st.builds(
    CachedResponse,
    status=st.integers(100, 599),
    headers=headers.map(tuple),
    body=st.binary(max_size=5000),
    stored_at_ms=st.integers(0, 2**50),
    ttl_ms=st.integers(0, 2**40),
    stale_while_revalidate_ms=st.integers(0, 2**40),
    stale_if_error_ms=st.integers(0, 2**40),
    tags=st.lists(st.text(min_size=1, max_size=10), max_size=4).map(tuple),
    vary=st.lists(st.text(min_size=1, max_size=10), max_size=3).map(tuple),
    storage_ttl_ms=st.integers(0, 2**40),
)


@given(entries)
def test_round_trip(entry: CachedResponse) -> None:
    assert decode(encode(entry)) == entry


def test_compressible_bodies_are_compressed() -> None:
    body = b'{"item": "value", "n": 1}' * 400
    entry = CachedResponse(200, ((b"content-type", b"application/json"),), body, 1, 1000)
    blob = encode(entry)
    assert len(blob) < len(body) / 5
    assert decode(blob).body == body


def test_incompressible_bodies_are_kept_raw() -> None:
    body = os.urandom(4000)
    blob = encode(CachedResponse(200, (), body, 1, 1000))
    assert body in blob


@pytest.mark.parametrize(
    "blob",
    [
        b"",
        b"S1",
        b"XX\x01\x00\x00\x00\x00\x00",  # wrong magic
        b"S1\x07\x00\x00\x00\x00\x00",  # unknown version
        b"S1\x01\x80\x00\x00\x00\x00",  # unknown flag
        b"S1\x01\x00\x00\x00\x00\xff",  # meta longer than the value
        b"S1\x01\x00\x00\x00\x00\x02\x91\x01",  # meta of the wrong shape
    ],
)
def test_foreign_or_damaged_values_are_refused(blob: bytes) -> None:
    with pytest.raises(CorruptEntryError):
        decode(blob)


def test_truncated_body_is_refused() -> None:
    blob = encode(CachedResponse(200, (), b"x" * 1000, 1, 1000))
    with pytest.raises(CorruptEntryError):
        decode(blob[:-10])
    raw = encode(CachedResponse(200, (), b"\x00\xff" * 50, 1, 1000))
    with pytest.raises(CorruptEntryError):
        decode(raw[:-1])
