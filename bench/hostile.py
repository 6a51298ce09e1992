"""Hostile gRPC clients against a real sidecar: its RSS and another client's latency.

Starts a sidecar (memory tier only, a small memory budget) on a unix socket, then runs each
scenario in turn while a well-behaved client (a thread of its own) sends a unary Lookup
every `VICTIM_INTERVAL_S` with a deadline, and a sampler reads the sidecar's resident set:

* ``batch``: one Exchange message of `--batch-calls` coalescing lookups of a few missing
  keys (the first of each key gets the fill lease, the rest wait for a fill that never
  comes), then one of `--empty-calls` empty calls (2 bytes each: the most calls a message
  of the size limit can carry).
* ``slow-readers``: `--streams` Exchange streams that send batches of lookups of a large
  entry and never read a reply; each keeps writing until its writes block (or
  `--max-writes` went out).
* ``big-reply``: one batch whose replies together exceed the message limit, then one more
  call on the same stream (does the stream survive?).
* ``tiny-fields``: `--rounds` rounds of one unary Lookup and one Exchange message, each
  16 MB of one-byte request headers (millions of tiny repeated fields); the RSS after
  each round shows whether refused requests are freed.
* ``unary-slow-readers``: a child process sends `--streams` unary Lookups of the large
  entry and stops itself (SIGSTOP) before reading any reply; it is killed after
  `--seconds` / 4.
* ``big-requests``: `--streams` / 2 unary Stores of a 16 MB body at once (bytes being
  parsed across calls).
* ``idle-streams``: one client holds `--idle-streams` idle Exchange streams while another
  opens a stream per call, `--rounds` * 10 times: how many of its calls are answered.

Prints JSON: per scenario, the sidecar's RSS before and at its peak (MiB), how the hostile
client was answered, and the victim's worst latency and failed calls. Every scenario is
bounded in time (`--seconds`). `--checkout DIR` runs the sidecar of another source tree (its
root is its working directory, it and its ``proto/`` its PYTHONPATH) to compare before and
after.

Imports none of the product's packages (only the generated contract).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import AsyncIterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import grpc
from strata.v1 import cache_pb2 as pb
from strata.v1 import cache_pb2_grpc as pb_grpc

from bench.procs import rss_bytes
from tools.stack import SidecarProcess

SCENARIOS = (
    "batch",
    "slow-readers",
    "big-reply",
    "tiny-fields",
    "unary-slow-readers",
    "big-requests",
    "idle-streams",
)
#: A serialized message of ~16 MB of one-byte request headers (field 3, `Header{name: "a"}`).
TINY_HEADERS = b"\x1a\x03\x0a\x01a" * (16_000_000 // 5)
MIB = 1024 * 1024
VICTIM_INTERVAL_S = 0.05
VICTIM_DEADLINE_S = 2.0
SAMPLE_INTERVAL_S = 0.02
#: Client-side message limit: large enough for any hostile message or reply.
CLIENT_OPTIONS = [
    ("grpc.max_send_message_length", 512 * MIB),
    ("grpc.max_receive_message_length", 512 * MIB),
]


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--scenarios", default=",".join(SCENARIOS), help="comma-separated")
    p.add_argument("--memory-max-bytes", type=int, default=32 * MIB)
    p.add_argument("--batch-calls", type=int, default=200_000)
    p.add_argument("--empty-calls", type=int, default=8_000_000)
    p.add_argument("--streams", type=int, default=40)
    p.add_argument("--body-bytes", type=int, default=1 * MIB, help="large entry (slow-readers)")
    p.add_argument("--calls-per-write", type=int, default=4, help="lookups per slow write")
    p.add_argument("--max-writes", type=int, default=64, help="per slow stream")
    p.add_argument("--seconds", type=float, default=20.0, help="bound of each scenario")
    p.add_argument("--rounds", type=int, default=3, help="tiny-fields, idle-streams")
    p.add_argument("--idle-streams", type=int, default=300)
    p.add_argument("--checkout", default="", help="run the sidecar from this source tree")
    p.add_argument(
        "--sidecar-arg", action="append", default=[], help="extra sidecar flag (repeatable)"
    )


# -- the sidecar process -----------------------------------------------------------------


def start_sidecar(
    workdir: Path, memory_max_bytes: int, extra: list[str], checkout: str = ""
) -> tuple[str, SidecarProcess]:
    """A sidecar on a unix socket in `workdir`, SERVING before this returns. Its log
    (warnings and up) goes to ``workdir/sidecar.log``."""
    listen = f"unix:{workdir}/hostile.sock"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("STRATA_", "GRPC_"))}
    cwd = None
    if checkout:  # run from there too: `-m` puts the working directory first on sys.path
        cwd = Path(checkout).resolve()
        env["PYTHONPATH"] = os.pathsep.join([str(cwd), str(cwd / "proto")])
    log = workdir / "sidecar.log"
    log.write_bytes(b"")  # this sidecar's lines only
    sidecar = SidecarProcess(
        listen,
        env=env,
        metrics_listen="off",
        log_level="WARNING",
        settings={"memory_max_bytes": str(memory_max_bytes)},
        args=extra,
        log=log,
        cwd=cwd,
    )
    return listen, sidecar.start()


class RssSampler:
    """The peak resident set of a process, sampled on a thread of its own."""

    def __init__(self, pid: int) -> None:
        self._pid = pid
        self.before = rss_bytes(pid)
        self.peak = self.before
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(SAMPLE_INTERVAL_S):
            try:
                self.peak = max(self.peak, rss_bytes(self._pid))
            except (OSError, RuntimeError):
                return

    def stop(self) -> int:
        """Stop sampling; the growth of the peak over the RSS when sampling began."""
        self._stop.set()
        self._thread.join()
        return self.peak - self.before


# -- the well-behaved client -------------------------------------------------------------


@dataclass
class VictimReport:
    calls: int = 0
    failed: int = 0
    worst_ms: float = 0.0
    errors: list[str] = field(default_factory=list)


class Victim:
    """A unary Lookup every `VICTIM_INTERVAL_S` with a `deadline_s` deadline, on a thread
    and a channel of its own."""

    def __init__(self, address: str, deadline_s: float = VICTIM_DEADLINE_S) -> None:
        self._address = address
        self._deadline = deadline_s
        self.report = VictimReport()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="victim", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        with grpc.insecure_channel(self._address) as channel:
            stub = pb_grpc.CacheServiceStub(channel)
            stub.Lookup(pb.LookupRequest(key=b"v1:victim:0"), timeout=10)  # connected
            while not self._stop.wait(VICTIM_INTERVAL_S):
                start = time.monotonic()
                try:
                    stub.Lookup(pb.LookupRequest(key=b"v1:victim:1"), timeout=self._deadline)
                except grpc.RpcError as exc:
                    self.report.failed += 1
                    if len(self.report.errors) < 3:
                        self.report.errors.append(f"{exc.code().name}: {exc.details()}")
                took = (time.monotonic() - start) * 1000
                self.report.calls += 1
                self.report.worst_ms = max(self.report.worst_ms, took)

    def stop(self) -> VictimReport:
        self._stop.set()
        self._thread.join()
        return self.report


# -- hostile clients ---------------------------------------------------------------------


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


# -- the run -----------------------------------------------------------------------------


async def _scenario(name: str, args: argparse.Namespace, address: str, pid: int) -> dict[str, Any]:
    if name == "tiny-fields":
        return await hostile_tiny_fields(address, args.rounds, pid)
    if name == "unary-slow-readers":
        return await hostile_unary_slow_readers(address, args.streams, args.seconds / 4, pid)
    if name == "big-requests":
        return await hostile_big_requests(address, max(args.streams // 2, 1))
    if name == "idle-streams":
        return await hostile_idle_streams(address, args.idle_streams, args.rounds * 10)
    if name == "batch":
        return {
            "lookups": await hostile_batch(address, args.batch_calls, args.seconds),
            "empty": await hostile_empty_batch(address, args.empty_calls, args.seconds),
        }
    if name == "slow-readers":
        return await hostile_slow_readers(
            address, args.streams, args.calls_per_write, args.max_writes, args.seconds
        )
    return await hostile_big_reply(address, args.body_bytes, args.calls_per_write * 8)


async def _prepare(address: str, body_bytes: int) -> str:
    async with grpc.aio.insecure_channel(address, options=CLIENT_OPTIONS) as channel:
        return await store(pb_grpc.CacheServiceStub(channel), b"v1:big:1", os.urandom(body_bytes))


def measure(name: str, args: argparse.Namespace, address: str, pid: int) -> dict[str, Any]:
    """Run scenario `name` against the sidecar `pid` at `address` with a victim beside it."""
    sampler = RssSampler(pid)
    victim = Victim(address)
    start = time.monotonic()
    try:
        result = asyncio.run(_scenario(name, args, address, pid))
    finally:
        took = time.monotonic() - start
        time.sleep(0.5)  # the victim's calls right after the attack count too
        report = victim.stop()
        growth = sampler.stop()
    return {
        "scenario": name,
        "seconds": round(took, 2),
        "rss_before_mib": round(sampler.before / MIB, 1),
        "rss_peak_mib": round(sampler.peak / MIB, 1),
        "rss_growth_mib": round(growth / MIB, 1),
        "hostile": result,
        "victim": asdict(report),
    }


def run(args: argparse.Namespace) -> int:
    names = [s for s in args.scenarios.split(",") if s]
    unknown = sorted(set(names) - set(SCENARIOS))
    if unknown:
        raise SystemExit(f"unknown scenarios: {', '.join(unknown)}")
    results = []
    with tempfile.TemporaryDirectory(prefix="strata-hostile-") as tmp:
        workdir = Path(tmp)
        for name in names:  # a fresh sidecar per scenario: one's debris cannot skew another
            address, proc = start_sidecar(
                workdir, args.memory_max_bytes, args.sidecar_arg, args.checkout
            )
            try:
                stored = asyncio.run(_prepare(address, args.body_bytes))
                result = measure(name, args, address, proc.pid)
                result["large_entry"] = stored
                results.append(result)
            finally:
                proc.kill()
                proc.wait(10)
        log_tail = (workdir / "sidecar.log").read_text(errors="replace").splitlines()[-5:]
    print(json.dumps({"results": results, "last_log_lines": log_tail}, indent=2))
    return 0
