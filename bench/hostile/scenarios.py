"""The scenario table of `python -m bench hostile`: its options, which attack each scenario
name runs with which of them, and the run (a fresh sidecar per scenario, one JSON report).

The scenarios themselves are described in the package docstring (`bench.hostile`).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import grpc
from strata.v1 import cache_pb2_grpc as pb_grpc

from bench.hostile.attacks import (
    CLIENT_OPTIONS,
    MIB,
    hostile_batch,
    hostile_big_reply,
    hostile_big_requests,
    hostile_empty_batch,
    hostile_idle_streams,
    hostile_slow_readers,
    hostile_tiny_fields,
    hostile_unary_slow_readers,
    store,
)
from bench.hostile.harness import RssSampler, Victim, start_sidecar

SCENARIOS = (
    "batch",
    "slow-readers",
    "big-reply",
    "tiny-fields",
    "unary-slow-readers",
    "big-requests",
    "idle-streams",
)


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
