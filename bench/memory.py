"""Bytes per cached response in the RAM tiers, Strata against Kong proxy-cache's layout.

A seeded corpus of JSON API responses (1-20 KB): product pages and listing pages with shared
structure (near-duplicates differing in ids, prices and timestamps), public bodies cached
once per consumer (per-consumer keys, identical bodies) and query-order variants of one URL
(different keys, identical bodies). The composition is printed with the results.

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

With ``--churn-seconds N`` it runs another scenario instead: a real sidecar's resident set
against its memory budget under N seconds of churn (`bench.churn`).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import random
import secrets
import statistics
import time
from dataclasses import dataclass
from typing import Any

from bench import churn
from sidecar.core.clock import SystemClock
from sidecar.core.model import CachedResponse, StoreStatus
from sidecar.engine.engine import Engine
from sidecar.tiers import codec
from sidecar.tiers.base import Tier
from sidecar.tiers.memory import MemoryTier

#: Responses in the default corpus and its shares of keys.
RESPONSES = 2000
QUICK_RESPONSES = 200
SHARE_PER_CONSUMER = 0.25
SHARE_QUERY_VARIANTS = 0.20
CONSUMERS_PER_PUBLIC_BODY = 25
VARIANTS_PER_URL = 2
TTL_MS = 3_600_000
TARGET_RATIO = 0.3
TIMING_N = 20_000
QUICK_TIMING_N = 2_000
MEMORY_BUDGET = 1 << 30

_VOCABULARY = (
    "the quick brown fox jumps over lazy dog cotton steel wireless compact premium "
    "durable lightweight classic modern organic soft adjustable waterproof portable "
    "ergonomic smart kitchen garden office outdoor travel sport home kids women men "
    "vintage eco black white blue red green grey small medium large pack set kit edition "
    "series pro max mini ultra"
)
WORDS = tuple(str.split(_VOCABULARY))
BRANDS = ("Acme", "Globex", "Initech", "Umbrella", "Stark", "Wayne", "Hooli", "Vandelay")
CURRENCIES = ("EUR", "USD", "GBP")


@dataclass(frozen=True, slots=True)
class Item:
    key: bytes
    entry: CachedResponse
    kind: str


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--responses", type=int, default=RESPONSES, help="cached responses")
    p.add_argument("--seed", type=int, default=20260611, help="corpus seed")
    p.add_argument("--quick", action="store_true", help="small corpus (smoke test)")
    churn.add_arguments(p)


def _text(rng: random.Random, words: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(words))


def _stamp(rng: random.Random) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(1_780_000_000 + rng.randrange(10**7)))


def _product(rng: random.Random, pid: int, size: int) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "id": pid,
        "sku": f"SKU-{rng.getrandbits(40):010X}",
        "title": _text(rng, 6).title(),
        "brand": rng.choice(BRANDS),
        "price": {"amount": round(rng.uniform(2, 900), 2), "currency": rng.choice(CURRENCIES)},
        "updated_at": _stamp(rng),
        "in_stock": rng.random() < 0.8,
        "description": _text(rng, 40),
        "attributes": [
            {"name": rng.choice(WORDS), "value": _text(rng, 2)} for _ in range(rng.randint(4, 10))
        ],
        "images": [
            f"https://cdn.example.com/img/{pid}/{i}-{rng.getrandbits(32):08x}.jpg"
            for i in range(rng.randint(2, 6))
        ],
        "reviews": [],
    }
    while len(json.dumps(doc)) < size:
        doc["reviews"].append(
            {
                "id": rng.getrandbits(48),
                "user": f"user{rng.randrange(10**6)}",
                "rating": rng.randint(1, 5),
                "created_at": _stamp(rng),
                "text": _text(rng, rng.randint(8, 30)),
                "helpful": rng.randrange(200),
            }
        )
    return doc


def _listing(rng: random.Random, page: int, size: int) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "page": page,
        "per_page": 0,
        "generated_at": _stamp(rng),
        "items": [],
        "facets": {"brand": {b: rng.randrange(500) for b in BRANDS}},
    }
    while len(json.dumps(doc)) < size:
        doc["items"].append(
            {
                "id": rng.randrange(10**7),
                "sku": f"SKU-{rng.getrandbits(40):010X}",
                "title": _text(rng, 5).title(),
                "price": {"amount": round(rng.uniform(2, 900), 2), "currency": "EUR"},
                "rating": round(rng.uniform(1, 5), 1),
                "in_stock": rng.random() < 0.8,
                "thumbnail": f"https://cdn.example.com/t/{rng.getrandbits(32):08x}.jpg",
            }
        )
    doc["per_page"] = len(doc["items"])
    return doc


def _size(rng: random.Random, low: int, high: int) -> int:
    """Log-uniform in [low, high]: many small responses, a tail of large ones."""
    return int(low * (high / low) ** rng.random())


def _entry(rng: random.Random, body: bytes, now_ms: int) -> CachedResponse:
    headers = (
        (b"content-type", b"application/json; charset=utf-8"),
        (b"cache-control", b"public, max-age=3600"),
        (b"etag", f'W/"{rng.getrandbits(64):016x}"'.encode()),
        (b"date", b"Thu, 11 Jun 2026 10:00:00 GMT"),
        (b"x-request-id", f"{rng.getrandbits(128):032x}".encode()),
        (b"vary", b"Accept-Encoding"),
    )
    return CachedResponse(200, headers, body, now_ms, TTL_MS)


def _key(path: str, query: list[tuple[str, str]]) -> bytes:
    qs = "&".join(f"{k}={v}" for k, v in query)
    return f"v1:GET:api.example.com:{path}?{qs}".encode()


def build_corpus(responses: int, seed: int, now_ms: int) -> list[Item]:
    """`responses` keys: unique product/listing bodies, per-consumer copies of public
    bodies, and query-order variants of unique URLs (see the module docstring)."""
    rng = random.Random(seed)
    per_consumer = round(responses * SHARE_PER_CONSUMER)
    variants = round(responses * SHARE_QUERY_VARIANTS)
    unique = responses - per_consumer - variants
    items: list[Item] = []
    urls: list[tuple[str, list[tuple[str, str]], CachedResponse]] = []
    for i in range(unique):
        if rng.random() < 0.7:
            pid = 100_000 + i
            body = json.dumps(_product(rng, pid, _size(rng, 1024, 20 * 1024)))
            path = f"/products/{pid}"
            query = [("fields", "full"), ("locale", "en-GB"), ("currency", "EUR")]
        else:
            body = json.dumps(_listing(rng, i, _size(rng, 5 * 1024, 20 * 1024)))
            path = f"/categories/{rng.randrange(40)}/items"
            query = [("page", str(i)), ("sort", "price"), ("per_page", "50")]
        entry = _entry(rng, body.encode(), now_ms)
        items.append(Item(_key(path, query), entry, "unique"))
        urls.append((path, query, entry))
    # query-order variants: the same URL with its parameters in another order
    for path, query, entry in rng.sample(urls, k=min(len(urls), variants // VARIANTS_PER_URL)):
        orders = [list(p) for p in itertools.permutations(query) if list(p) != query]
        for order in orders[:VARIANTS_PER_URL]:
            if len(items) < unique + variants:
                items.append(Item(_key(path, order), entry, "query_variant"))
    # public bodies cached once per consumer (the consumer is part of the key)
    publics = max(1, per_consumer // CONSUMERS_PER_PUBLIC_BODY)
    bodies = [
        _entry(
            rng, json.dumps(_listing(rng, 10_000 + i, _size(rng, 2048, 12 * 1024))).encode(), now_ms
        )
        for i in range(publics)
    ]
    for n in range(responses - len(items)):
        entry = bodies[n % publics]
        path = f"/featured/{n % publics}"
        items.append(
            Item(_key(path, [("consumer", f"c{n // publics:04d}")]), entry, "per_consumer")
        )
    return items


def naive_value(item: Item) -> bytes:
    """Kong proxy-cache's stored value for a response: one JSON document, raw body."""
    e = item.entry
    doc = {
        "status": e.status,
        "headers": {n.decode(): v.decode() for n, v in e.headers},
        "body": e.body.decode(),
        "body_len": len(e.body),
        "timestamp": e.stored_at_ms // 1000,
        "ttl": e.ttl_ms // 1000,
        "version": 1,
        "req_body": "",
    }
    return json.dumps(doc, separators=(",", ":")).encode()


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
    from bench.tiers import BODY  # noqa: PLC0415  (the `bench tiers` 2 KB body)

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


async def _measure(corpus: list[Item], redis_url: str) -> dict[str, Any]:
    clock = SystemClock()
    memory = MemoryTier(MEMORY_BUDGET, clock, admission="always")
    tiers: list[Tier] = [memory]
    out: dict[str, Any] = {}
    redis_tier = client = None
    ns = f"bench-memory-{secrets.token_hex(4)}-{os.getpid()}"
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
    kinds = {
        k: sum(1 for i in corpus if i.kind == k)
        for k in ("unique", "query_variant", "per_consumer")
    }
    bodies = {codec.body_digest(i.entry.body): len(i.entry.body) for i in corpus}
    measured = asyncio.run(_measure(corpus, redis_url))
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
    }
    if "redis" not in measured:
        report["redis_skipped"] = "STRATA_TEST_REDIS_URL not in the services env (make services-up)"
    print(json.dumps(report, indent=2))
    return 0
