"""Sidecar Lookup hit (memory tier, 2 KB body) against a direct redis-py GET of the same value.

For each transport variant, a fresh sidecar process and a fresh client process (grpc reads
its settings at import) measure, interleaved in one run: p50, p99 and ops/s sequentially and
with 16 client threads. Prints JSON with the ratios sidecar/redis and whether the targets
hold: hit p50 <= 1.5x Redis GET p50, and 16-thread throughput >= 0.7x Redis'.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.procs import clean_env
from tools.services import load_env
from tools.stack import SidecarProcess, free_port

TARGET_P50_RATIO = 1.5
TARGET_THROUGHPUT_RATIO = 0.7
BODY = (b'{"id":42,"name":"strata","items":[' + b'{"k":"v"},' * 200)[:2040] + b"]}" + b" " * 6

#: name -> (client mode, listen kind, environment for both processes)
VARIANTS: dict[str, tuple[str, str, dict[str, str]]] = {
    "stream-unix": ("stream", "unix", {}),
    "mux-unix": ("mux", "unix", {}),
    "unary-unix": ("unary", "unix", {}),
    "stream-tcp": ("stream", "tcp", {}),
    "stream-unix-grpc-defaults": (
        "stream",
        "unix",
        {"GRPC_EXPERIMENTS": "", "GRPC_POLL_STRATEGY": "epoll1"},
    ),
}


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated variants")
    p.add_argument("--redis-url", default="", help="default: the `make services-up` Redis")
    p.add_argument("--n", type=int, default=5000, help="sequential calls per round")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--threads", type=int, default=16)
    p.add_argument("--seconds", type=float, default=4.0, help="per concurrent round")
    p.add_argument("--quick", action="store_true", help="small counts (smoke test)")


def _start_redis(workdir: Path) -> tuple[str, subprocess.Popen[bytes]]:
    exe = shutil.which("redis-server")
    if exe is None:
        raise SystemExit("redis-server is not installed: run `make install`")
    port = free_port()
    proc = subprocess.Popen(
        [
            exe,
            "--bind",
            "127.0.0.1",
            "--port",
            str(port),
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(workdir),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return f"redis://127.0.0.1:{port}/0", proc


def _wait(cond: Any, what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.05)
    raise SystemExit(f"timed out waiting for {what}")


def _clean_env(extra: dict[str, str]) -> dict[str, str]:
    env = clean_env()
    env.update(extra)
    return env


def run_variant(
    name: str, redis_url: str, workdir: Path, args: argparse.Namespace
) -> dict[str, Any]:
    mode, kind, grpc_env = VARIANTS[name]
    listen = f"unix:{workdir}/{name}.sock" if kind == "unix" else f"127.0.0.1:{free_port()}"
    env = _clean_env(grpc_env)
    sidecar = SidecarProcess(
        listen, env=env, metrics_listen="off", log_level="WARNING", inherit_output=True
    )
    try:
        sidecar.start()
        _seed(listen, redis_url, env)
        cmd = [
            sys.executable,
            "-m",
            "bench.lookup_worker",
            "--address",
            listen,
            "--mode",
            mode,
            "--redis-url",
            redis_url,
            "--n",
            str(args.n),
            "--rounds",
            str(args.rounds),
            "--threads",
            str(args.threads),
            "--seconds",
            str(args.seconds),
        ]
        done = subprocess.run(
            cmd, check=False, env=env, capture_output=True, text=True, timeout=900
        )
        if done.returncode != 0:
            raise SystemExit(f"worker for {name} failed:\n{done.stdout}\n{done.stderr}")
        result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    finally:
        sidecar.stop()
    seq, conc = result["sequential"], result[f"threads_{args.threads}"]
    result["p50_ratio"] = round(seq["sidecar"]["p50_us"] / seq["redis"]["p50_us"], 2)
    result["p99_ratio"] = round(seq["sidecar"]["p99_us"] / seq["redis"]["p99_us"], 2)
    result["throughput_ratio"] = round(conc["sidecar"]["ops_s"] / conc["redis"]["ops_s"], 2)
    return result


def _seed(listen: str, redis_url: str, env: dict[str, str]) -> None:
    code = (
        "import sys, redis\n"
        "from kong_plugin.client import SidecarClient\n"
        "from strata.v1 import cache_pb2 as pb\n"
        f"body = {BODY!r}\n"
        f"c = SidecarClient({listen!r}, 5.0)\n"
        "e = pb.Entry(status=200, body=body, ttl_ms=3_600_000, headers=["
        "pb.Header(name=b'content-type', value=b'application/json'),"
        "pb.Header(name=b'cache-control', value=b'max-age=3600')])\n"
        "assert c.store(b'v1:bench:2k', e).result == pb.STORE_RESULT_STORED\n"
        f"redis.Redis.from_url({redis_url!r}).set('v1:bench:2k', body)\n"
    )
    subprocess.run([sys.executable, "-c", code], env=env, check=True, timeout=60)


def run(args: argparse.Namespace) -> int:
    if args.quick:
        args.n, args.rounds, args.seconds = 500, 1, 1.0
    names = [v for v in args.variants.split(",") if v]
    unknown = [v for v in names if v not in VARIANTS]
    if unknown:
        raise SystemExit(f"unknown variants {unknown}; known: {', '.join(VARIANTS)}")
    with tempfile.TemporaryDirectory(prefix="strata-bench-", dir="/tmp") as d:
        workdir = Path(d)
        redis_url = args.redis_url or load_env().get("STRATA_TEST_REDIS_URL", "")
        own_redis = None
        if not redis_url:
            redis_url, own_redis = _start_redis(workdir)
        try:
            import redis  # noqa: PLC0415

            _wait(lambda: _redis_ok(redis, redis_url), "redis")
            results = {name: run_variant(name, redis_url, workdir, args) for name in names}
        finally:
            if own_redis is not None:
                own_redis.terminate()
                own_redis.wait(10)
    main = results.get("stream-unix") or next(iter(results.values()))
    report = {
        "scenario": "lookup",
        "body_bytes": len(BODY),
        "threads": args.threads,
        "targets": {
            "p50_ratio_max": TARGET_P50_RATIO,
            "throughput_ratio_min": TARGET_THROUGHPUT_RATIO,
        },
        "variants": results,
        "product_default": "stream-unix",
        "meets_p50_target": main["p50_ratio"] <= TARGET_P50_RATIO,
        "meets_throughput_target": main["throughput_ratio"] >= TARGET_THROUGHPUT_RATIO,
    }
    print(json.dumps(report, indent=2))
    return 0


def _redis_ok(redis_mod: Any, url: str) -> bool:
    try:
        return bool(redis_mod.Redis.from_url(url, socket_timeout=0.5).ping())
    except Exception:
        return False
