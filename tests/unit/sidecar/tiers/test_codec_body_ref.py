"""The codec's additive body-reference format: flag bit 1 + a 32-byte digest, and the
self-describing body blob it points to."""

from __future__ import annotations

import json

import pytest

from sidecar.core.model import CachedResponse
from sidecar.tiers import codec

BODY = json.dumps([{"id": i, "name": "widget", "price": i * 1.5} for i in range(200)]).encode()
ENTRY = CachedResponse(200, ((b"content-type", b"application/json"),), BODY, 1, 60_000)


def test_split_references_large_bodies_and_reads_back() -> None:
    value, body = codec.encode_split(ENTRY, 512)
    assert body is not None
    digest, blob = body
    assert digest == codec.body_digest(BODY)
    assert codec.body_ref(value) == digest
    assert len(blob) < len(BODY) // 2  # compressed
    assert len(value) < 200  # meta and digest only
    assert codec.decode(value, blob) == ENTRY
    assert codec.decode(value, codec.encode_body(BODY)) == ENTRY


def test_small_bodies_stay_inline_and_match_encode() -> None:
    small = CachedResponse(200, (), b'{"ok":true}', 1, 60_000)
    value, body = codec.encode_split(small, 512)
    assert body is None and codec.body_ref(value) is None
    assert value == codec.encode(small)
    assert codec.decode(value) == small
    value, body = codec.encode_split(ENTRY, 1 << 20)  # threshold above: inline, compressed
    assert body is None and value == codec.encode(ENTRY)


def test_reference_without_or_with_a_wrong_body_is_refused() -> None:
    value, body = codec.encode_split(ENTRY, 512)
    assert body is not None
    with pytest.raises(codec.CorruptEntryError):
        codec.decode(value)  # a reader that has no body cannot read the entry
    other = codec.encode_body(BODY[:-1] + b" ")
    with pytest.raises(codec.CorruptEntryError):
        codec.decode(value, other)  # length matches, digest does not
    with pytest.raises(codec.CorruptEntryError):
        codec.decode(value, b"SB\x00")
    with pytest.raises(codec.CorruptEntryError):
        codec.decode(value, body[1][:-5])  # truncated frame


def test_a_reader_without_the_flag_refuses_it() -> None:
    """The previous decoder's flag check: anything beyond bit 0 is unknown."""
    value, _ = codec.encode_split(ENTRY, 512)
    flags = value[3]
    assert flags & ~codec.FLAG_ZSTD  # so a pre-reference build raises CorruptEntryError


def test_both_flags_at_once_are_refused() -> None:
    value, body = codec.encode_split(ENTRY, 512)
    assert body is not None
    bad = value[:3] + bytes([codec.FLAG_ZSTD | codec.FLAG_BODY_REF]) + value[4:]
    with pytest.raises(codec.CorruptEntryError):
        codec.decode(bad, body[1])
