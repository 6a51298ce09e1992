"""Requests through kongsim and the real plugin server: hits and misses against no plugin,
per plugin-server variant, with the CPU each process spends per request.

One run starts the example upstream and a sidecar, then for each plugin-server variant
(`--variants`, ``ENGINE/WORKERS``; default kong-pdk/1, strata/1, strata/2) a kongsim of its
own, one after the other, in front of them. Four routes: no plugin to a fast upstream (the
baseline), no plugin to an upstream answering after 10 ms, strata-cache where every request
hits and strata-cache where every request misses (a new query string each time). Per variant:
p50/p99 with one client, requests/s with `--clients` clients, the CPU time (``/proc`` utime +
stime) kongsim, the plugin server (with every process it forks) and the sidecar use per
request over the concurrent rounds, the PDK round trips of a hit and of a miss (all phases),
and how soon a miss's entry is visible to a direct sidecar lookup. Every figure is also given
as a ratio against baselines measured in the same run (see `bench.gateway_report`).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import IO, Any

import yaml

from bench.gateway_load import (
    Measured,
    UrlOf,
    concurrent,
    hit_event_ms,
    measured_concurrent,
    round_trips,
    sequential,
)
from bench.gateway_report import TARGETS, scaling, variant_figures
from bench.gateway_stack import DEFAULT_VARIANTS, Gateway, Variant, kong_config, parse_variants
from bench.procs import clean_env, wait_http
from bench.stats import median_of
from tools.stack import SidecarProcess, free_port

# Older names, kept for scripts that import them.
_config = kong_config
_concurrent = concurrent


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--n", type=int, default=1000, help="sequential requests per scenario")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--clients", type=int, default=8, help="concurrent clients")
    p.add_argument("--seconds", type=float, default=3.0, help="per concurrent round")
    p.add_argument(
        "--variants",
        default=DEFAULT_VARIANTS,
        help="plugin-server variants, ENGINE/WORKERS (or 'default': no flags), comma-separated",
    )
    p.add_argument(
        "--visibility-rounds", type=int, default=25, help="rounds of --clients fresh misses"
    )
    p.add_argument("--quick", action="store_true", help="small counts (smoke test)")


def _scenarios(base: str) -> dict[str, UrlOf]:
    return {
        "no_plugin": lambda i: f"{base}/noplugin",
        "hit": lambda i: f"{base}/hit",
        "miss": lambda i: f"{base}/miss?n={i}-{time.monotonic_ns()}",
        "no_plugin_upstream_10ms": lambda i: f"{base}/slow10",
    }


def _visibility(gw: Gateway, sidecar: str, clients: int, rounds: int, env: dict[str, str]) -> Any:
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.gateway_visibility",
            "--gateway",
            gw.listen,
            "--sidecar",
            sidecar,
            "--clients",
            str(clients),
            "--rounds",
            str(rounds),
        ],
        env=env,
        check=True,
        capture_output=True,
        text=True,
        timeout=300,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def _run_variant(
    args: argparse.Namespace, gw: Gateway, sidecar_pid: int, sidecar: str, env: dict[str, str]
) -> dict[str, Any]:
    base = gw.base
    pids = gw.pids()
    measured = {
        "kongsim": Measured(pids["kongsim"], tree=False),  # the plugin server is its child
        "plugin_server": Measured(pids["plugin_server"], tree=True),
        "sidecar": Measured(sidecar_pid, tree=True),
    }
    scenarios = _scenarios(base)
    for _ in range(3):  # fill the hit key, start the instances, warm both routes
        urllib.request.urlopen(f"{base}/hit", timeout=10).read()
        urllib.request.urlopen(scenarios["miss"](0), timeout=10).read()
    time.sleep(0.3)
    pdk = {
        "hit": round_trips(base, "/hit"),
        "miss": round_trips(base, f"/miss?n=trips{time.monotonic_ns()}"),
    }
    seq: dict[str, list[dict[str, float]]] = {k: [] for k in scenarios}
    conc: dict[str, list[dict[str, float]]] = {k: [] for k in scenarios}
    cpu: dict[str, list[dict[str, float]]] = {k: [] for k in scenarios}
    event_ms: list[float] = []
    for _ in range(args.rounds):
        for name, url_of in scenarios.items():
            seq[name].append(asyncio.run(sequential(url_of, args.n)))
            if name == "hit":  # the sequential hits only: no queueing inside
                event_ms.append(hit_event_ms(base, min(args.n, 200)))
            summary, per_request = measured_concurrent(url_of, args.clients, args.seconds, measured)
            conc[name].append(summary)
            cpu[name].append(per_request)
    visibility = _visibility(gw, sidecar, args.clients, args.visibility_rounds, env)
    s = {k: median_of(v) for k, v in seq.items()}
    c = {k: median_of(v) for k, v in conc.items()}
    report: dict[str, Any] = {
        "plugin_server": gw.variant.start_command(),
        "clients": args.clients,
        "sequential": s,
        f"clients_{args.clients}": c,
        "cpu_ms_per_request": {k: _median_fields(v) for k, v in cpu.items()},
        "pdk": pdk,
        "hit_plugin_event_p50_us": round(sorted(event_ms)[len(event_ms) // 2] * 1000, 1),
        "store_visibility": visibility,
    }
    report.update(variant_figures(s, c, pdk, visibility))
    return report


def _median_fields(runs: list[dict[str, float]]) -> dict[str, float]:
    return median_of(runs, digits=3)


def run(args: argparse.Namespace) -> int:
    if args.quick:
        args.n, args.rounds, args.seconds, args.visibility_rounds = 200, 1, 1.0, 4
    variants = parse_variants(args.variants)
    env = clean_env()
    upstream_proc: subprocess.Popen[bytes] | None = None
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="strata-bench-", dir="/tmp") as d:
        work = Path(d)
        upstream = f"127.0.0.1:{free_port()}"
        sidecar = f"unix:{work}/sidecar.sock"
        sidecar_process = SidecarProcess(
            sidecar, env=env, metrics_listen="off", log_level="WARNING", log=work / "sidecar.log"
        )
        log: IO[bytes] = (work / "processes.log").open("wb")
        try:
            upstream_proc = subprocess.Popen(
                [sys.executable, "-m", "deploy.upstream.app", "--listen", upstream, "--quiet"],
                env=env,
                stdout=log,
                stderr=log,
            )
            sidecar_process.start()
            wait_http(f"http://{upstream}/delay", "the upstream", upstream_proc)
            config = work / "kong.yml"
            config.write_text(yaml.safe_dump(kong_config(upstream, sidecar)))
            assert sidecar_process.proc is not None
            for variant in variants:
                gw = Gateway(
                    variant, config, f"127.0.0.1:{free_port()}", work / variant_dir(variant), env
                )
                try:
                    gw.start(log)
                    results[variant.name] = _run_variant(
                        args, gw, sidecar_process.proc.pid, sidecar, env
                    )
                finally:
                    gw.stop()
        except Exception:
            log.flush()
            sys.stderr.write((work / "processes.log").read_text(errors="replace")[-4000:])
            raise
        finally:
            if upstream_proc is not None:
                upstream_proc.terminate()
                upstream_proc.wait(15)
            sidecar_process.stop()
            log.close()
    report = {
        "scenario": "gateway",
        "clients": args.clients,
        "targets": TARGETS,
        "variants": results,
        "scaling": scaling(results),
    }
    print(json.dumps(report, indent=2))
    return 0


def variant_dir(variant: Variant) -> str:
    """A directory name for the variant's kongsim prefix (sockets and logs)."""
    return "kong-" + variant.name.replace("/", "-")
