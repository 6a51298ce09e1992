"""Bytes per cached response in the RAM tiers, Strata against Kong proxy-cache's layout.

A seeded corpus of JSON API responses (1-20 KB): product pages and listing pages with shared
structure (near-duplicates differing in ids, prices and timestamps), public bodies cached
once per consumer (per-consumer keys, identical bodies) and query-order variants of one URL
(different keys, identical bodies); built by `bench.memory_corpus`. The composition is
printed with the results.

Baseline, the layout of Kong's proxy-cache (reference/anchors.md 1.5): per key one JSON
document ``{status, headers, body (text), body_len, timestamp, ttl, version, req_body}``,
raw body, no dedup. It is measured as its length (memory: what the shared dict's value
holds, without the dict's node overhead, which favours the baseline) and, with Redis, as
the server's ``MEMORY USAGE`` of the naive JSON SET under a namespace of its own.

Strata is measured (a) in the memory tier: `snapshot().bytes` (the deduplicated estimate,
per-entry overhead included) after storing the corpus through a real `Engine` with a large
budget, and (b) in Redis: the sum of ``MEMORY USAGE`` of every key the run's namespace holds
(entries and shared bodies). Compression and dedup are separated by a middle layout:
"compression only" is, in memory, what the policy is charged (each key with its own
compressed body) and, in Redis, `codec.encode` of every entry SET under a third namespace
(the inline layout: compressed body, no dedup). Also measured: the decompression a memory
hit of a 2 KB JSON body pays (the `bench tiers` body), against a hit of an incompressible
body of the same size (stored raw) in the same run. Every key is removed at the end.
Needs Redis from `make services-up` for (b); without it only the memory tier is reported.

Also measured where the memory is paid (`bench.memory_paid`): a real sidecar's RSS growth
per response stored through gRPC (memory tier only) against the tier's own count and the
naive bytes, and Redis' ``used_memory`` growth per response stored by a real sidecar (Redis
tier only) against the naive layout SET directly; and where the tier's heap goes, component
by component (`bench.memory_breakdown`). The JSON ends with the headline rows
(`bench.memory_report`).

With ``--churn-seconds N`` it runs another scenario instead: a real sidecar's resident set
against its memory budget under N seconds of churn (`bench.churn`).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import secrets
import statistics
import time
from typing import Any

from bench import churn
from bench.memory_breakdown import breakdown
from bench.memory_corpus import TTL_MS, Item, build_corpus, naive_value
from bench.memory_paid import log, redis_used_memory, sidecar_rss
from bench.memory_report import headline
from sidecar.core.clock import SystemClock
from sidecar.core.model import CachedResponse, StoreStatus
from sidecar.engine.engine import Engine
from sidecar.tiers import codec
from sidecar.tiers.base import Tier
from sidecar.tiers.memory import MemoryTier

#: Responses in the default corpus.
RESPONSES = 2000
QUICK_RESPONSES = 1000
#: Rounds of the Redis used_memory measurement (the median is reported).
REDIS_ROUNDS = 3
TARGET_RATIO = 0.3
TIMING_N = 20_000
QUICK_TIMING_N = 2_000
MEMORY_BUDGET = 1 << 30


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--responses", type=int, default=RESPONSES, help="cached responses")
    p.add_argument("--seed", type=int, default=20260611, help="corpus seed")
    p.add_argument("--quick", action="store_true", help="small corpus (smoke test)")
    p.add_argument(
        "--redis-rounds", type=int, default=REDIS_ROUNDS, help="rounds of the used_memory measure"
    )
    churn.add_arguments(p)


def _timing_ns(fn: Any, n: int) -> float:
    """Median over 5 batches of the mean ns per call."""
    for _ in range(min(n, 500)):
        fn()
    batches = []
    per = max(1, n // 5)
    for _ in range(5):
        start = time.perf_counter_ns()
        for _ in range(per):
            fn()
        batches.append((time.perf_counter_ns() - start) / per)
    return statistics.median(batches)


def measure_decompression(n: int) -> dict[str, Any]:
    """A memory hit of a 2 KB compressible JSON body against one of an incompressible body
    of the same length (stored raw), and the zstd decompression alone."""
    from bench.tiers_worker import BODY  # noqa: PLC0415  (the `bench tiers` 2 KB body)

    clock = SystemClock()
    compressed = MemoryTier(1 << 24, clock, admission="always")
    plain = MemoryTier(1 << 24, clock, admission="always")
    now = clock.now_ms()
    raw_body = random.Random(7).randbytes(len(BODY))
    asyncio.run(compressed.set(b"k", CachedResponse(200, (), BODY, now, TTL_MS)))
    asyncio.run(plain.set(b"k", CachedResponse(200, (), raw_body, now, TTL_MS)))
    frame, was_compressed = codec.compress_body(BODY)
    assert was_compressed and compressed.get_now(b"k") is not None
    hit_compressed = _timing_ns(lambda: compressed.get_now(b"k"), n)
    hit_raw = _timing_ns(lambda: plain.get_now(b"k"), n)
    decompress = _timing_ns(lambda: codec.decompress_body(frame, len(BODY)), n)
    return {
        "body_bytes": len(BODY),
        "stored_bytes": len(frame),
        "hit_compressed_us": round(hit_compressed / 1000, 2),
        "hit_uncompressed_us": round(hit_raw / 1000, 2),
        "hit_added_us": round((hit_compressed - hit_raw) / 1000, 2),
        "decompress_only_us": round(decompress / 1000, 2),
    }


async def _store_all(engine: Engine, corpus: list[Item]) -> None:
    for item in corpus:
        result = await engine.store(item.key, item.entry)
        if result.status is not StoreStatus.STORED:
            raise RuntimeError(f"store of {item.key!r} answered {result.status.value}")
    for item in corpus[:: max(1, len(corpus) // 50)]:  # spot-check what reads back
        found = await engine.lookup(item.key)
        if found.entry is None or found.entry.body != item.entry.body:
            raise RuntimeError(f"{item.key!r} did not read back")


async def _memory_usage(client: Any, pattern: bytes) -> tuple[int, int]:
    """(keys, sum of MEMORY USAGE) over the keys matching `pattern`."""
    names = [bytes(k) async for k in client.scan_iter(match=pattern, count=1000)]
    total = 0
    for i in range(0, len(names), 500):
        pipe = client.pipeline(transaction=False)
        for name in names[i : i + 500]:
            pipe.execute_command("MEMORY", "USAGE", name, "SAMPLES", "0")
        total += sum(int(x or 0) for x in await pipe.execute())
    return len(names), total


async def _unlink_all(client: Any, pattern: bytes) -> None:
    names = [bytes(k) async for k in client.scan_iter(match=pattern, count=1000)]
    for i in range(0, len(names), 500):
        await client.unlink(*names[i : i + 500])


def _split(naive: int, compressed_only: int, strata: int) -> dict[str, Any]:
    return {
        "naive_bytes": naive,
        "compression_only_bytes": compressed_only,
        "strata_bytes": strata,
        "ratio": round(strata / naive, 4),
        "meets_target": strata / naive <= TARGET_RATIO,
        "share_saved_by_layout_and_compression": round((naive - compressed_only) / naive, 4),
        "share_saved_by_dedup": round((compressed_only - strata) / naive, 4),
    }


async def _measure(corpus: list[Item], redis_url: str, ns: str) -> dict[str, Any]:
    clock = SystemClock()
    memory = MemoryTier(MEMORY_BUDGET, clock, admission="always")
    tiers: list[Tier] = [memory]
    out: dict[str, Any] = {}
    redis_tier = client = None
    if redis_url:
        import redis.asyncio  # noqa: PLC0415

        from sidecar.tiers.redis import BODY_REF_MIN_BYTES, RedisTier  # noqa: PLC0415

        redis_tier = RedisTier(redis_url, clock, namespace=ns + "-strata", timeout_s=2.0)
        await redis_tier.open()
        tiers.append(redis_tier)
        client = redis.asyncio.Redis.from_url(redis_url, socket_timeout=10)
    patterns = [f"{ns}-{side}:*".encode() for side in ("strata", "naive", "comp")]
    try:
        await _store_all(Engine(tiers, clock), corpus)
        snap = memory.snapshot()
        naive_len = sum(len(naive_value(i)) for i in corpus)
        raw_charge = sum(i.entry.size_bytes(len(i.key)) for i in corpus)
        out["memory"] = {
            "entries": snap.entries,
            "distinct_bodies": len(memory.body_pool),
            "uncompressed_no_dedup_bytes": raw_charge,
            **_split(naive_len, memory.charged_bytes, snap.bytes),
        }
        if client is not None:
            pipe = client.pipeline(transaction=False)
            for item in corpus:
                pipe.set(f"{ns}-naive:".encode() + item.key, naive_value(item), px=TTL_MS)
                pipe.set(f"{ns}-comp:e:".encode() + item.key, codec.encode(item.entry), px=TTL_MS)
            await pipe.execute()
            s_keys, s_bytes = await _memory_usage(client, patterns[0])
            b_keys, _ = await _memory_usage(client, f"{ns}-strata:b:*".encode())
            _, n_bytes = await _memory_usage(client, patterns[1])
            _, c_bytes = await _memory_usage(client, patterns[2])
            out["redis"] = {
                "keys": s_keys,
                "body_keys": b_keys,
                "body_ref_min_bytes": BODY_REF_MIN_BYTES,
                **_split(n_bytes, c_bytes, s_bytes),
            }
    finally:
        if client is not None:
            for pattern in patterns:
                await _unlink_all(client, pattern)
            await client.aclose()
        if redis_tier is not None:
            await redis_tier.close()
    return out


def run(args: argparse.Namespace) -> int:
    if args.churn_seconds > 0:
        return churn.run(args)
    responses = QUICK_RESPONSES if args.quick else args.responses
    from tools.services import load_env  # noqa: PLC0415

    redis_url = load_env().get("STRATA_TEST_REDIS_URL", "")
    corpus = build_corpus(responses, args.seed, SystemClock().now_ms())
    ns = f"bench-memory-{secrets.token_hex(4)}-{os.getpid()}"
    kinds = {
        k: sum(1 for i in corpus if i.kind == k)
        for k in ("unique", "query_variant", "per_consumer")
    }
    bodies = {codec.body_digest(i.entry.body): len(i.entry.body) for i in corpus}
    log(f"{len(corpus)} responses: counted bytes (in process)")
    measured = asyncio.run(_measure(corpus, redis_url, ns))
    naive_per_response = sum(len(naive_value(i)) for i in corpus) / len(corpus)
    log("where the tier's heap goes (tracemalloc, in process)")
    heap = breakdown(corpus)
    log("a real sidecar's RSS")
    paid: dict[str, Any] = {"sidecar_rss": sidecar_rss(corpus, round(naive_per_response, 1))}
    rss = paid["sidecar_rss"]
    paid["sidecar_rss"]["heap_bytes_per_response"] = heap["heap_bytes_per_response"]
    paid["sidecar_rss"]["rss_over_heap"] = round(
        rss["rss_bytes_per_response"] / heap["heap_bytes_per_response"], 4
    )
    if redis_url:
        log("Redis used_memory")
        rounds = 1 if args.quick else args.redis_rounds
        paid["redis_used_memory"] = redis_used_memory(corpus, redis_url, ns, rounds)
    report: dict[str, Any] = {
        "scenario": "memory",
        "quick": bool(args.quick),
        "seed": args.seed,
        "corpus": {
            "responses": len(corpus),
            "keys_by_kind": kinds,
            "distinct_bodies": len(bodies),
            "body_bytes_min": min(bodies.values()),
            "body_bytes_max": max(bodies.values()),
            "body_bytes_mean": round(sum(len(i.entry.body) for i in corpus) / len(corpus)),
        },
        "baseline": "Kong proxy-cache layout: json of {status, headers, body, body_len, "
        "timestamp, ttl, version, req_body} per key, raw body, no dedup",
        "target_ratio": TARGET_RATIO,
        **measured,
        "per_response_bytes": {
            tier: {
                "naive": round(measured[tier]["naive_bytes"] / len(corpus)),
                "strata": round(measured[tier]["strata_bytes"] / len(corpus)),
            }
            for tier in ("memory", "redis")
            if tier in measured
        },
        "decompression_2kb_hit": measure_decompression(QUICK_TIMING_N if args.quick else TIMING_N),
        "paid": paid,
        "heap_breakdown": heap,
    }
    if "redis" not in measured:
        report["redis_skipped"] = "STRATA_TEST_REDIS_URL not in the services env (make services-up)"
    report["headline"] = headline(report)
    print(json.dumps(report, indent=2))
    return 0
