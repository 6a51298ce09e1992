"""Steady load for the fault suite: concurrent clients over a Zipf key set, every answer
recorded with its completion time, and the window statistics the report is made of.

`Load` runs its clients on an event loop in a thread of its own, so that the caller may
block (kill and restart servers) while traffic keeps flowing. Each answer becomes a
`Sample`: completion time (``time.monotonic()``), latency, HTTP status (0 for a transport
error), the ``X-Cache-Status`` value and the error, if any. `window` and `time_to_recover`
read samples by completion time.

Not guaranteed: a fixed request rate (clients send back to back, so throughput follows
the gateway); exact Zipf tails with few samples; completion order across clients within
one event-loop tick.
"""

from __future__ import annotations

import asyncio
import bisect
import itertools
import random
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import aiohttp

#: ``X-Cache-Status`` values counted as answered from the cache.
FROM_CACHE = frozenset({"Hit", "Stale"})
#: The reason of a Bypass answer without ``Cache-Status`` (plugins before it said why; now
#: ``detail=sidecar-unavailable`` marks the plugin failing open).
NO_CACHE_STATUS = "no Cache-Status (failed open)"


@dataclass(frozen=True, slots=True)
class Sample:
    done: float
    latency: float
    status: int  # 0: transport error
    cache: str  # X-Cache-Status, "" when absent
    error: str  # "" unless a transport error or a non-2xx status
    why: str = ""  # a Bypass answer's Cache-Status (the plugin's reason), else ""

    @property
    def failed(self) -> bool:
        return bool(self.error)


class Zipf:
    """Ranks 0..n-1 with probability proportional to 1 / (rank + 1) ** alpha."""

    def __init__(self, n: int, alpha: float) -> None:
        weights = [1.0 / (r + 1) ** alpha for r in range(n)]
        self._cumulative = list(itertools.accumulate(weights))

    def sample(self, rng: random.Random) -> int:
        return bisect.bisect_left(self._cumulative, rng.random() * self._cumulative[-1])


async def _get(http: aiohttp.ClientSession, url: str) -> Sample:
    t0 = time.monotonic()
    try:
        async with http.get(url) as resp:
            await resp.read()
            status, cache = resp.status, resp.headers.get("X-Cache-Status", "")
            why = resp.headers.get("Cache-Status", NO_CACHE_STATUS) if cache == "Bypass" else ""
    except (aiohttp.ClientError, TimeoutError, OSError) as exc:
        t1 = time.monotonic()
        return Sample(t1, t1 - t0, 0, "", type(exc).__name__)
    t1 = time.monotonic()
    error = "" if 200 <= status < 300 else f"HTTP {status}"
    return Sample(t1, t1 - t0, status, cache, error, why)


@dataclass
class Load:
    """`clients` concurrent clients GETting `url_of(rank)` for Zipf(`urls`, `alpha`) ranks."""

    base_url: str
    urls: int
    clients: int
    alpha: float = 1.0
    seed: int = 1
    timeout_s: float = 10.0
    samples: list[Sample] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def url_of(self, rank: int) -> str:
        return f"{self.base_url}/items/{rank}"

    def start(self) -> None:
        self._thread = threading.Thread(target=asyncio.run, args=(self._run(),), daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(self.timeout_s + 5)

    def _session(self) -> aiohttp.ClientSession:
        return aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=self.clients),
            timeout=aiohttp.ClientTimeout(total=self.timeout_s),
        )

    async def _run(self) -> None:
        zipf = Zipf(self.urls, self.alpha)
        async with self._session() as http:

            async def client(i: int) -> None:
                rng = random.Random(self.seed * 1000 + i)
                while not self._stop.is_set():
                    self.samples.append(await _get(http, self.url_of(zipf.sample(rng))))

            await asyncio.gather(*(client(i) for i in range(self.clients)))

    def warm(self) -> list[Sample]:
        """Request every URL once (with `clients` in parallel), before the load starts."""

        async def run() -> list[Sample]:
            ranks = iter(range(self.urls))
            out: list[Sample] = []
            async with self._session() as http:

                async def client() -> None:
                    for rank in ranks:
                        out.append(await _get(http, self.url_of(rank)))

                await asyncio.gather(*(client() for _ in range(self.clients)))
            return out

        return asyncio.run(run())


@dataclass(frozen=True, slots=True)
class Window:
    """What the clients saw between two instants."""

    seconds: float
    requests: int
    errors: int
    bypasses: int
    from_cache: int
    errors_by_kind: dict[str, int]
    bypasses_by_reason: dict[str, int]
    p99_ms: float

    @property
    def hit_ratio(self) -> float | None:
        return self.from_cache / self.requests if self.requests else None

    def as_dict(self) -> dict[str, object]:
        ratio = self.hit_ratio
        return {
            "seconds": round(self.seconds, 2),
            "requests": self.requests,
            "rps": round(self.requests / self.seconds, 1) if self.seconds > 0 else None,
            "errors": self.errors,
            "errors_by_kind": self.errors_by_kind,
            "bypasses": self.bypasses,
            "bypasses_by_reason": self.bypasses_by_reason,
            "hit_ratio": None if ratio is None else round(ratio, 4),
            "p99_ms": round(self.p99_ms, 1),
        }


class Timeline:
    """Samples by completion time (the load's list, read while it still grows)."""

    def __init__(self, samples: Sequence[Sample]) -> None:
        self._samples = list(samples)
        self._times = [s.done for s in self._samples]

    def between(self, start: float, end: float) -> Sequence[Sample]:
        lo = bisect.bisect_left(self._times, start)
        hi = bisect.bisect_left(self._times, end)
        return self._samples[lo:hi]

    def window(self, start: float, end: float) -> Window:
        chosen = self.between(start, end)
        kinds: dict[str, int] = {}
        reasons: dict[str, int] = {}
        for s in chosen:
            if s.failed:
                kinds[s.error] = kinds.get(s.error, 0) + 1
            if s.cache == "Bypass":
                reasons[s.why] = reasons.get(s.why, 0) + 1
        latencies = sorted(s.latency for s in chosen)
        p99 = latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))] if latencies else 0
        return Window(
            seconds=max(0.0, end - start),
            requests=len(chosen),
            errors=sum(kinds.values()),
            bypasses=sum(reasons.values()),
            from_cache=sum(1 for s in chosen if s.cache in FROM_CACHE),
            errors_by_kind=kinds,
            bypasses_by_reason=reasons,
            p99_ms=p99 * 1000,
        )

    def time_to_recover(
        self,
        start: float,
        end: float,
        target: float,
        width: float = 1.0,
        step: float = 0.1,
        min_requests: int = 5,
    ) -> float | None:
        """Seconds from `start` to the first `width`-second window (starting at or after
        `start`, ending by `end`) whose hit ratio is at least `target`; None if none is."""
        offset = 0.0
        while start + offset + width <= end + 1e-9:
            w = self.window(start + offset, start + offset + width)
            ratio = w.hit_ratio
            if w.requests >= min_requests and ratio is not None and ratio >= target:
                return round(offset, 2)
            offset += step
        return None
