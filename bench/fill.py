"""Sidecar RSS against its memory budget once filled: `python -m bench.fill [PATTERN ...]`.

A real sidecar process (memory tier only, `--budget` bytes) is started, warmed up with a
few tiny entries (then purged), and its resident set read: the baseline. Then it is filled
through its gRPC API from two client threads with one pattern, beyond its budget so that it
evicts, and its resident set read again. The figure is ``(RSS - baseline) / budget``.

Patterns (each key distinct, TTL one hour, two response headers):

* ``tags``: 256 distinct tags of ~25 characters per entry, a 100-byte body (the tag index
  dominates);
* ``small``: 64-byte random bodies (the per-entry structures dominate);
* ``mid``: random bodies of 4-32 KiB (the bodies dominate).

What it does not measure: RSS of a sidecar that has run for days (fragmentation can grow
under other mixes; `python -m bench memory --churn-seconds` runs a long churn), or tiers
other than memory.
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from bench.churn import memory_tier_stats, start_sidecar
from bench.procs import rss_bytes

BUDGET = 32 * 1024**2
THREADS = 2
#: Stores per pattern by default: each several times what the budget holds.
STORES = {"tags": 2000, "small": 40_000, "mid": 6000}
TAGS_PER_ENTRY = 256
TARGET_RATIO = 1.5


def _entry(pattern: str, i: int, rng: random.Random) -> Any:
    from strata.v1 import cache_pb2 as pb  # noqa: PLC0415

    headers = [
        pb.Header(name=b"content-type", value=b"application/json"),
        pb.Header(name=b"cache-control", value=b"public, max-age=3600"),
    ]
    if pattern == "tags":
        tags = [f"product-{i}-{j}-{rng.getrandbits(32):08x}" for j in range(TAGS_PER_ENTRY)]
        return pb.Entry(status=200, headers=headers, body=b"{}" * 50, ttl_ms=3_600_000, tags=tags)
    if pattern == "small":
        return pb.Entry(status=200, headers=headers, body=rng.randbytes(64), ttl_ms=3_600_000)
    if pattern == "mid":
        body = rng.randbytes(rng.randint(4096, 32768))
        return pb.Entry(status=200, headers=headers, body=body, ttl_ms=3_600_000)
    raise ValueError(f"unknown pattern {pattern!r}")


def fill(pattern: str, stores: int | None = None, budget: int = BUDGET) -> dict[str, Any]:
    """Fill a fresh sidecar with `stores` entries of `pattern`; the report as a dict."""
    from strata.v1 import cache_pb2 as pb  # noqa: PLC0415

    from kong_plugin.client import SidecarClient  # noqa: PLC0415

    count = STORES[pattern] if stores is None else stores
    errors: list[str] = []
    with tempfile.TemporaryDirectory(prefix="strata-fill-", dir="/tmp") as d:
        listen, proc = start_sidecar(Path(d), budget, {})
        client = SidecarClient(listen, timeout_s=10.0)
        try:
            for i in range(100):
                warm = pb.Entry(status=200, body=b"x" * 64, ttl_ms=60_000, tags=[f"w{i}"])
                client.store(b"warm:%d" % i, warm)
                client.lookup(b"warm:%d" % i)
            client.invalidate(prefix=b"warm:")
            time.sleep(0.5)
            baseline = rss_bytes(proc.pid)

            def work(t: int) -> None:
                rng = random.Random(t)
                for i in range(t, count, THREADS):
                    key = b"v1:GET:fill.example:/items/%d?page=1" % i
                    try:
                        client.store(key, _entry(pattern, i, rng))
                    except Exception as exc:  # reported, never hidden
                        errors.append(repr(exc))

            start = time.monotonic()
            workers = [threading.Thread(target=work, args=(t,)) for t in range(THREADS)]
            for w in workers:
                w.start()
            for w in workers:
                w.join()
            seconds = time.monotonic() - start
            time.sleep(0.5)
            rss = rss_bytes(proc.pid)
            tier = memory_tier_stats(listen)
        finally:
            client.close()
            proc.terminate()
            proc.wait(15)
    return {
        "scenario": "memory-fill",
        "pattern": pattern,
        "stores": count,
        "budget_bytes": budget,
        "seconds": round(seconds, 1),
        "baseline_rss_bytes": baseline,
        "rss_bytes": rss,
        "ratio": round((rss - baseline) / budget, 3),
        "ratio_definition": "(RSS filled - RSS of the warmed-up empty process) / budget",
        "target_ratio": TARGET_RATIO,
        "errors": len(errors),
        "first_error": errors[0] if errors else "",
        **tier,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.fill", description=__doc__)
    p.add_argument("patterns", nargs="*", metavar="PATTERN", help="tags, small, mid (default: all)")
    p.add_argument("--budget", type=int, default=BUDGET, help="memory_max_bytes")
    p.add_argument("--stores", type=int, default=None, help="stores per pattern")
    args = p.parse_args(argv)
    unknown = set(args.patterns) - set(STORES)
    if unknown:
        p.error(f"unknown pattern(s) {sorted(unknown)}: use {', '.join(STORES)}")
    for pattern in args.patterns or list(STORES):
        print(json.dumps(fill(pattern, args.stores, args.budget)), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
