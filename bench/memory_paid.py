"""Memory where it is paid: a real sidecar's resident set and Redis' ``used_memory`` per
cached response, for `python -m bench memory`.

Sidecar RSS: a sidecar process with only its memory tier (`PAID_BUDGET`, far above the
corpus, so nothing is evicted; default admission) is warmed up with tiny entries (then
purged) and its ``VmRSS`` read; the corpus is stored through the real gRPC API
(`SidecarClient`, one thread) and ``VmRSS`` read again. The growth divided by the responses
is what one cached response costs the process; the tier's own count (`Stats`: the memory
tier's ``bytes``, the deduplicated estimate) is reported beside it, and their ratio says how
honest the budget is.

Redis: a sidecar with the Redis tier only (``memory_max_bytes = 0``, ``shared_min_hits =
0``: every key goes to Redis; nothing to subtract) stores the corpus; ``INFO memory``
``used_memory`` is read before and after, and the same is done for the naive layout (one
JSON document per key, `bench.memory_corpus.naive_value`) SET directly under a namespace of
its own. Each reading is the median of a few samples taken in a quiet window (their spread
is reported as the noise), and an idle control (the same readings with nothing stored
between them) shows the server's background drift. Every key is DELeted (synchronously)
after each measurement, and at the end whatever happens.

What this does NOT guarantee: ``used_memory`` is server-wide, so another client writing
during a measurement moves it (the noise and idle figures say how much); a Redis hash
table that doubles during a store adds its whole new table to that store's delta; RSS
counts pages, so a corpus of a few hundred responses is within a few pages' noise; the
sidecar's figure includes whatever gRPC keeps after the calls (buffers, its arenas).
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from bench.churn import memory_tier_stats
from bench.memory_corpus import TTL_MS, Item, naive_value
from bench.procs import clean_env, rss_bytes
from tools.stack import SidecarProcess

#: The memory tier's budget in the RSS measurement: far above any corpus (no eviction).
PAID_BUDGET = 1 << 30
#: `used_memory` samples per reading, and the pause between them.
SAMPLES = 5
SAMPLE_INTERVAL_S = 0.05
#: Readings are retried (up to `QUIET_TRIES`) while the spread exceeds this.
QUIET_SPREAD_BYTES = 16 * 1024
QUIET_TRIES = 10
#: How long the sidecar may take to make every entry visible in Redis.
SETTLE_TIMEOUT_S = 30.0


def log(msg: str) -> None:
    print(f"[bench memory] {msg}", file=sys.stderr, flush=True)


def per_response(total: float, responses: int) -> float:
    """`total` bytes spread over `responses` (rounded to 0.1 byte)."""
    if responses <= 0:
        raise ValueError("no responses")
    return round(total / responses, 1)


def ratio(value: float, baseline: float) -> float:
    """`value / baseline`, rounded; ValueError when the baseline is not positive (a
    measurement gone wrong, never reported as a number)."""
    if not baseline > 0:
        raise ValueError(f"baseline {baseline!r} is not positive")
    return round(value / baseline, 4)


def quiet_reading(
    read: Callable[[], int],
    samples: int = SAMPLES,
    interval_s: float = SAMPLE_INTERVAL_S,
    max_spread: int = QUIET_SPREAD_BYTES,
    tries: int = QUIET_TRIES,
    sleep: Callable[[float], None] = time.sleep,
) -> tuple[int, int]:
    """(median, spread) of `samples` readings `interval_s` apart; taken again, up to `tries`
    times, while their spread (max - min) exceeds `max_spread`. The quietest window is kept
    when none is quiet enough: the caller reports its spread as the noise."""
    best: tuple[int, int] | None = None
    for _ in range(tries):
        values = []
        for i in range(samples):
            if i:
                sleep(interval_s)
            values.append(read())
        reading = (int(statistics.median(values)), max(values) - min(values))
        if best is None or reading[1] < best[1]:
            best = reading
        if reading[1] <= max_spread:
            break
    assert best is not None
    return best


# -- the sidecar's resident set --------------------------------------------------------


def _start_sidecar(workdir: Path, name: str, settings: dict[str, str]) -> SidecarProcess:
    return SidecarProcess(
        f"unix:{workdir}/{name}.sock",
        env=clean_env(),
        metrics_listen="off",
        log_level="WARNING",
        settings=settings,
        inherit_output=True,
    ).start()


def _warm_up(client: Any) -> None:
    """Tiny stores and lookups, then a purge: gRPC's stream and buffers exist, the cache is
    empty again."""
    from strata.v1 import cache_pb2 as pb  # noqa: PLC0415

    for i in range(100):
        client.store(b"warm:%d" % i, pb.Entry(status=200, body=b"x" * 64, ttl_ms=60_000))
        client.lookup(b"warm:%d" % i)
    client.invalidate(prefix=b"warm:")


def _store_corpus(client: Any, corpus: Sequence[Item]) -> None:
    """Store every item through `client`; RuntimeError on anything but STORED."""
    from strata.v1 import cache_pb2 as pb  # noqa: PLC0415

    from sidecar.rpc.convert import entry_to_proto  # noqa: PLC0415

    for item in corpus:
        entry = pb.Entry()
        entry_to_proto(item.entry, entry)
        result = client.store(item.key, entry).result
        if result != pb.STORE_RESULT_STORED:
            raise RuntimeError(f"store of {item.key!r} answered {pb.StoreResult.Name(result)}")


def _stop(proc: SidecarProcess) -> None:
    proc.terminate()
    proc.wait(15)


def sidecar_rss(corpus: Sequence[Item], naive_per_response: float) -> dict[str, Any]:
    """Store `corpus` into a fresh memory-tier-only sidecar; RSS growth against the tier's
    count and the naive bytes (see the module docstring)."""
    from kong_plugin.client import SidecarClient  # noqa: PLC0415

    with tempfile.TemporaryDirectory(prefix="strata-bench-memory-", dir="/tmp") as d:
        proc = _start_sidecar(Path(d), "rss", {"memory_max_bytes": str(PAID_BUDGET)})
        client = SidecarClient(proc.address, timeout_s=10.0)
        try:
            _warm_up(client)
            time.sleep(0.5)
            before = rss_bytes(proc.pid)
            counted_before = memory_tier_stats(proc.address)["tier_bytes"]
            started = time.monotonic()
            _store_corpus(client, corpus)
            seconds = time.monotonic() - started
            time.sleep(0.5)
            after = rss_bytes(proc.pid)
            stats = memory_tier_stats(proc.address)
        finally:
            client.close()
            _stop(proc)
    entries, counted = stats["entries"], stats["tier_bytes"]
    if entries != len(corpus):
        raise RuntimeError(f"the memory tier holds {entries} entries of {len(corpus)} stored")
    n = len(corpus)
    rss = per_response(after - before, n)
    counted_pr = per_response(counted - counted_before, n)
    log(f"sidecar RSS: {rss:.0f} B/response, counted {counted_pr:.0f} ({seconds:.1f} s)")
    return {
        "responses": n,
        "budget_bytes": PAID_BUDGET,
        "baseline_rss_bytes": before,
        "rss_growth_bytes": after - before,
        "rss_bytes_per_response": rss,
        "counted_bytes_per_response": counted_pr,
        "naive_bytes_per_response": naive_per_response,
        "rss_over_counted": ratio(rss, counted_pr),
        "rss_over_naive": ratio(rss, naive_per_response),
        "store_seconds": round(seconds, 2),
    }


# -- Redis' used_memory ----------------------------------------------------------------


def _delete_matching(client: Any, pattern: bytes) -> int:
    """DEL (synchronous, so `used_memory` drops now) every key matching `pattern`."""
    names = [bytes(k) for k in client.scan_iter(match=pattern, count=1000)]
    for i in range(0, len(names), 500):
        client.delete(*names[i : i + 500])
    return len(names)


def _count_matching(client: Any, pattern: bytes) -> int:
    return sum(1 for _ in client.scan_iter(match=pattern, count=1000))


def _wait_for_keys(client: Any, pattern: bytes, expected: int) -> int:
    """Wait until at least `expected` keys match `pattern` (the Store calls answered; this
    only guards against a write still in flight). The count found."""
    deadline = time.monotonic() + SETTLE_TIMEOUT_S
    while (found := _count_matching(client, pattern)) < expected:
        if time.monotonic() > deadline:
            raise RuntimeError(f"{found} keys match {pattern!r}, expected {expected}")
        time.sleep(0.1)
    return found


class _UsedMemory:
    """Deltas of the server's `used_memory` around a piece of work, with their noise."""

    def __init__(self, client: Any) -> None:
        self._client = client
        self.max_spread = 0

    def read(self) -> int:
        return int(self._client.info("memory")["used_memory"])

    def delta(self, work: Callable[[], object]) -> int:
        before, spread_before = quiet_reading(self.read)
        work()
        after, spread_after = quiet_reading(self.read)
        self.max_spread = max(self.max_spread, spread_before, spread_after)
        return after - before


def redis_used_memory(
    corpus: Sequence[Item], redis_url: str, namespace: str, rounds: int
) -> dict[str, Any]:
    """`used_memory` growth per response, Strata's Redis tier (through a real sidecar)
    against the naive layout SET directly; median over `rounds` (see the module docstring).
    """
    import redis  # noqa: PLC0415

    from kong_plugin.client import SidecarClient  # noqa: PLC0415

    n = len(corpus)
    strata_ns, naive_ns = f"{namespace}-paid", f"{namespace}-paid-naive"
    strata_pattern, naive_pattern = f"{strata_ns}:*".encode(), f"{naive_ns}:*".encode()
    naive_values = [(f"{naive_ns}:".encode() + i.key, naive_value(i)) for i in corpus]
    server = redis.Redis.from_url(redis_url, socket_timeout=10)
    used = _UsedMemory(server)
    strata: list[int] = []
    naive: list[int] = []
    idle: list[int] = []
    keys = body_keys = 0
    settings = {
        "memory_max_bytes": "0",
        "redis_url": redis_url,
        "namespace": strata_ns,
        "shared_min_hits": "0",
        "redis_timeout_ms": "2000",
    }
    with tempfile.TemporaryDirectory(prefix="strata-bench-memory-", dir="/tmp") as d:
        proc = _start_sidecar(Path(d), "redis", settings)
        client = SidecarClient(proc.address, timeout_s=10.0)
        try:
            _warm_up(client)
            _delete_matching(server, strata_pattern)

            def store_strata() -> None:
                _store_corpus(client, corpus)
                _wait_for_keys(server, f"{strata_ns}:e:*".encode(), n)

            def set_naive() -> None:
                pipe = server.pipeline(transaction=False)
                for name, value in naive_values:
                    pipe.set(name, value, px=TTL_MS)
                pipe.execute()

            for r in range(rounds):
                # alternate the order so that a drift does not always favour one side
                order = [("strata", store_strata), ("naive", set_naive)]
                for side, work in order if r % 2 == 0 else order[::-1]:
                    delta = used.delta(work)
                    if side == "strata":
                        strata.append(delta)
                        keys = _count_matching(server, strata_pattern)
                        body_keys = _count_matching(server, f"{strata_ns}:b:*".encode())
                        _delete_matching(server, strata_pattern)
                    else:
                        naive.append(delta)
                        _delete_matching(server, naive_pattern)
                idle.append(used.delta(lambda: time.sleep(0.2)))
                log(f"redis round {r + 1}: strata {strata[-1]} B, naive {naive[-1]} B")
        finally:
            client.close()
            _stop(proc)
            for pattern in (strata_pattern, naive_pattern):
                _delete_matching(server, pattern)
            server.close()
    strata_pr = per_response(statistics.median(strata), n)
    naive_pr = per_response(statistics.median(naive), n)
    return {
        "responses": n,
        "rounds": rounds,
        "layout": "Redis tier only (memory_max_bytes = 0): nothing subtracted",
        "strata_keys": keys,
        "strata_body_keys": body_keys,
        "strata_used_memory_deltas": strata,
        "naive_used_memory_deltas": naive,
        "strata_bytes_per_response": strata_pr,
        "naive_bytes_per_response": naive_pr,
        "ratio": ratio(strata_pr, naive_pr),
        "noise_bytes": used.max_spread,
        "idle_deltas": idle,
    }
