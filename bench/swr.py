"""Stale-while-revalidate: what clients wait while a stale entry is refreshed.

Two gateways in one run (kongsim + the real plugin server + a sidecar each, on loopback),
the same origin behind both: it answers after ``--origin-ms`` with ``max-age=1,
stale-while-revalidate=30`` and an ``ETag``. Each round primes a fresh URL, waits until it
is stale, then sends ``--clients`` concurrent requests for it; the round's figure is the
slowest of them (the one holding the refresh lease, if it waits). Measured interleaved:

* ``foreground`` (the baseline: ``background_refresh.enabled: false``, the behaviour before
  background refresh): the lease holder goes to the origin and waits for it;
* ``background`` (the default): every request is answered stale at once and the refresh
  runs on the plugin server's pool.

Prints JSON: per mode the p50/p99 of the round's slowest request and the p50 of all
requests, in ms, with the origin's delay, and the ratio of background to foreground (p50 of
the slowest request). No absolute target: the ratio is the figure.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.procs import clean_env
from bench.stats import percentile

MODES = ("foreground", "background")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--rounds", type=int, default=8, help="rounds per mode")
    parser.add_argument("--clients", type=int, default=8, help="concurrent requests per round")
    parser.add_argument("--origin-ms", type=int, default=300, help="the origin's delay")
    parser.add_argument("--quick", action="store_true", help="2 rounds of 4 clients (smoke)")


def _origin_app(delay_s: float) -> Any:
    from aiohttp import web  # noqa: PLC0415

    async def handle(request: web.Request) -> web.Response:
        await asyncio.sleep(delay_s)
        return web.Response(
            body=b'{"at": %d}' % time.time_ns(),
            headers={
                "Content-Type": "application/json",
                "Cache-Control": "max-age=1, stale-while-revalidate=30",
                "ETag": f'"{time.time_ns()}"',
            },
        )

    app = web.Application()
    app.router.add_get("/{tail:.*}", handle)
    return app


async def _round(http: Any, base: str, path: str, clients: int) -> list[float]:
    async def one() -> float:
        start = time.perf_counter()
        async with http.get(base + path, headers={"Host": "bench.example"}) as resp:
            await resp.read()
            if resp.status != 200:
                raise RuntimeError(f"{path}: status {resp.status}")
        return time.perf_counter() - start

    await one()  # miss: stored
    await asyncio.sleep(1.3)  # stale now, inside its window
    return list(await asyncio.gather(*(one() for _ in range(clients))))


async def _measure(args: argparse.Namespace) -> dict[str, Any]:
    import aiohttp  # noqa: PLC0415

    from tools.stack import Stack  # noqa: PLC0415
    from tools.stack.sidecar import SidecarProcess  # noqa: PLC0415

    delay_s = args.origin_ms / 1000.0
    slowest: dict[str, list[float]] = {m: [] for m in MODES}
    every: dict[str, list[float]] = {m: [] for m in MODES}
    with tempfile.TemporaryDirectory(prefix="strata-bench-swr-", dir="/tmp") as d:
        stacks = {}
        try:
            for mode in MODES:
                work = Path(d) / mode
                work.mkdir()
                sidecar = SidecarProcess(
                    f"unix:{work / 'sidecar.sock'}",
                    env=clean_env(),
                    metrics_listen="off",
                    log_level="WARNING",
                )
                plugin = {
                    "stale_while_revalidate": 0,
                    "stale_if_error": 0,
                    "background_refresh": {"enabled": mode == "background"},
                }
                stack = Stack(
                    work, sidecar, plugin=plugin, upstream_app=lambda: _origin_app(delay_s)
                )
                await stack.start()
                stacks[mode] = stack
            timeout = aiohttp.ClientTimeout(total=30)
            async with aiohttp.ClientSession(timeout=timeout) as http:
                for i in range(args.rounds):
                    for mode in MODES:
                        path = f"/products/bench-swr-{mode}-{i}"
                        times = await _round(http, stacks[mode].base_url, path, args.clients)
                        slowest[mode].append(max(times))
                        every[mode].extend(times)
        finally:
            for stack in stacks.values():
                await stack.stop()
    report: dict[str, Any] = {"origin_ms": args.origin_ms, "clients": args.clients}
    for mode in MODES:
        worst, allv = sorted(slowest[mode]), sorted(every[mode])
        report[mode] = {
            "slowest_p50_ms": round(percentile(worst, 0.5) * 1000, 1),
            "slowest_p99_ms": round(percentile(worst, 0.99) * 1000, 1),
            "all_p50_ms": round(percentile(allv, 0.5) * 1000, 1),
            "rounds": len(worst),
        }
    fg = report["foreground"]["slowest_p50_ms"]
    bg = report["background"]["slowest_p50_ms"]
    report["ratios"] = {"background/foreground_slowest_p50": round(bg / fg, 3) if fg else None}
    return report


def run(args: argparse.Namespace) -> int:
    if args.quick:
        args.rounds, args.clients = 2, 4
    report = {"scenario": "swr", **asyncio.run(_measure(args))}
    print(json.dumps(report, indent=2))
    return 0
