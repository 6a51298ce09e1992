"""The `Watch` stream's handler (`sidecar.rpc.watch`) with a fake context: hello then
batches with consecutive `seq`, the cap on open streams, the end on drain."""

from __future__ import annotations

import asyncio
from typing import Any

import grpc
from strata.v1 import cache_pb2 as pb

from sidecar.core.clock import ManualClock
from sidecar.engine.changes import Broadcaster
from sidecar.engine.engine import Engine
from sidecar.rpc.operations import Operations
from sidecar.rpc.watch import WatchStreams, watch_request
from sidecar.tiers.memory import MemoryTier


class Context:
    def __init__(self) -> None:
        self.written: list[pb.WatchEvent] = []
        self.code: Any = None
        self.wrote = asyncio.Event()

    async def write(self, message: pb.WatchEvent) -> None:
        self.written.append(message)
        self.wrote.set()

    def set_code(self, code: Any) -> None:
        self.code = code

    def set_details(self, details: str) -> None:
        self.details = details


def streams(changes: Broadcaster, limit: int, closing: asyncio.Event) -> WatchStreams:
    clock = ManualClock()
    engine = Engine([MemoryTier(1 << 20, clock)], clock)
    return WatchStreams(Operations(engine, 8), changes, limit, closing)


async def until(condition: Any) -> None:
    for _ in range(200):
        if condition():
            return
        await asyncio.sleep(0.001)
    raise AssertionError("condition not met")


async def test_hello_then_changes_with_consecutive_seq_and_the_cap() -> None:
    changes, closing = Broadcaster("node-a"), asyncio.Event()
    watches = streams(changes, 2, closing)
    first, second, third = Context(), Context(), Context()
    tasks = [asyncio.create_task(watches.serve(None, c)) for c in (first, second)]
    await until(lambda: len(first.written) == 1 and len(second.written) == 1)
    await watches.serve(None, third)  # over the cap: refused at once
    assert third.code is grpc.StatusCode.RESOURCE_EXHAUSTED and not third.written
    assert first.written[0] == pb.WatchEvent(seq=1, hello=pb.WatchHello(instance_id="node-a"))
    changes.changed_keys([b"k"])
    changes.changed_tags(["t"])
    await until(lambda: len(first.written) >= 2)
    changes.flushed("purge_all")
    await until(lambda: first.written[-1].WhichOneof("event") == "flush")
    seqs = [e.seq for e in first.written]
    assert seqs == list(range(1, len(seqs) + 1))
    keys = [k for e in first.written[1:] for k in e.changed.keys]
    assert keys == [b"k"]
    closing.set()
    watches.end_all()
    await asyncio.wait_for(asyncio.gather(*tasks), 1.0)
    assert watches.open == 0 and changes.watchers == 0


async def test_a_stream_opened_while_draining_ends_at_once() -> None:
    closing = asyncio.Event()
    closing.set()
    context = Context()
    await streams(Broadcaster(), 2, closing).serve(None, context)
    assert not context.written and context.code is None


def test_the_request_is_not_parsed() -> None:
    assert watch_request(b"\xff" * 100) == pb.WatchRequest()
