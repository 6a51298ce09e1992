"""Memcached tier, the pure parts: rendezvous hashing, server lists, keys, expiry, framing."""

from __future__ import annotations

import collections
import re

import pytest

from sidecar.core.model import CachedResponse
from sidecar.tiers.codec import CorruptEntryError
from sidecar.tiers.hashing import RendezvousHash
from sidecar.tiers.memcached import (
    MAX_RELATIVE_EXPIRY_S,
    expiry_seconds,
    pack_value,
    parse_servers,
    storage_key,
    unpack_value,
)
from sidecar.tiers.memcached_pool import server_id

KEYS = [f"v1:route:{i}".encode() for i in range(10_000)]
FOUR = ["10.0.0.1:11211", "10.0.0.2:11211", "10.0.0.3:11211", "10.0.0.4:11211"]

# -- rendezvous hashing ----------------------------------------------------------------


def test_keys_spread_evenly() -> None:
    ring = RendezvousHash(FOUR)
    counts = collections.Counter(ring.node_for(k) for k in KEYS)
    assert set(counts) == set(FOUR)
    for n in counts.values():
        assert 2300 <= n <= 2700, counts  # 2500 +- 8 %


def test_adding_a_server_moves_about_one_in_n_keys_and_only_to_it() -> None:
    before = RendezvousHash(FOUR)
    after = RendezvousHash([*FOUR, "10.0.0.5:11211"])
    moved = [k for k in KEYS if before.node_for(k) != after.node_for(k)]
    assert 0.15 <= len(moved) / len(KEYS) <= 0.25  # ideal: 1/5
    assert {after.node_for(k) for k in moved} == {"10.0.0.5:11211"}


def test_removing_a_server_moves_only_its_keys() -> None:
    before = RendezvousHash(FOUR)
    after = RendezvousHash(FOUR[1:])
    for k in KEYS[:2000]:
        if before.node_for(k) != FOUR[0]:
            assert after.node_for(k) == before.node_for(k)


def test_owner_depends_on_ids_not_on_their_order() -> None:
    a = RendezvousHash(FOUR)
    b = RendezvousHash(list(reversed(FOUR)))
    assert all(a.node_for(k) == b.node_for(k) for k in KEYS[:2000])


def test_scores_are_stable_across_processes() -> None:
    # blake2b-64 of b"a:1\x00" + b"k": a fixed value, unlike the salted hash().
    assert RendezvousHash(["a:1"]).score(0, b"k") == RendezvousHash(["a:1", "b:2"]).score(0, b"k")
    assert RendezvousHash(["a:1"]).score(0, b"k") == 0x3096CF8708EB1AC9


def test_one_server_owns_everything_and_bad_sets_are_refused() -> None:
    assert RendezvousHash(["only:1"]).node_for(b"anything") == "only:1"
    with pytest.raises(ValueError, match="at least one"):
        RendezvousHash([])
    with pytest.raises(ValueError, match="duplicate"):
        RendezvousHash(["a:1", "a:1"])


# -- server lists ----------------------------------------------------------------------


def test_parse_servers() -> None:
    assert parse_servers("127.0.0.1:11211") == [("127.0.0.1", 11211)]
    assert parse_servers(" mc-a:1 , [::1]:11211,[fe80::1%eth0]:2") == [
        ("mc-a", 1),
        ("::1", 11211),
        ("fe80::1%eth0", 2),
    ]
    assert server_id(("::1", 11211)) == "[::1]:11211"
    assert server_id(("mc-a", 1)) == "mc-a:1"


@pytest.mark.parametrize(
    ("text", "bad"),
    [
        ("", ""),
        ("a:1,", ""),
        ("a:1,,b:2", ""),
        ("a", "a"),
        (":11211", ":11211"),
        ("a:", "a:"),
        ("a:0", "a:0"),
        ("a:65536", "a:65536"),
        ("a:x1", "a:x1"),
        ("a:+1", "a:+1"),
        ("a b:1", "a b:1"),
        ("::1:11211", "::1:11211"),
        ("[]:1", "[]:1"),
        ("[::1:1", "[::1:1"),
        ("a:1,b:2,a:1", "a:1"),
    ],
)
def test_parse_servers_names_the_bad_item(text: str, bad: str) -> None:
    with pytest.raises(ValueError, match=re.escape(repr(bad))):
        parse_servers(text)


# -- keys, expiry, framing -------------------------------------------------------------


def test_storage_keys_are_short_printable_and_distinct() -> None:
    keys = [b"", b"a", b"a ", b"\x00\r\n", b"x" * 5000, "é".encode()]
    mkeys = [storage_key("strata", k) for k in keys]
    assert len(set(mkeys)) == len(keys)
    for mk in mkeys:
        assert mk.startswith(b"strata:") and len(mk) == len("strata:") + 43
        assert all(0x21 <= c <= 0x7E for c in mk)


def test_expiry_is_rounded_up_and_absolute_beyond_30_days() -> None:
    now = 1_700_000_000_123
    assert expiry_seconds(now, now) is None
    assert expiry_seconds(now - 1, now) is None
    assert expiry_seconds(now + 1, now) == 1
    assert expiry_seconds(now + 1000, now) == 1
    assert expiry_seconds(now + 1001, now) == 2
    assert expiry_seconds(now + MAX_RELATIVE_EXPIRY_S * 1000, now) == MAX_RELATIVE_EXPIRY_S
    later = now + MAX_RELATIVE_EXPIRY_S * 1000 + 1
    assert expiry_seconds(later, now) == -(-later // 1000)  # absolute Unix seconds


def test_values_carry_their_key() -> None:
    e = CachedResponse(200, ((b"a", b"b"),), b"body", 1, 1000)
    data = pack_value(b"k1", e)
    assert unpack_value(b"k1", data) == e
    for other in (b"k2", b"k", b"k1k", b""):
        with pytest.raises(CorruptEntryError):
            unpack_value(other, data)
    for bad in (b"", b"\x00\x00", b"\x00\x00\x00\x02k1", b"\xff\xff\xff\xffk1", data[:-1]):
        with pytest.raises(CorruptEntryError):
            unpack_value(b"k1", bad)
