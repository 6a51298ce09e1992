"""The corpus of `python -m bench memory`, and the baseline layout it is measured against.

`build_corpus` makes a seeded list of JSON API responses (1-20 KB): product pages and
listing pages with shared structure (near-duplicates differing in ids, prices and
timestamps), public bodies cached once per consumer (per-consumer keys, identical bodies)
and query-order variants of one URL (different keys, identical bodies). `naive_value` is the
value Kong's proxy-cache would store for one of them (reference/anchors.md 1.5): one JSON
document ``{status, headers, body (text), body_len, timestamp, ttl, version, req_body}``.

Not guaranteed: that the corpus resembles any particular API; its shares of each kind are
the constants below, and the same seed gives the same corpus only on the same Python.
"""

from __future__ import annotations

import itertools
import json
import random
import time
from dataclasses import dataclass
from typing import Any

from sidecar.core.model import CachedResponse

#: Shares of the corpus' keys.
SHARE_PER_CONSUMER = 0.25
SHARE_QUERY_VARIANTS = 0.20
CONSUMERS_PER_PUBLIC_BODY = 25
VARIANTS_PER_URL = 2
#: Every entry's time to live.
TTL_MS = 3_600_000

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
