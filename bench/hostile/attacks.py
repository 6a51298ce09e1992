"""The hostile gRPC clients, one coroutine per attack, each returning how it was answered.

Each takes the sidecar's address (and, where it reads the sidecar's resident set, its pid)
and is bounded in time by its arguments; `bench.hostile.scenarios` runs them with a
victim and an RSS sampler beside them. Imports none of the product's packages (only the
generated contract).

Not guaranteed: that an attack reaches the server's limits on a machine with far more or
far less memory than the defaults assume; the counts in each result are of one run.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from typing import Any

import grpc
from strata.v1 import cache_pb2 as pb
from strata.v1 import cache_pb2_grpc as pb_grpc

from bench.procs import rss_bytes

#: A serialized message of ~16 MB of one-byte request headers (field 3, `Header{name: "a"}`).
TINY_HEADERS = b"\x1a\x03\x0a\x01a" * (16_000_000 // 5)
MIB = 1024 * 1024
#: Client-side message limit: large enough for any hostile message or reply.
CLIENT_OPTIONS = [
    ("grpc.max_send_message_length", 512 * MIB),
    ("grpc.max_receive_message_length", 512 * MIB),
]


def entry(body: bytes) -> pb.Entry:
    return pb.Entry(
        status=200,
        headers=[pb.Header(name=b"content-type", value=b"application/octet-stream")],
        body=body,
        ttl_ms=3_600_000,
    )


def summarize(response: pb.ExchangeResponse) -> dict[str, Any]:
    """Counts of reply kinds and the first error message."""
    kinds: dict[str, int] = {}
    first_error = ""
    for reply in response.replies:
        kind = reply.WhichOneof("result") or "none"
        kinds[kind] = kinds.get(kind, 0) + 1
        if kind == "error" and not first_error:
            first_error = reply.error.message
    return {"replies": kinds, "first_error": first_error}


async def store(stub: pb_grpc.CacheServiceStub, key: bytes, body: bytes) -> str:
    reply = await stub.Store(pb.StoreRequest(key=key, entry=entry(body)), timeout=10)
    return str(pb.StoreResult.Name(reply.result))


async def hostile_batch(address: str, calls: int, seconds: float) -> dict[str, Any]:
    """One Exchange message of `calls` coalescing lookups of 16 missing keys."""
    request = pb.ExchangeRequest(
        calls=[
            pb.Call(id=i, lookup=pb.LookupRequest(key=b"v1:h:%d" % (i % 16), coalesce_wait_ms=5000))
            for i in range(calls)
        ]
    )
    return await send_batch(address, request, seconds)


async def hostile_empty_batch(address: str, calls: int, seconds: float) -> dict[str, Any]:
    """One Exchange message of `calls` empty calls."""
    request = pb.ExchangeRequest.FromString(b"\x0a\x00" * calls)
    return await send_batch(address, request, seconds)


async def send_batch(address: str, request: pb.ExchangeRequest, seconds: float) -> dict[str, Any]:
    """Send `request` on a new Exchange stream; how and when it was answered."""
    out: dict[str, Any] = {"calls": len(request.calls), "message_bytes": request.ByteSize()}
    async with grpc.aio.insecure_channel(address, options=CLIENT_OPTIONS) as channel:
        call = pb_grpc.CacheServiceStub(channel).Exchange(timeout=seconds)
        start = time.monotonic()
        try:
            await call.write(request)
            response = await call.read()
            out["answered_s"] = round(time.monotonic() - start, 2)
            if response is grpc.aio.EOF:
                out["status"] = (await call.code()).name
            else:
                out.update(summarize(response))
                out["next_call"] = await one_more_call(call)
                await call.done_writing()
                out["status"] = (await call.code()).name
        except grpc.aio.AioRpcError as exc:
            out["answered_s"] = round(time.monotonic() - start, 2)
            out["status"] = exc.code().name
            out["details"] = exc.details()
    return out


async def one_more_call(call: Any) -> str:
    """Send one small lookup on the Exchange `call`: 'answered' or 'stream ended'."""
    await call.write(
        pb.ExchangeRequest(calls=[pb.Call(id=99, lookup=pb.LookupRequest(key=b"v1:x:1"))])
    )
    reply = await call.read()
    if reply is grpc.aio.EOF:
        return "stream ended"
    return "answered" if reply.replies[0].WhichOneof("result") == "lookup" else "error"


async def hostile_slow_readers(
    address: str, streams: int, calls_per_write: int, max_writes: int, seconds: float
) -> dict[str, Any]:
    """`streams` Exchange streams writing batches of lookups of ``v1:big:1`` and never
    reading; each writes until a write blocks for a second or `max_writes` went out. The
    streams are held open until `seconds` have passed since the start, then cancelled."""
    request = pb.ExchangeRequest(
        calls=[
            pb.Call(id=i, lookup=pb.LookupRequest(key=b"v1:big:1")) for i in range(calls_per_write)
        ]
    )
    written: list[int] = [0] * streams
    refused: dict[str, int] = {}
    end = time.monotonic() + seconds
    async with grpc.aio.insecure_channel(address, options=CLIENT_OPTIONS) as channel:
        stub = pb_grpc.CacheServiceStub(channel)
        calls = [stub.Exchange() for _ in range(streams)]

        async def flood(i: int) -> None:
            call = calls[i]
            try:
                for _ in range(max_writes):
                    await asyncio.wait_for(call.write(request), 1.0)
                    written[i] += 1
            except (TimeoutError, grpc.aio.AioRpcError, asyncio.InvalidStateError):
                pass
            if call.done():
                code = (await call.code()).name
                refused[code] = refused.get(code, 0) + 1

        await asyncio.gather(*(flood(i) for i in range(streams)))
        await asyncio.sleep(max(0.0, end - time.monotonic()))
        ended: dict[str, int] = {}
        for call in calls:
            if call.done():
                code = (await call.code()).name
                ended[code] = ended.get(code, 0) + 1
            call.cancel()
    return {
        "streams": streams,
        "calls_per_write": calls_per_write,
        "writes_total": sum(written),
        "writes_max_per_stream": max(written),
        "ended_early": ended,
        "refused_at_write": refused,
    }


async def hostile_big_reply(address: str, body_bytes: int, calls: int) -> dict[str, Any]:
    """A batch of `calls` lookups of one `body_bytes` entry, then one small call on the
    same stream."""
    out: dict[str, Any] = {}
    async with grpc.aio.insecure_channel(address, options=CLIENT_OPTIONS) as channel:
        stub = pb_grpc.CacheServiceStub(channel)
        out["store"] = await store(stub, b"v1:bigreply:1", os.urandom(body_bytes))
        call = stub.Exchange(timeout=30)
        batch = [pb.Call(id=i, lookup=pb.LookupRequest(key=b"v1:bigreply:1")) for i in range(calls)]
        try:
            await call.write(pb.ExchangeRequest(calls=batch))
            first = await call.read()
            out["batch"] = "stream ended" if first is grpc.aio.EOF else summarize(first)
            out["next_call"] = await one_more_call(call)
            await call.done_writing()
            out["status"] = (await call.code()).name
        except (grpc.aio.AioRpcError, asyncio.InvalidStateError) as exc:
            out["status"] = (await call.code()).name
            out["details"] = (
                str(exc) if not isinstance(exc, grpc.aio.AioRpcError) else exc.details()
            )
    return out


def _varint(value: int) -> bytes:
    out = bytearray()
    while value > 0x7F:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


async def hostile_tiny_fields(
    address: str, rounds: int, pid: int, size: int = len(TINY_HEADERS)
) -> dict[str, Any]:
    """Unary and Exchange requests of `size` bytes of one-byte request headers (millions of
    them), `rounds` times."""
    lookup = b"\x0a\x08v1:r:abc" + TINY_HEADERS[: size - size % 5]
    call = b"\x08\x01\x12" + _varint(len(lookup)) + lookup
    batch = b"\x0a" + _varint(len(call)) + call
    out: dict[str, Any] = {"unary": {}, "exchange": {}, "rss_after_round_mib": []}
    async with grpc.aio.insecure_channel(address, options=CLIENT_OPTIONS) as channel:
        unary = channel.unary_unary("/strata.v1.CacheService/Lookup")
        stream = channel.stream_stream("/strata.v1.CacheService/Exchange")
        for _ in range(rounds):
            try:
                await unary(lookup, timeout=30)
                key = "OK"
            except grpc.aio.AioRpcError as exc:
                key = f"{exc.code().name}: {(exc.details() or '')[:80]}"
            out["unary"][key] = out["unary"].get(key, 0) + 1
            call_ = stream(timeout=30)
            await call_.write(batch)
            raw = await call_.read()
            call_.cancel()
            key = (
                "ended"
                if raw is grpc.aio.EOF
                else str(summarize(pb.ExchangeResponse.FromString(raw)))
            )
            out["exchange"][key] = out["exchange"].get(key, 0) + 1
            await asyncio.sleep(1.0)
            out["rss_after_round_mib"].append(round(rss_bytes(pid) / MIB))
    return out


_STOPPED_READER = """
import os, signal, sys, time
import grpc
from strata.v1 import cache_pb2 as pb, cache_pb2_grpc as pbg
ch = grpc.insecure_channel(sys.argv[1], options=[("grpc.max_receive_message_length", 1 << 29)])
stub = pbg.CacheServiceStub(ch)
calls = [stub.Lookup.future(pb.LookupRequest(key=b"v1:big:1"), timeout=60)
         for _ in range(int(sys.argv[2]))]
time.sleep(0.05)
os.kill(os.getpid(), signal.SIGSTOP)
"""


async def hostile_unary_slow_readers(
    address: str, calls: int, seconds: float, pid: int
) -> dict[str, Any]:
    """`calls` unary Lookups of ``v1:big:1`` from a process that stops before reading."""
    child = subprocess.Popen([sys.executable, "-c", _STOPPED_READER, address, str(calls)])
    try:
        await asyncio.sleep(seconds)
        held = rss_bytes(pid)
    finally:
        child.kill()
        child.wait(10)
    return {"calls": calls, "rss_while_stopped_mib": round(held / MIB)}


async def hostile_big_requests(address: str, calls: int) -> dict[str, Any]:
    """`calls` unary Stores of a 16 MB body at once."""
    body = os.urandom(16_000_000)
    results: dict[str, int] = {}
    async with grpc.aio.insecure_channel(address, options=CLIENT_OPTIONS) as channel:
        stub = pb_grpc.CacheServiceStub(channel)

        async def one(i: int) -> None:
            try:
                reply = await stub.Store(
                    pb.StoreRequest(key=b"v1:r:big%d" % i, entry=entry(body)), timeout=30
                )
                key = str(pb.StoreResult.Name(reply.result))
            except grpc.aio.AioRpcError as exc:
                key = f"{exc.code().name}: {(exc.details() or '')[:60]}"
            results[key] = results.get(key, 0) + 1

        await asyncio.gather(*(one(i) for i in range(calls)))
    return {"calls": calls, "results": results}


async def hostile_idle_streams(address: str, idle: int, tries: int) -> dict[str, Any]:
    """`idle` Exchange streams held open and silent by one client; another opens a stream
    per call `tries` times."""
    hold = asyncio.Event()
    one_call = pb.ExchangeRequest(calls=[pb.Call(id=1, lookup=pb.LookupRequest(key=b"v1:r:i"))])
    outcomes: dict[str, int] = {}
    async with (
        grpc.aio.insecure_channel(address, options=CLIENT_OPTIONS) as hostile,
        grpc.aio.insecure_channel(address, options=CLIENT_OPTIONS) as victim,
    ):

        async def silent() -> AsyncIterator[pb.ExchangeRequest]:
            await hold.wait()
            nothing: tuple[pb.ExchangeRequest, ...] = ()
            for request in nothing:  # an async generator that sends nothing
                yield request

        streams = [pb_grpc.CacheServiceStub(hostile).Exchange(silent()) for _ in range(idle)]
        await asyncio.sleep(1.0)
        stub = pb_grpc.CacheServiceStub(victim)
        for _ in range(tries):
            call = stub.Exchange(timeout=5)
            try:
                await call.write(one_call)
                reply = await call.read()
                key = "ended" if reply is grpc.aio.EOF else "answered"
            except grpc.aio.AioRpcError as exc:
                key = exc.code().name
            call.cancel()
            outcomes[key] = outcomes.get(key, 0) + 1
        hold.set()
        for s in streams:
            s.cancel()
    return {"idle_streams": idle, "calls": outcomes}
