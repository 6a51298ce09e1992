"""A corrupt entry through the real gRPC service: an `Exchange` call that hits one gets a
miss, and the stream (with the other calls of its batch) carries on. Before, the error
escaped the call and ended the whole stream."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import grpc
import pytest
from strata.v1 import cache_pb2 as pb
from strata.v1 import cache_pb2_grpc as pb_grpc

from sidecar.core.clock import ManualClock
from sidecar.core.observer import RecordingObserver
from sidecar.engine.engine import Engine
from sidecar.rpc.server import RunningServer, create_server
from tests.support.fakes import CorruptingMemory

BAD, GOOD = b"v1:r:bad", b"v1:r:good"


@pytest.fixture
async def served() -> AsyncIterator[tuple[RunningServer, CorruptingMemory]]:
    clock = ManualClock()
    memory = CorruptingMemory(clock)
    engine = Engine([memory], clock, observer=RecordingObserver())
    running = create_server(engine, "127.0.0.1:0", 4 * 1024 * 1024)
    await running.server.start()
    yield running, memory
    await running.server.stop(0)


def lookup(call_id: int, key: bytes) -> pb.Call:
    return pb.Call(id=call_id, lookup=pb.LookupRequest(key=key))


def store(call_id: int, key: bytes) -> pb.Call:
    entry = pb.Entry(status=200, body=key, ttl_ms=60_000, stored_at_ms=1_700_000_000_000)
    return pb.Call(id=call_id, store=pb.StoreRequest(key=key, entry=entry))


@pytest.mark.timeout(20)
async def test_a_corrupt_entry_is_a_miss_and_the_stream_carries_on(
    served: tuple[RunningServer, CorruptingMemory],
) -> None:
    running, memory = served
    async with grpc.aio.insecure_channel(running.address) as channel:
        stream = pb_grpc.CacheServiceStub(channel).Exchange()
        await stream.write(pb.ExchangeRequest(calls=[store(1, BAD), store(2, GOOD)]))
        stored = await asyncio.wait_for(stream.read(), 5)
        assert [r.store.result for r in stored.replies] == [pb.STORE_RESULT_STORED] * 2
        memory.corrupt.add(BAD)

        await stream.write(pb.ExchangeRequest(calls=[lookup(3, BAD)]))
        reply = (await asyncio.wait_for(stream.read(), 5)).replies[0]
        assert (reply.id, reply.WhichOneof("result")) == (3, "lookup")
        assert reply.lookup.outcome == pb.OUTCOME_MISS

        await stream.write(pb.ExchangeRequest(calls=[lookup(4, GOOD)]))
        reply = (await asyncio.wait_for(stream.read(), 5)).replies[0]
        assert reply.id == 4 and reply.lookup.outcome == pb.OUTCOME_HIT
        assert reply.lookup.entry.body == GOOD

        # in one batch: the corrupt one misses, the others of the batch are answered
        await stream.write(pb.ExchangeRequest(calls=[store(5, BAD)]))
        await asyncio.wait_for(stream.read(), 5)
        memory.corrupt.add(BAD)
        await stream.write(pb.ExchangeRequest(calls=[lookup(6, GOOD), lookup(7, BAD)]))
        replies = (await asyncio.wait_for(stream.read(), 5)).replies
        assert [(r.id, r.lookup.outcome) for r in replies] == [
            (6, pb.OUTCOME_HIT),
            (7, pb.OUTCOME_MISS),
        ]
        await stream.done_writing()
        assert await asyncio.wait_for(stream.read(), 5) is grpc.aio.EOF
        assert await stream.code() == grpc.StatusCode.OK


@pytest.mark.timeout(20)
async def test_an_unexpected_error_fails_that_call_only(
    served: tuple[RunningServer, CorruptingMemory], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A bug in one call (anything but a refused request) answers that call INTERNAL."""
    running, _ = served

    async def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("a bug")

    async with grpc.aio.insecure_channel(running.address) as channel:
        stream = pb_grpc.CacheServiceStub(channel).Exchange()
        await stream.write(pb.ExchangeRequest(calls=[store(1, GOOD)]))
        await asyncio.wait_for(stream.read(), 5)
        engine = running.service._engine
        monkeypatch.setattr(engine, "invalidate_key", broken)
        invalidate = pb.Call(id=2, invalidate=pb.InvalidateRequest(key=GOOD))
        await stream.write(pb.ExchangeRequest(calls=[invalidate, lookup(3, GOOD)]))
        replies = (await asyncio.wait_for(stream.read(), 5)).replies
        assert replies[0].id == 2 and replies[0].WhichOneof("result") == "error"
        assert replies[0].error.code == grpc.StatusCode.INTERNAL.value[0]
        assert replies[1].id == 3 and replies[1].lookup.outcome == pb.OUTCOME_HIT
        await stream.done_writing()
        assert await stream.code() == grpc.StatusCode.OK
