"""Sidecar RSS against its memory budget under churn: `python -m bench memory --churn-seconds N`.

A real sidecar process (memory tier only, `--budget` bytes, default admission) is driven
through its gRPC API by `SidecarClient` from several threads: every call stores a new key
(a body of 1 KiB-256 KiB, log-uniform, half compressible JSON-like text and half random
bytes) or looks up one of the recently stored keys, so the tier fills and then evicts
continuously. The sidecar's resident set (``VmRSS`` of ``/proc/PID/status``) is sampled
every `--sample-seconds`.

The figure is ``(RSS - baseline) / budget`` (and, per sample, the same growth over the
bytes the tier counts, ``rss_over_counted``), where the baseline is the RSS of the same
process once it serves, after a warm-up of the same calls on tiny bodies (the interpreter,
its imports, gRPC's threads and streams; an empty cache). Both numbers are reported, with
the tier's own byte count (`Stats`) beside them. `--sidecar-env NAME=VALUE` passes extra
environment to the sidecar (to compare allocator settings).

What it does not measure: the client's own memory; RSS is what Linux reports, shared pages
(the interpreter's mapped libraries) included in both RSS and baseline.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import subprocess
import tempfile
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.procs import clean_env, rss_bytes
from tools.stack import SidecarProcess

#: Defaults of the scenario.
BUDGET = 64 * 1024**2
THREADS = 4
BODY_MIN = 1024
BODY_MAX = 256 * 1024
LOOKUP_SHARE = 0.5
RECENT_KEYS = 1024
TARGET_RATIO = 1.5


@dataclass
class Load:
    """Counters shared by the driving threads (updated under `lock`)."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    stores: int = 0
    lookups: int = 0
    hits: int = 0
    errors: int = 0
    stored_bytes: int = 0
    recent: deque[bytes] = field(default_factory=lambda: deque(maxlen=RECENT_KEYS))


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--churn-seconds",
        type=float,
        default=0.0,
        help="run the churn scenario for this long instead (RSS against the budget)",
    )
    p.add_argument("--budget", type=int, default=BUDGET, help="churn: memory_max_bytes")
    p.add_argument("--threads", type=int, default=THREADS, help="churn: client threads")
    p.add_argument("--sample-seconds", type=float, default=5.0, help="churn: RSS sample period")
    p.add_argument(
        "--sidecar-env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="churn: extra environment for the sidecar process (repeatable)",
    )


def log_uniform(rng: random.Random, low: int, high: int) -> int:
    return int(low * (high / low) ** rng.random())


_WORDS = (
    b"id name price currency items title brand stock rating review user text created "
    b"updated helpful sku image thumbnail page sort facets true false null"
).split()


def _text_corpus(rng: random.Random, size: int) -> bytes:
    """JSON-like text that compresses about 3-5x with zstd."""
    parts: list[bytes] = []
    n = 0
    while n < size:
        w = rng.choice(_WORDS)
        part = b'"%s":%d,' % (w, rng.randrange(100_000)) if rng.random() < 0.5 else w + b" "
        parts.append(part)
        n += len(part)
    return b"".join(parts)


def make_body(rng: random.Random, corpus: bytes, serial: int) -> bytes:
    """A body of log-uniform size; compressible (a corpus slice) or random, half each."""
    size = log_uniform(rng, BODY_MIN, BODY_MAX)
    head = b"%d:" % serial
    if rng.random() < 0.5:
        start = rng.randrange(len(corpus) - size)
        return head + corpus[start : start + size - len(head)]
    return head + rng.randbytes(size - len(head))


def start_sidecar(
    workdir: Path, budget: int, extra_env: dict[str, str]
) -> tuple[str, SidecarProcess]:
    """A sidecar with the memory tier only, serving on a unix socket in `workdir`."""
    listen = f"unix:{workdir}/churn.sock"
    env = clean_env()
    env.update(extra_env)
    sidecar = SidecarProcess(
        listen,
        env=env,
        metrics_listen="off",
        log_level="WARNING",
        settings={"memory_max_bytes": str(budget)},
        inherit_output=True,
    )
    return listen, sidecar.start()


def _drive(client: Any, seed: int, corpus: bytes, load: Load, stop: threading.Event) -> None:
    from strata.v1 import cache_pb2 as pb  # noqa: PLC0415

    from kong_plugin.client import SidecarError  # noqa: PLC0415

    rng = random.Random(seed)
    serial = seed * 1_000_000_000
    headers = [
        pb.Header(name=b"content-type", value=b"application/json"),
        pb.Header(name=b"cache-control", value=b"public, max-age=3600"),
    ]
    while not stop.is_set():
        try:
            if load.recent and rng.random() < LOOKUP_SHARE:
                key = load.recent[rng.randrange(len(load.recent))]
                hit = client.lookup(key).outcome == pb.OUTCOME_HIT
                with load.lock:
                    load.lookups += 1
                    load.hits += hit
                continue
            serial += 1
            key = b"v1:GET:churn.example:/items/%d" % serial
            body = make_body(rng, corpus, serial)
            entry = pb.Entry(status=200, headers=headers, body=body, ttl_ms=3_600_000)
            client.store(key, entry)
            with load.lock:
                load.stores += 1
                load.stored_bytes += len(body)
                load.recent.append(key)
        except SidecarError:
            with load.lock:
                load.errors += 1


def memory_tier_stats(listen: str) -> dict[str, int]:
    """The memory tier's bytes, entries and evictions, from the sidecar's Stats call."""
    import grpc  # noqa: PLC0415
    from strata.v1 import cache_pb2 as pb  # noqa: PLC0415
    from strata.v1 import cache_pb2_grpc as pb_grpc  # noqa: PLC0415

    with grpc.insecure_channel(listen) as channel:
        reply = pb_grpc.CacheServiceStub(channel).Stats(pb.StatsRequest(), timeout=5)
    memory = next(t for t in reply.tiers if t.name == "memory")
    return {"tier_bytes": memory.bytes, "entries": memory.entries, "evictions": memory.evictions}


def _warm_up(client: Any, threads: int) -> None:
    """The same calls on tiny bodies from every thread, then purge them: gRPC's streams and
    threads exist, the cache is empty again."""
    from strata.v1 import cache_pb2 as pb  # noqa: PLC0415

    def one(t: int) -> None:
        for i in range(50):
            key = b"warm:%d:%d" % (t, i)
            client.store(key, pb.Entry(status=200, body=b"x" * 64, ttl_ms=60_000))
            client.lookup(key)

    workers = [threading.Thread(target=one, args=(t,)) for t in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    client.invalidate(prefix=b"warm:")


def churn(
    seconds: float,
    budget: int = BUDGET,
    threads: int = THREADS,
    sample_seconds: float = 5.0,
    sidecar_env: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Run the scenario; the report (see the module docstring) as a dict."""
    from kong_plugin.client import SidecarClient  # noqa: PLC0415

    corpus = _text_corpus(random.Random(1), 2 * BODY_MAX)
    with tempfile.TemporaryDirectory(prefix="strata-churn-", dir="/tmp") as d:
        listen, proc = start_sidecar(Path(d), budget, sidecar_env or {})
        client = SidecarClient(listen, timeout_s=5.0)
        load, stop = Load(), threading.Event()
        samples: list[dict[str, Any]] = []
        try:
            _warm_up(client, threads)
            time.sleep(0.5)
            baseline = rss_bytes(proc.pid)
            workers = [
                threading.Thread(target=_drive, args=(client, t + 1, corpus, load, stop))
                for t in range(threads)
            ]
            start = time.monotonic()
            for w in workers:
                w.start()
            while (elapsed := time.monotonic() - start) < seconds:
                time.sleep(min(sample_seconds, max(0.0, seconds - elapsed)))
                rss = rss_bytes(proc.pid)
                tier = memory_tier_stats(listen)
                samples.append(
                    {
                        "t_s": round(time.monotonic() - start, 1),
                        "rss_bytes": rss,
                        "ratio": round((rss - baseline) / budget, 3),
                        "rss_over_counted": over_counted(rss - baseline, tier["tier_bytes"]),
                        "stores": load.stores,
                        **tier,
                    }
                )
            stop.set()
            for w in workers:
                w.join()
        finally:
            stop.set()
            client.close()
            proc.terminate()
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
    settings = {"threads": threads, "seconds": seconds, "sidecar_env": sidecar_env or {}}
    return _report(budget, baseline, load, samples, settings)


def over_counted(growth: int, counted: int) -> float | None:
    """RSS growth over the bytes the tier counts (None while it counts nothing)."""
    return round(growth / counted, 3) if counted > 0 else None


def _report(
    budget: int, baseline: int, load: Load, samples: list[dict[str, Any]], settings: dict[str, Any]
) -> dict[str, Any]:
    full = [s for s in samples if s["evictions"] > 0] or samples
    ratios = [s["ratio"] for s in full]
    half = len(ratios) // 2
    return {
        "scenario": "memory-churn",
        "budget_bytes": budget,
        "baseline_rss_bytes": baseline,
        "ratio_definition": "(RSS - baseline RSS of the empty, warmed-up process) / budget",
        **settings,
        "bodies": f"{BODY_MIN}-{BODY_MAX} bytes log-uniform, half compressible",
        "stores": load.stores,
        "lookups": load.lookups,
        "hits": load.hits,
        "errors": load.errors,
        "stored_mib": round(load.stored_bytes / 1024**2, 1),
        "final_rss_bytes": samples[-1]["rss_bytes"] if samples else baseline,
        "final_ratio": ratios[-1] if ratios else 0.0,
        "final_rss_over_counted": samples[-1]["rss_over_counted"] if samples else None,
        "max_ratio": max(ratios, default=0.0),
        "mean_ratio_first_half": round(_mean(ratios[:half]), 3),
        "mean_ratio_second_half": round(_mean(ratios[half:]), 3),
        "target_ratio": TARGET_RATIO,
        "meets_target": max(ratios, default=0.0) <= TARGET_RATIO,
        "samples": samples,
    }


def _mean(values: list[float]) -> float:
    return math.fsum(values) / len(values) if values else 0.0


def run(args: argparse.Namespace) -> int:
    env = dict(item.split("=", 1) for item in args.sidecar_env)
    report = churn(args.churn_seconds, args.budget, args.threads, args.sample_seconds, env)
    print(json.dumps(report, indent=2))
    return 0
