"""The bookkeeping of `sidecar.rpc.bounds` and the rate limit of `sidecar.rpc.refusals`."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from strata.v1 import cache_pb2 as pb

from sidecar.rpc.bounds import (
    SMALL_MESSAGE_BYTES,
    SMALL_REPLY_BYTES,
    ByteBudget,
    Gate,
    Refusal,
    ReplyRoom,
    RpcLimits,
    reply_size,
)
from sidecar.rpc.intake import Intake, OversizedBatch, Received
from sidecar.rpc.refusals import RefusalLog
from sidecar.rpc.wire_scan import Excess, RepeatedScan


def batch(n: int) -> bytes:
    return pb.ExchangeRequest(
        calls=[pb.Call(id=i, lookup=pb.LookupRequest(key=b"v1:r:%d" % i)) for i in range(n)]
    ).SerializeToString()


def exchange_intake(max_batch_calls: int) -> Any:
    return Intake(RpcLimits(max_batch_calls=max_batch_calls)).deserializer(pb.ExchangeRequest)


def test_a_large_batch_over_the_limit_is_refused_unparsed() -> None:
    # a million empty calls (2 MB), then garbage: the scan stops at the 129th call
    refused = exchange_intake(128)(b"\x0a\x00" * 1_000_000 + b"\xff")
    assert isinstance(refused, OversizedBatch) and refused.limit == 128
    # unknown varint, fixed64 and fixed32 fields between calls are skipped, not counted
    other = b"\x10\x96\x01" + b"\x19" + bytes(8) + b"\x25" + bytes(4)
    padding = b"\x1a\x83\x80\x04" + bytes(65539)  # one unknown bytes field over 64 KiB
    within = exchange_intake(3)((other + b"\x0a\x00") * 3 + padding)
    assert isinstance(within, Received) and len(within.take().calls) == 3
    assert isinstance(exchange_intake(3)((other + b"\x0a\x00") * 4 + padding), OversizedBatch)


def test_a_small_batch_is_parsed_without_a_scan() -> None:
    """Under 64 KiB nothing is scanned (the hit path): the handler counts the calls."""
    parsed = exchange_intake(3)(batch(4))
    assert isinstance(parsed, pb.ExchangeRequest) and len(parsed.calls) == 4


@pytest.mark.parametrize("size", [0, 1, 127, 128, 16_383, 16_384, 2_000_000])
def test_reply_size_is_what_the_reply_adds_to_its_message(size: int) -> None:
    reply = pb.Reply(id=1, lookup=pb.LookupResponse(entry=pb.Entry(body=b"x" * size)))
    one = pb.ExchangeResponse(replies=[reply])
    assert reply_size(reply.ByteSize()) == one.ByteSize()


def test_gate_counts_up_to_its_limit() -> None:
    gate = Gate(2)
    assert gate.try_enter() and gate.try_enter()
    assert not gate.try_enter()
    gate.leave()
    assert gate.try_enter()
    assert gate.active == 2


def test_budget_takes_what_fits_and_a_reply_alone_whatever_its_size() -> None:
    budget = ByteBudget(100)
    assert budget.take(1000)  # nothing pending: it goes alone
    assert not budget.take(1)
    assert budget.take(1, force=True)
    budget.give(1001)
    assert budget.take(60) and budget.take(40)
    assert not budget.take(1)
    assert budget.pending == 100


def test_room_keeps_room_for_every_call_and_fits_large_replies_in_the_rest() -> None:
    budget = ByteBudget(10_000_000)
    room = ReplyRoom(budget, message_limit=100_000, calls=10)
    assert room.admit(SMALL_REPLY_BYTES) is None  # small: has its kept room
    assert room.admit(50_000) is None
    assert room.admit(50_000) is Refusal.TOO_LARGE  # 100k minus 10 kept rooms minus 50k
    assert room.admit(30_000) is None
    assert budget.pending == room.taken == SMALL_REPLY_BYTES + 80_000
    room.release()
    assert budget.pending == 0


def test_room_refuses_a_large_reply_the_budget_has_no_room_for() -> None:
    budget = ByteBudget(200_000)
    assert budget.take(150_000)  # another stream's reply, not read yet
    room = ReplyRoom(budget, message_limit=10_000_000, calls=3)
    assert room.admit(SMALL_MESSAGE_BYTES) is None  # a small message always goes
    assert room.admit(SMALL_MESSAGE_BYTES) is Refusal.BUDGET
    assert room.admit(100) is None  # small replies always go
    assert budget.pending == 150_000 + SMALL_MESSAGE_BYTES + 100


def test_refusals_are_logged_once_per_interval_with_the_count_suppressed(
    caplog: pytest.LogCaptureFixture,
) -> None:
    now = [0.0]
    refusals = RefusalLog(logging.getLogger("test.refusals"), interval_s=10, clock=lambda: now[0])
    with caplog.at_level(logging.INFO, logger="test.refusals"):
        assert refusals.refused("exchange", "batch_too_large", "first")
        assert not refusals.refused("exchange", "batch_too_large", "second")
        assert refusals.refused("lookup", "empty_key", "another pair")  # its own interval
        now[0] = 9.9
        assert not refusals.refused("exchange", "batch_too_large", "third")
        now[0] = 10.0
        assert refusals.refused("exchange", "batch_too_large", "fourth")
    lines = [
        (r.__dict__["event.reason"], r.__dict__["strata.refusals_suppressed"])
        for r in caplog.records
    ]
    assert lines == [("batch_too_large", 0), ("empty_key", 0), ("batch_too_large", 2)]
    assert caplog.records[-1].__dict__["error.message"] == "fourth"


LIMITS = {"request_headers": 256, "headers": 256, "tags": 256, "calls": 128}
BATCH_SCAN = RepeatedScan(pb.ExchangeRequest.DESCRIPTOR, LIMITS)


def _ld(data: bytes, tag: bytes = b"\x0a") -> bytes:
    """`data` as a length-delimited field (by default 1: a call of an Exchange message)."""
    out, size = bytearray(tag), len(data)
    while size > 0x7F:
        out.append(size & 0x7F | 0x80)
        size >>= 7
    out.append(size)
    return bytes(out) + data


def test_scan_stops_at_the_first_field_over_its_limit() -> None:
    scan = RepeatedScan(pb.LookupRequest.DESCRIPTOR, LIMITS)
    flood = b"\x0a\x03k:1" + b"\x1a\x03\x0a\x01a" * 3_000_000 + b"\xff"  # garbage at the end
    assert scan.excess(flood) == Excess("request_headers", "request_headers", 256)
    ok = pb.LookupRequest(key=b"k", request_headers=[pb.Header(name=b"a")] * 256)
    assert scan.excess(ok.SerializeToString()) is None


def test_scan_counts_nested_fields_per_instance_and_merged_pieces_together() -> None:
    store = pb.StoreRequest(key=b"k", entry=pb.Entry(tags=["t"] * 200, body=b"x" * 100_000))
    batch = pb.ExchangeRequest(calls=[pb.Call(id=i, store=store) for i in range(100)])
    assert BATCH_SCAN.excess(batch.SerializeToString()) is None  # 200 tags in each entry
    over = pb.ExchangeRequest(
        calls=[pb.Call(store=pb.StoreRequest(entry=pb.Entry(tags=["t"] * 257)))]
    )
    assert BATCH_SCAN.excess(over.SerializeToString()) == Excess(
        "calls.store.entry.tags", "tags", 256
    )
    # a singular sub-message sent in two pieces is merged by the parser: counted together
    piece = pb.Call(lookup=pb.LookupRequest(request_headers=[pb.Header(name=b"a")] * 200))
    merged = _ld(piece.SerializeToString() * 2)
    assert len(pb.ExchangeRequest.FromString(merged).calls[0].lookup.request_headers) == 400
    assert BATCH_SCAN.excess(merged) == Excess(
        "calls.lookup.request_headers", "request_headers", 256
    )


def test_scan_caps_other_fields_and_skips_what_holds_no_repeated_field() -> None:
    many_ids = _ld(b"\x08\x01" * 65)  # one call, its id sent 65 times
    assert BATCH_SCAN.excess(many_ids) == Excess("calls.<other fields>", "", 64)
    assert BATCH_SCAN.excess(b"\x10\x01" * 65) == Excess("<other fields>", "", 64)
    # a purge's fields are never looked into (InvalidateRequest has no repeated field)
    invalidate = pb.Call.DESCRIPTOR.fields_by_name["invalidate"].number
    purge = _ld(b"\x08\x01" * 100 + b"\x1a\x01t", bytes([invalidate << 3 | 2]))
    assert len(purge) > 200 and BATCH_SCAN.excess(_ld(purge)) is None


@pytest.mark.parametrize("data", [b"\x0a", b"\x0a\x80", b"\x0b\x0a\x00", b"\x0a\x05ab"])
def test_scan_leaves_malformed_bytes_to_the_parser(data: bytes) -> None:
    assert BATCH_SCAN.excess(data) is None
