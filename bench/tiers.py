"""Sidecar Lookup hit per tier (memory, Redis, PostgreSQL) against a direct read of the value.

One run starts three sidecars, each answering from one tier: the default memory tier; Redis
behind a 1-byte memory tier (every entry is TOO_LARGE for memory, so Redis answers); and
PostgreSQL alone behind a 1-byte memory tier. One client process (grpc reads its settings at
import) seeds a 2 KB JSON-like entry through `SidecarClient`, checks that each sidecar
answers it from the intended tier, then measures sequential calls (p50, p99, ops/s) in
interleaved rounds against a direct read of the same stored value from the same server:
redis-py GET of ``<namespace>:e:<key>`` and a prepared psycopg SELECT from
``strata_entries``. The memory tier has no server to read directly; its baseline is the same
redis-py GET. Prints JSON with the ratios sidecar/direct. Needs `make services-up`.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.stats import median_of, summarize
from tools.stack import SidecarProcess, SidecarStartError

KEY = b"v1:bench:tiers:2k"
TIERS = ("memory", "redis", "postgres")
#: Direct read of each tier's value; "memory" has no server of its own.
DIRECT_SERIES = {"memory": "redis", "redis": "redis", "postgres": "postgres"}
DIRECT_IS = {
    "memory": "redis-py GET of the Redis tier's stored value (baseline: the memory tier "
    "has no server to read directly)",
    "redis": "redis-py GET <namespace>:e:<key> (the bytes the Redis tier stored)",
    "postgres": "psycopg SELECT value FROM strata_entries WHERE namespace AND key "
    "(autocommit, prepared, binary)",
}
PG_SELECT = "SELECT value FROM strata_entries WHERE namespace = %s AND key = %b"
#: Calls per series before the first round (connections, prepared statements, caches).
WARMUP = 300
#: A run fails when more than this share of one series' calls miss the intended tier.
MAX_OFF_TIER_SHARE = 0.01
SERVICES_HINT = "run `make services-up` first"


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


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--n", type=int, default=3000, help="sequential calls per series and round")
    p.add_argument("--rounds", type=int, default=5, help="interleaved rounds (median taken)")
    p.add_argument("--quick", action="store_true", help="small counts (smoke test)")


def _clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(("STRATA_", "GRPC_"))}


def _services_problem(redis_url: str, dsn: str) -> str | None:
    """Why the services cannot be used, or None if both answer."""
    if not redis_url or not dsn:
        return "no STRATA_TEST_REDIS_URL / STRATA_TEST_POSTGRES_DSN in the services env"
    import psycopg  # noqa: PLC0415
    import redis  # noqa: PLC0415

    try:
        redis.Redis.from_url(redis_url, socket_timeout=2, socket_connect_timeout=2).ping()
    except (redis.RedisError, OSError) as exc:
        return f"Redis at {redis_url} does not answer ({type(exc).__name__})"
    try:
        psycopg.connect(dsn, connect_timeout=3, autocommit=True).close()
    except psycopg.Error as exc:
        return f"PostgreSQL does not answer ({type(exc).__name__})"
    return None


def _sidecar(
    tier: str, listen: str, redis_url: str, dsn: str, ns: str, env: dict[str, str], log: Path
) -> SidecarProcess:
    settings = {"namespace": ns, "shared_min_hits": "0"}
    # Placement would keep a never-looked-up key out of Redis (one-hit wonders stay out of
    # shared RAM); this benchmark measures hit latency per tier, so every key may go there.
    if tier == "redis":
        settings |= {"memory_max_bytes": "0", "redis_url": redis_url}
    elif tier == "postgres":
        settings |= {"memory_max_bytes": "0", "postgres_dsn": dsn}
    return SidecarProcess(
        listen, env=env, metrics_listen="off", log_level="WARNING", settings=settings, log=log
    )


def _tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def _cleanup(redis_url: str, dsn: str, ns: str) -> None:
    """Best effort: drop what this run stored (the namespace is unique to it)."""
    import psycopg  # noqa: PLC0415
    import redis  # noqa: PLC0415

    prefix = ns.encode()
    try:
        r = redis.Redis.from_url(redis_url, socket_timeout=2, socket_connect_timeout=2)
        r.unlink(prefix + b":e:" + KEY, prefix + b":k:" + KEY)
    except (redis.RedisError, OSError):
        pass
    try:
        with psycopg.connect(dsn, connect_timeout=3, autocommit=True) as conn:
            conn.execute("DELETE FROM strata_entries WHERE namespace = %s", (ns,))
    except psycopg.Error:
        pass


def run(args: argparse.Namespace) -> int:
    if args.quick:
        args.n, args.rounds = 300, 2
    from tools.services import load_env  # noqa: PLC0415

    services = load_env()
    redis_url = services.get("STRATA_TEST_REDIS_URL", "")
    dsn = services.get("STRATA_TEST_POSTGRES_DSN", "")
    problem = _services_problem(redis_url, dsn)
    if problem is not None:
        print(
            f"bench tiers needs Redis and PostgreSQL: {problem}; {SERVICES_HINT}", file=sys.stderr
        )
        return 2
    ns = f"bench-tiers-{secrets.token_hex(4)}-{os.getpid()}"
    env = _clean_env()
    # SIGTERM (a CI timeout, `kill`) unwinds through the `finally` that stops the sidecars.
    previous = signal.signal(signal.SIGTERM, _exit_on_sigterm)
    try:
        measured = _run_sidecars_and_client(args, redis_url, dsn, ns, env)
    finally:
        signal.signal(signal.SIGTERM, previous)
    print(json.dumps(_report(measured, args, ns), indent=2))
    return 0


def _exit_on_sigterm(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


def _run_sidecars_and_client(
    args: argparse.Namespace, redis_url: str, dsn: str, ns: str, env: dict[str, str]
) -> dict[str, Any]:
    sidecars: dict[str, SidecarProcess] = {}
    with tempfile.TemporaryDirectory(prefix="strata-bench-", dir="/tmp") as d:
        work = Path(d)
        listens = {tier: f"unix:{work}/{tier}.sock" for tier in TIERS}
        logs = {tier: work / f"{tier}.log" for tier in TIERS}
        try:
            for tier in TIERS:  # all three start at once, then each is waited for
                sidecars[tier] = _sidecar(tier, listens[tier], redis_url, dsn, ns, env, logs[tier])
                sidecars[tier].spawn()
            for tier in TIERS:
                try:
                    sidecars[tier].wait_serving()
                except SidecarStartError as exc:
                    raise SystemExit(f"the {tier} sidecar did not start: {exc}") from None
            job = {
                "addresses": listens,
                "redis_url": redis_url,
                "postgres_dsn": dsn,
                "namespace": ns,
                "n": args.n,
                "rounds": args.rounds,
            }
            done = subprocess.run(
                [sys.executable, "-m", "bench.tiers"],
                input=json.dumps(job),
                env=env,
                capture_output=True,
                text=True,
                check=False,
                timeout=900,
            )
            if done.returncode != 0:
                logs_text = "\n".join(f"--- {t} sidecar\n{_tail(logs[t])}" for t in TIERS)
                raise SystemExit(
                    f"the client process failed ({done.returncode}):\n{done.stdout}\n"
                    f"{done.stderr}\n{logs_text}"
                )
            measured: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
        finally:
            for sidecar in sidecars.values():
                sidecar.terminate()
            for sidecar in sidecars.values():
                sidecar.stop()
            _cleanup(redis_url, dsn, ns)
    return measured


def _report(measured: dict[str, Any], args: argparse.Namespace, ns: str) -> dict[str, Any]:
    series: dict[str, list[dict[str, float]]] = measured["series"]
    tiers: dict[str, Any] = {}
    for tier in TIERS:
        side_runs, direct_runs = series[f"sidecar:{tier}"], series[f"direct:{DIRECT_SERIES[tier]}"]
        side, direct = median_of(side_runs), median_of(direct_runs)
        tiers[tier] = {
            "sidecar": side,
            "direct": direct,
            "direct_is": DIRECT_IS[tier],
            "p50_ratio": round(side["p50_us"] / direct["p50_us"], 2),
            "p99_ratio": round(side["p99_us"] / direct["p99_us"], 2),
            "ops_ratio": round(side["ops_s"] / direct["ops_s"], 2),
            "p50_added_us": round(side["p50_us"] - direct["p50_us"], 1),
            "rounds_p50_us": {
                "sidecar": [r["p50_us"] for r in side_runs],
                "direct": [r["p50_us"] for r in direct_runs],
            },
        }
        if tier in measured["stored_value_bytes"]:  # memory holds objects, not bytes
            tiers[tier]["stored_value_bytes"] = measured["stored_value_bytes"][tier]
    return {
        "scenario": "tiers",
        "body_bytes": len(BODY),
        "n": args.n,
        "rounds": args.rounds,
        "namespace": ns,
        "off_tier_calls": measured["off_tier"],
        "tiers": tiers,
    }


# -- the client process (`python -m bench.tiers`, job as JSON on stdin) ----------------------


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


def _worker(job: dict[str, Any]) -> int:
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
    sys.exit(_worker(json.loads(sys.stdin.read())))
