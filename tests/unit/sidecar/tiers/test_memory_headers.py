"""The memory tier holds each entry's headers packed into one `bytes` object
(`sidecar.tiers.packed_headers`) and gives them back as they were stored."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sidecar.core.clock import ManualClock
from sidecar.core.limits import Limits
from sidecar.core.model import CachedResponse, Headers, logical_bytes
from sidecar.tiers.memory import MemoryTier
from sidecar.tiers.memory_cost import bytes_cost, meta_cost
from sidecar.tiers.packed_headers import pack, packed_size, payload_size, unpack

LIMITS = Limits()
TYPICAL: Headers = (
    (b"content-type", b"application/json; charset=utf-8"),
    (b"cache-control", b"public, max-age=3600"),
    (b"etag", b'W/"0123456789abcdef"'),
    (b"date", b"Thu, 11 Jun 2026 10:00:00 GMT"),
    (b"x-request-id", b"0123456789abcdef0123456789abcdef"),
    (b"vary", b"Accept-Encoding"),
)

CASES: dict[str, Headers] = {
    "none": (),
    "one": ((b"content-type", b"text/plain"),),
    "typical": TYPICAL,
    "order-and-repeats": ((b"x-a", b"1"), (b"set-cookie", b"a=1"), (b"x-a", b"2"), (b"x-a", b"1")),
    "empty-value": ((b"x-empty", b""), (b"x-b", b"b")),
    "empty-name-and-value": ((b"", b""),),
    "all-empty": ((b"", b""), (b"", b""), (b"", b"")),
    "nul-in-value": ((b"x-bin", b"a\x00b"), (b"x-c", b"c")),
    "nul-in-name": ((b"\x00", b"v"),),
    "only-nuls": ((b"\x00\x00", b"\x00"), (b"", b"\x00")),
    "all-byte-values": ((b"x-bytes", bytes(range(256))), (bytes(range(256)), b"")),
    "leading-one-byte": ((b"\x01x", b"\x01"),),
    "many": tuple((b"x-h%d" % i, b"v%d" % i) for i in range(LIMITS.max_headers)),
    "value-at-limit": ((b"x-big", b"v" * (LIMITS.max_header_bytes - 5)),),
    "name-at-limit": ((b"n" * LIMITS.max_header_bytes, b""),),
    "binary-at-limit": ((b"x", bytes(range(256)) * (LIMITS.max_header_bytes // 256 - 1)),),
}


@pytest.mark.parametrize("name", list(CASES))
def test_unpack_gives_back_what_was_packed(name: str) -> None:
    headers = CASES[name]
    packed = pack(headers)
    assert unpack(packed) == headers
    assert packed_size(headers) == len(packed)
    assert payload_size(packed) == sum(len(n) + len(v) for n, v in headers)


@given(st.lists(st.tuples(st.binary(max_size=40), st.binary(max_size=40)), max_size=12))
def test_any_headers_round_trip(pairs: list[tuple[bytes, bytes]]) -> None:
    headers = tuple(pairs)
    packed = pack(headers)
    assert unpack(packed) == headers
    assert packed_size(headers) == len(packed)
    assert payload_size(packed) == sum(len(n) + len(v) for n, v in headers)


def test_headers_without_nul_take_one_byte_more_than_the_separators() -> None:
    packed = pack(TYPICAL)
    payload = sum(len(n) + len(v) for n, v in TYPICAL)
    assert packed[0] == 0
    assert len(packed) == payload + 2 * len(TYPICAL)
    assert len(pack(())) == 0


def test_headers_with_a_nul_are_framed_by_lengths() -> None:
    headers = CASES["nul-in-value"]
    packed = pack(headers)
    assert packed[0] == 1
    assert len(packed) == 1 + 8 * len(headers) + sum(len(n) + len(v) for n, v in headers)


def test_unpack_makes_new_pairs_each_time() -> None:
    packed = pack(TYPICAL)
    first, second = unpack(packed), unpack(packed)
    assert first == second
    assert first is not second


def _entry(clock: ManualClock, headers: Headers, body: bytes = b"{}") -> CachedResponse:
    return CachedResponse(200, headers, body, clock.now_ms(), 60_000, tags=("t",))


@pytest.mark.parametrize("name", list(CASES))
@pytest.mark.parametrize("body_len", [2, 4000])  # kept with the entry, pooled
async def test_get_and_peek_return_the_headers_stored(name: str, body_len: int) -> None:
    clock = ManualClock()
    tier = MemoryTier(1 << 22, clock, admission="always")
    stored = _entry(clock, CASES[name], b"x" * body_len)
    await tier.set(b"k", stored)
    got = await tier.get(b"k")
    peeked = await tier.peek(b"k")
    assert got == stored
    assert peeked == stored
    assert got is not None and got.headers == CASES[name]


async def test_a_replaced_entry_answers_its_new_headers() -> None:
    clock = ManualClock()
    tier = MemoryTier(1 << 20, clock)
    await tier.set(b"k", _entry(clock, TYPICAL))
    await tier.set(b"k", _entry(clock, CASES["order-and-repeats"]))
    got = tier.get_now(b"k")
    assert got is not None and got.headers == CASES["order-and-repeats"]


async def test_the_footprint_counts_the_headers_in_and_out() -> None:
    clock = ManualClock()
    tier = MemoryTier(1 << 22, clock, admission="always")
    entries = {b"k%d" % i: _entry(clock, h, b"b" * 300 * i) for i, h in enumerate(CASES.values())}
    for key, e in entries.items():
        await tier.set(key, e)
    footprint = tier.snapshot().footprint
    assert footprint is not None
    assert footprint.logical == sum(logical_bytes(k, e) for k, e in entries.items())
    for key in entries:
        await tier.delete(key)
    footprint = tier.snapshot().footprint
    assert footprint is not None and footprint.logical == 0
    assert tier.snapshot().bytes == 0


def test_headers_are_charged_as_one_packed_bytes_object() -> None:
    bare = CachedResponse(200, (), b"", 1_780_000_000_000, 60_000)
    for headers in CASES.values():
        if not headers:
            continue
        charged = meta_cost(b"k", dataclasses.replace(bare, headers=headers)) - meta_cost(
            b"k", bare
        )
        assert charged == bytes_cost(len(pack(headers)))
