"""Client side of `python -m bench tiers`, run in a process of its own: `python -m
bench.tiers_worker`, the job as JSON on stdin (addresses, Redis URL, PostgreSQL DSN,
namespace, n, rounds).

grpc reads its settings once at import, so the client runs in a fresh process. It seeds the
2 KB entry (`BODY` under `KEY`) through each sidecar, checks that each answers it from the
intended tier and that Redis and PostgreSQL hold it, then times interleaved rounds of
sequential sidecar Lookups and direct reads of the stored value. Prints one JSON line:
per series the summary of each round, the calls answered from another tier, the stored
value's size per server. Exits 1 with a message on stderr when a check fails.

Not guaranteed: the order of series within a round is rotated, not randomised; a series
that shares the machine with a busy neighbour is slower in every round alike.
"""

from __future__ import annotations

import json
import random
import sys
import time
from collections.abc import Callable
from typing import Any

from bench.stats import summarize

#: The benchmark entry's key, and the tiers measured (one sidecar each).
KEY = b"v1:bench:tiers:2k"
TIERS = ("memory", "redis", "postgres")
PG_SELECT = "SELECT value FROM strata_entries WHERE namespace = %s AND key = %b"
#: Calls per series before the first round (connections, prepared statements, caches).
WARMUP = 300
#: A run fails when more than this share of one series' calls miss the intended tier.
MAX_OFF_TIER_SHARE = 0.01


def _json_body(size: int = 2048) -> bytes:
    """A deterministic JSON document of exactly `size` bytes that compresses like an API
    response (random ids and prices, repeated field names), not like a run of one byte."""
    rng = random.Random(2048)
    words = ["alpha", "bravo", "delta", "kilo", "lima", "sierra", "tango", "zulu"]
    head, tail = b'{"items":[', b'],"cursor":"'
    items: list[bytes] = []
    while True:
        item = json.dumps(
            {
                "id": rng.randrange(10**9),
                "sku": f"{rng.getrandbits(48):012x}",
                "name": " ".join(rng.choice(words) for _ in range(2)),
                "price": round(rng.uniform(1, 500), 2),
                "stock": rng.random() < 0.7,
            },
            separators=(",", ":"),
        ).encode()
        if len(head) + len(b",".join([*items, item])) + len(tail) + 2 + 16 > size:
            break
        items.append(item)
    doc = head + b",".join(items) + tail
    pad = size - len(doc) - 2
    return doc + f"{rng.getrandbits(4 * pad):0{pad}x}".encode()[:pad] + b'"}'


BODY = _json_body()


def _sequential(
    fn: Callable[[], object], ok: Callable[[Any], bool], n: int
) -> tuple[dict[str, float], int]:
    """`n` timed calls; the summary and how many answers failed `ok` (checked outside
    each call's latency, inside the ops/s of every series alike)."""
    lat = [0.0] * n
    bad = 0
    t_start = time.perf_counter()
    for i in range(n):
        t0 = time.perf_counter()
        answer = fn()
        lat[i] = time.perf_counter() - t0
        if not ok(answer):
            bad += 1
    return summarize(lat, time.perf_counter() - t_start), bad


def main(job: dict[str, Any]) -> int:
    """Run `job`; 0 after printing the measurements, 1 when a check fails."""
    # `strata` first: it applies the transport defaults, which grpc reads only at import.
    import strata  # noqa: PLC0415, F401

    # isort: split
    import psycopg  # noqa: PLC0415
    import redis  # noqa: PLC0415
    from strata.v1 import cache_pb2 as pb  # noqa: PLC0415

    from kong_plugin.client import SidecarClient  # noqa: PLC0415
    from sidecar.tiers import codec  # noqa: PLC0415

    ns: str = job["namespace"]
    clients = {t: SidecarClient(job["addresses"][t], timeout_s=5.0) for t in TIERS}
    entry = pb.Entry(
        status=200,
        body=BODY,
        ttl_ms=3_600_000,
        headers=[
            pb.Header(name=b"content-type", value=b"application/json"),
            pb.Header(name=b"cache-control", value=b"max-age=3600"),
        ],
    )
    for tier, client in clients.items():
        result = client.store(KEY, entry).result
        if result != pb.STORE_RESULT_STORED:
            return _fail(f"the {tier} sidecar answered Store with {pb.StoreResult.Name(result)}")

    r = redis.Redis.from_url(job["redis_url"])
    redis_key = ns.encode() + b":e:" + KEY
    conn = psycopg.connect(job["postgres_dsn"], autocommit=True)
    cur = conn.cursor(binary=True)
    pg_params = (ns, KEY)

    def pg_get() -> Any:
        cur.execute(PG_SELECT, pg_params, prepare=True)
        return cur.fetchone()

    stored = {"redis": r.get(redis_key), "postgres": (pg_get() or [None])[0]}
    sizes: dict[str, int] = {}
    for tier, raw in stored.items():
        if raw is None:
            return _fail(f"no value under {ns}:e:<key> in {tier}: the sidecar did not store it")
        if codec.decode(bytes(raw)).body != BODY:
            return _fail(f"the value read from {tier} is not the benchmark entry")
        sizes[tier] = len(raw)
    for tier, client in clients.items():
        probe = client.lookup(KEY)
        if probe.outcome != pb.OUTCOME_HIT or probe.tier != tier or probe.entry.body != BODY:
            return _fail(
                f"the {tier} sidecar answered {pb.Outcome.Name(probe.outcome)} from tier "
                f"{probe.tier!r}, not a hit from {tier!r}"
            )

    def sidecar_series(tier: str) -> tuple[Callable[[], object], Callable[[Any], bool]]:
        lookup = clients[tier].lookup
        return (lambda: lookup(KEY)), (lambda a: a.outcome == pb.OUTCOME_HIT and a.tier == tier)

    fns: dict[str, tuple[Callable[[], object], Callable[[Any], bool]]] = {
        f"sidecar:{t}": sidecar_series(t) for t in TIERS
    }
    fns["direct:redis"] = ((lambda: r.get(redis_key)), (lambda a: a is not None))
    fns["direct:postgres"] = (pg_get, (lambda a: a is not None))

    names = list(fns)
    for name in names:
        _sequential(*fns[name], WARMUP)
    runs: dict[str, list[dict[str, float]]] = {name: [] for name in names}
    off_tier = dict.fromkeys(names, 0)
    for i in range(job["rounds"]):
        shift = i % len(names)  # rotate the order: no series always runs first or last
        for name in names[shift:] + names[:shift]:
            summary, bad = _sequential(*fns[name], job["n"])
            runs[name].append(summary)
            off_tier[name] += bad
    for client in clients.values():
        client.close()
    conn.close()
    r.close()
    worst = max(off_tier.values()) / max(1, job["n"] * job["rounds"])
    if worst > MAX_OFF_TIER_SHARE:
        return _fail(f"too many calls were not answered by the intended tier: {off_tier}")
    print(json.dumps({"series": runs, "off_tier": off_tier, "stored_value_bytes": sizes}))
    return 0


def _fail(message: str) -> int:
    print(message, file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main(json.loads(sys.stdin.read())))
