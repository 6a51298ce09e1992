"""stampede: origin fetches for N concurrent cold requests, one gateway node and two (target 1).

Runs the real stack of `make cluster` (`tools.cluster.Cluster`: NGINX in front of kongsim
nodes, each with the real strata-cache plugin server and a sidecar of its own, and the
counting example origin) in three shapes, one after the other (`--modes`):

* ``1-node``: one node, memory tier only;
* ``2-node-shared``: two nodes on the shared Redis, Memcached, PostgreSQL and Kafka of
  `make services-up` (the fill lease is cluster-wide);
* ``2-node-memory``: two nodes with their memory tier only. Each node coalesces alone, so
  **2** fetches per burst is the expected figure here, not a failure.

In each, for every burst size N (`--sizes`, default 8, 32, 64) and entry (``direct``: the
requests spread evenly over the nodes' own ports; ``nginx``: through NGINX), `--urls` fresh
URLs each get one burst of N concurrent GETs of ``/slow?stampede=<uuid>`` (the kong.yml
route with ``coalesce_wait_ms: 2000``; the origin answers after `--origin-ms`, so the burst
really overlaps). The figure is how many of the N reached the origin (counted on arrival),
and every client must get 200 and a body the origin answered for that URL.

Baseline: Kong 3.9's proxy-cache has no request collapsing. In
``kong/plugins/proxy-cache/handler.lua`` (tag 3.9.3) ``access`` looks the key up
(l. 272, ``strategy:fetch(cache_key)``) and on "request object not in cache" only marks the
request for storing and lets it proxy (l. 273-286, ``signal_cache_req``, l. 180-185); the
answer is stored in ``body_filter`` once the upstream has answered (l. 380-413,
``strategy:store``). Nothing makes a second request for the same key wait, so N cold
requests make N upstream fetches. The run measures that N instead of assuming it: each
cached burst is followed by the same burst on the same path, nodes, NGINX and origin through
a route without any cache plugin (added at start, see `bench.stampede_run`).

Prints one JSON document (every burst's count, statuses, ``X-Cache-Status`` mix and
slowest reply; a summary and a verdict per mode; the headline rows) and draws a bar chart of
fetches per burst by mode and N (`--png`). The default run takes about 2-3 minutes,
`--quick` under a minute. ``2-node-shared`` needs `make services-up`.

Not guaranteed: that a burst's requests reach the gateway at the same instant (they leave
one event loop together; ``overlapped`` records that the last was sent before the first
answer came back); what happens with a burst longer than ``coalesce_wait_ms`` or a sidecar
slower than the plugin's deadline (`--sidecar-timeout-ms`, 250 ms here as in the cluster
tests, against kong.yml's 50 ms: a missed deadline is a ``Bypass`` that goes to the origin,
and the ``X-Cache-Status`` mix shows it); figures for real Kong (kongsim plays Kong).
Measured, not hidden: a burst of more than 32 requests on one plugin-server worker exceeds
its pool of blocking calls (`kong_plugin.pluginserver.worker.BLOCKING_THREADS`); the waiting
lookups hold every thread, the lease holder's Store queues behind them until
``coalesce_wait_ms`` runs out, and the waiters then go to the origin
(``--modes 1-node --plugin-workers 1 --sizes 31,33`` shows the edge).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.stampede_run import NO_CACHE_HOST, Plan, measure_mode, progress
from bench.stampede_verdict import (
    CACHED,
    MODE_NAMES,
    MODES,
    NO_CACHE,
    Burst,
    ModeSpec,
    headline,
    mode,
    mode_verdict,
    summary,
)

NAME = "stampede"
KONG_BASELINE = {
    "source": "Kong/kong tag 3.9.3, kong/plugins/proxy-cache/handler.lua",
    "lookup": "l. 272: local res, err = strategy:fetch(cache_key)",
    "miss_proxies": "l. 273-286: on 'request object not in cache', signal_cache_req "
    "(l. 180-185: ctx.proxy_cache = {cache_key = ...}; X-Cache-Status Miss) and return: "
    "the request goes upstream",
    "stored_after_answer": "l. 380-413: body_filter stores the upstream's answer "
    "(strategy:store) once it has arrived",
    "consequence": "no lock or wait between concurrent misses: N cold requests, N fetches",
}


def _sizes(text: str) -> list[int]:
    sizes = [int(part) for part in text.split(",") if part.strip()]
    if not sizes or any(n < 2 for n in sizes):
        raise argparse.ArgumentTypeError(f"burst sizes must be integers >= 2: {text!r}")
    return sizes


def _png(text: str) -> Path | None:
    return Path(text) if text else None


def _modes(text: str) -> list[ModeSpec]:
    try:
        return [mode(part.strip()) for part in text.split(",") if part.strip()]
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--sizes", type=_sizes, default=[8, 32, 64], help="burst sizes N")
    p.add_argument("--urls", type=int, default=4, help="fresh URLs per size, entry and route")
    p.add_argument("--origin-ms", type=int, default=250, help="the origin's delay per answer")
    p.add_argument(
        "--sidecar-timeout-ms",
        type=int,
        default=250,
        help="the plugin's sidecar deadline (kong.yml: 50; the cluster tests use 250)",
    )
    p.add_argument(
        "--plugin-workers",
        default="auto",
        help="plugin-server workers per node ('auto': one per CPU, as make cluster)",
    )
    p.add_argument(
        "--modes",
        type=_modes,
        default=list(MODES),
        help=f"comma-separated, of {', '.join(MODE_NAMES)} (default: all)",
    )
    p.add_argument(
        "--png",
        type=_png,
        default=Path(f".run/bench/{NAME}.png"),
        help="where to draw the bar chart ('' for none)",
    )
    p.add_argument("--quick", action="store_true", help="N = 8 and 32, 1 URL each (smoke)")


def plot(bursts: Sequence[Burst], path: Path) -> None:
    """Bars: the worst origin fetches per burst by N, one bar per mode and one for the
    no-cache baseline (log scale)."""
    import matplotlib  # noqa: PLC0415 - only when a picture is drawn

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    sizes = sorted({b.n for b in bursts})
    modes = [m.name for m in MODES if any(b.mode == m.name for b in bursts)]
    series = [
        (f"{m} (strata-cache)", [b for b in bursts if b.mode == m and b.route == CACHED])
        for m in modes
    ]
    series.append(("no cache (baseline)", [b for b in bursts if b.route == NO_CACHE]))
    width = 0.8 / len(series)
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for i, (label, group) in enumerate(series):
        xs = [j + (i - (len(series) - 1) / 2) * width for j in range(len(sizes))]
        ys = [max((b.fetches for b in group if b.n == n), default=0) for n in sizes]
        bars = ax.bar(xs, ys, width, label=label)
        ax.bar_label(bars, [str(y) for y in ys], fontsize=8)
    ax.set_xticks(range(len(sizes)), [f"N = {n}" for n in sizes])
    ax.set_yscale("log")
    ax.set_ylim(bottom=0.5)  # a bar of 1 (the target) stays visible on the log scale
    ax.set_ylabel("origin fetches per cold burst (worst URL)")
    ax.set_title("Stampede: N concurrent cold requests, fetches reaching the origin")
    ax.legend(fontsize=8, loc="upper left")
    ax.grid(True, axis="y", alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)


async def _measure(specs: Sequence[ModeSpec], plan: Plan) -> list[Burst]:
    bursts: list[Burst] = []
    for spec in specs:
        # a short folder: unix socket paths are limited to 107 bytes
        with tempfile.TemporaryDirectory(prefix="strata-st-", dir="/tmp") as d:
            bursts.extend(await measure_mode(Path(d), spec, plan))
    return bursts


def services_missing(specs: Sequence[ModeSpec]) -> str | None:
    """Why a shared mode cannot run (the services of `make services-up` are down), or None."""
    if not any(s.shared for s in specs):
        return None
    from tools.cluster import ServicesDownError, shared_settings  # noqa: PLC0415

    try:
        shared_settings()
    except ServicesDownError as exc:
        return (
            f"bench stampede: {exc}. The 2-node-shared mode needs them; start them with "
            "`make services-up`, or leave that mode out "
            "(`--modes 1-node,2-node-memory`)."
        )
    return None


def report(specs: Sequence[ModeSpec], plan: Plan, bursts: Sequence[Burst]) -> dict[str, Any]:
    return {
        "scenario": NAME,
        "sizes": list(plan.sizes),
        "urls_per_cell": plan.urls,
        "entries": list(plan.entries),
        "origin_ms": plan.origin_ms,
        "sidecar_timeout_ms": plan.sidecar_timeout_ms,
        "plugin_workers": plan.plugin_workers,
        "route": "/slow (kong.yml: cache_ttl 30, coalesce_wait_ms 2000)",
        "baseline_route": f"/slow for Host {NO_CACHE_HOST}, no plugin (added at start)",
        "kong_proxy_cache": KONG_BASELINE,
        "verdict": {s.name: mode_verdict(s, bursts) for s in specs},
        "summary": summary(bursts),
        "headline": headline(bursts),
        "bursts": [b.as_json() for b in bursts],
    }


def run(args: argparse.Namespace) -> int:
    specs: list[ModeSpec] = args.modes
    sizes, urls = ([8, 32], 1) if args.quick else (args.sizes, args.urls)
    if urls < 1:
        print("bench stampede: --urls must be at least 1", file=sys.stderr)
        return 2
    missing = services_missing(specs)
    if missing is not None:
        print(missing, file=sys.stderr)
        return 2
    plan = Plan(
        sizes=sizes,
        urls=urls,
        origin_ms=args.origin_ms,
        sidecar_timeout_ms=args.sidecar_timeout_ms,
        plugin_workers=args.plugin_workers,
    )
    bursts = asyncio.run(_measure(specs, plan))
    out = report(specs, plan, bursts)
    if args.png is not None:
        plot(bursts, args.png)
        out["png"] = str(args.png)
        progress(f"plot written to {args.png}")
    print(json.dumps(out, indent=2))
    sys.stdout.flush()
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m bench.stampede [options]`` (the same as ``python -m bench stampede``)."""
    parser = argparse.ArgumentParser(prog="python -m bench.stampede", description=__doc__)
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
