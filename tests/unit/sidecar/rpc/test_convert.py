"""Conversions between strata.v1 messages and the engine's values (sidecar/rpc/convert.py)."""

from __future__ import annotations

from strata.v1 import cache_pb2 as pb

from sidecar.core.model import FORMAT_VERSION, CachedResponse, LookupResult, Outcome
from sidecar.rpc.convert import (
    entry_from_proto,
    entry_to_proto,
    headers_from_proto,
    lookup_to_proto,
)

FULL = CachedResponse(
    status=203,
    headers=((b"content-type", b"text/plain"), (b"x-a", b"1"), (b"x-a", b"2")),
    body=b"\x00body\xff",
    stored_at_ms=1_700_000_000_123,
    ttl_ms=60_000,
    stale_while_revalidate_ms=5_000,
    stale_if_error_ms=7_000,
    tags=("a", "b"),
    vary=("accept",),
    storage_ttl_ms=90_000,
)


def test_an_entry_round_trips() -> None:
    out = pb.Entry()
    entry_to_proto(FULL, out)
    assert entry_from_proto(pb.Entry.FromString(out.SerializeToString())) == FULL


def test_header_order_and_repeats_survive() -> None:
    headers = [pb.Header(name=b"b", value=b"2"), pb.Header(name=b"a", value=b"1")]
    headers.append(pb.Header(name=b"b", value=b"3"))
    assert headers_from_proto(headers) == ((b"b", b"2"), (b"a", b"1"), (b"b", b"3"))
    assert headers_from_proto([]) == ()


def test_format_version_zero_means_the_current_one_and_others_are_kept() -> None:
    assert entry_from_proto(pb.Entry(status=200)).format_version == FORMAT_VERSION
    assert entry_from_proto(pb.Entry(status=200, format_version=99)).format_version == 99


def test_a_stamp_is_never_taken_from_the_wire() -> None:
    """`tag_generations` has no field in the message: a client cannot send one."""
    assert entry_from_proto(pb.Entry(status=200, tags=["t"])).tag_generations == ()


def test_limits_are_not_checked_here() -> None:
    """Conversion carries any value over; the engine's `Limits` judge it
    (sidecar/core/limits.py), so an oversized or negative field converts unchanged."""
    big = pb.Entry(status=999, ttl_ms=-1, body=b"x" * 100_000, tags=["t"] * 1000)
    e = entry_from_proto(big)
    assert (e.status, e.ttl_ms, len(e.body), len(e.tags)) == (999, -1, 100_000, 1000)


def test_lookup_results_convert_with_or_without_entry() -> None:
    out = pb.LookupResponse()
    lookup_to_proto(LookupResult(Outcome.MISS, now_ms=5), out)
    assert out.outcome == pb.OUTCOME_MISS and not out.HasField("entry") and out.now_ms == 5
    hit = LookupResult(
        Outcome.STALE, FULL, age_ms=3, tier="redis", fill_lease=True, coalesced=True, now_ms=9
    )
    out = pb.LookupResponse()
    lookup_to_proto(hit, out)
    assert out.outcome == pb.OUTCOME_STALE
    assert (out.age_ms, out.tier, out.fill_lease, out.coalesced, out.now_ms) == (
        3,
        "redis",
        True,
        True,
        9,
    )
    assert entry_from_proto(out.entry) == FULL
    out = pb.LookupResponse()
    lookup_to_proto(LookupResult(Outcome.HIT, FULL, tier="memory"), out)
    assert out.outcome == pb.OUTCOME_HIT
