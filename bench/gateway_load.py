"""The load `bench gateway` sends and what it reads back from kongsim.

`sequential` (one client: latency) and `concurrent` (N clients for a fixed time: requests/s,
with the CPU time each measured process used over the round), and `round_trips`: the RPCs and
PDK Step round trips of one request, from kongsim's recorder, once all its phases (``log``
included) are done.
"""

from __future__ import annotations

import asyncio
import json
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from bench.procs import cpu_seconds
from bench.stats import summarize

UrlOf = Callable[[int], str]


@dataclass(frozen=True)
class Measured:
    """A process whose CPU time a round measures; ``tree``: with its descendants."""

    pid: int
    tree: bool


async def sequential(url_of: UrlOf, n: int) -> dict[str, float]:
    """`n` requests one after the other; p50/p99 latency and requests/s."""
    import aiohttp  # noqa: PLC0415

    lat = []
    async with aiohttp.ClientSession() as http:
        t_start = time.perf_counter()
        for i in range(n):
            t0 = time.perf_counter()
            async with http.get(url_of(i)) as resp:
                await resp.read()
                if resp.status != 200:
                    raise SystemExit(f"{url_of(i)} answered {resp.status}")
            lat.append(time.perf_counter() - t0)
    return summarize(lat, time.perf_counter() - t_start)


async def concurrent(url_of: UrlOf, clients: int, seconds: float) -> dict[str, float]:
    """`clients` clients sending requests back to back for `seconds`."""
    import aiohttp  # noqa: PLC0415

    lat: list[float] = []
    counter = [0]
    stop_at = time.perf_counter() + seconds

    async def client(http: aiohttp.ClientSession) -> None:
        while time.perf_counter() < stop_at:
            counter[0] += 1
            t0 = time.perf_counter()
            async with http.get(url_of(counter[0] + 10**7)) as resp:
                await resp.read()
            lat.append(time.perf_counter() - t0)

    conn = aiohttp.TCPConnector(limit=clients)
    async with aiohttp.ClientSession(connector=conn) as http:
        t_start = time.perf_counter()
        await asyncio.gather(*(client(http) for _ in range(clients)))
        return summarize(lat, time.perf_counter() - t_start)


def measured_concurrent(
    url_of: UrlOf, clients: int, seconds: float, measured: dict[str, Measured]
) -> tuple[dict[str, float], dict[str, float]]:
    """A :func:`concurrent` round and the CPU milliseconds each measured process used per
    request over it (utime + stime from ``/proc``; the bench's own client is not counted)."""
    before = {k: cpu_seconds(m.pid, tree=m.tree) for k, m in measured.items()}
    summary = asyncio.run(concurrent(url_of, clients, seconds))
    after = {k: cpu_seconds(m.pid, tree=m.tree) for k, m in measured.items()}
    n = max(1.0, summary["n"])
    return summary, {k: round((after[k] - before[k]) * 1000 / n, 3) for k in measured}


def _get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=5) as r:
        return json.load(r)


def round_trips(base: str, path: str, timeout: float = 5.0) -> dict[str, Any]:
    """Send `path` once and count, over every event of the request (``access``,
    ``response`` and ``log`` included): RPCs (``HandleEvent``, each ``Step*``, any
    ``StartInstance``), PDK calls, and PDK Step round trips (PDK calls answered with a
    ``Step``: a terminal ``kong.response.exit`` is sent no answer and is not one)."""
    with urllib.request.urlopen(f"{base}{path}", timeout=5) as r:
        r.read()
        request_id = r.headers.get("X-Kong-Request-Id")
    deadline = time.monotonic() + timeout
    while True:
        rec = _get_json(f"{base}/_kongsim/requests/{request_id}")
        if rec.get("complete"):
            break
        if time.monotonic() > deadline:
            raise RuntimeError(f"kongsim did not complete the record of {path} in {timeout} s")
        time.sleep(0.05)
    phases: dict[str, dict[str, int]] = {}
    for e in rec["events"]:
        p = phases.setdefault(e["phase"], {"rpcs": 0, "step_round_trips": 0})
        p["rpcs"] += e["rpcs"]
        p["step_round_trips"] += e["step_round_trips"]
    return {
        "step_round_trips": rec["step_round_trips"],
        "rpcs": rec["rpc_count"],
        "pdk_calls": rec["pdk_call_count"],
        "by_phase": phases,
    }


def hit_event_ms(base: str, samples: int = 200) -> float:
    """Median duration of the plugin's ``access`` event on recent hits, as kongsim timed it
    (HandleEvent to the exit: the PDK round trips and whatever the plugin waits for)."""
    data = _get_json(f"{base}/_kongsim/requests?limit={samples}")
    records = data if isinstance(data, list) else data.get("data", [])
    durations = sorted(
        e["duration_ms"]
        for rec in records
        if rec.get("path", "").startswith("/hit")
        for e in rec.get("events", [])
        if e.get("phase") == "access"
    )
    return durations[len(durations) // 2] if durations else float("nan")
