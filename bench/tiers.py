"""Sidecar Lookup hit per tier (memory, Redis, PostgreSQL) against a direct read of the value.

One run starts three sidecars, each answering from one tier: the default memory tier; Redis
behind a 1-byte memory tier (every entry is TOO_LARGE for memory, so Redis answers); and
PostgreSQL alone behind a 1-byte memory tier. One client process (grpc reads its settings at
import) seeds a 2 KB JSON-like entry through `SidecarClient`, checks that each sidecar
answers it from the intended tier, then measures sequential calls (p50, p99, ops/s) in
interleaved rounds against a direct read of the same stored value from the same server:
redis-py GET of ``<namespace>:e:<key>`` and a prepared psycopg SELECT from
``strata_entries``. The memory tier has no server to read directly; its baseline is the same
redis-py GET. Prints JSON with the ratios sidecar/direct. Needs `make services-up`. The
client process is `bench.tiers_worker`.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import signal
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from bench.procs import clean_env
from bench.stats import median_of
from bench.tiers_worker import BODY, KEY, TIERS
from tools.stack import SidecarProcess, SidecarStartError

#: Direct read of each tier's value; "memory" has no server of its own.
DIRECT_SERIES = {"memory": "redis", "redis": "redis", "postgres": "postgres"}
DIRECT_IS = {
    "memory": "redis-py GET of the Redis tier's stored value (baseline: the memory tier "
    "has no server to read directly)",
    "redis": "redis-py GET <namespace>:e:<key> (the bytes the Redis tier stored)",
    "postgres": "psycopg SELECT value FROM strata_entries WHERE namespace AND key "
    "(autocommit, prepared, binary)",
}
SERVICES_HINT = "run `make services-up` first"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--n", type=int, default=3000, help="sequential calls per series and round")
    p.add_argument("--rounds", type=int, default=5, help="interleaved rounds (median taken)")
    p.add_argument("--quick", action="store_true", help="small counts (smoke test)")


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
    env = clean_env()
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
                [sys.executable, "-m", "bench.tiers_worker"],
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
