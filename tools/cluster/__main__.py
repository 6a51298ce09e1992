"""`make cluster` (``python -m tools.cluster``): NGINX in front of two gateway nodes on
loopback, in the foreground, stopped cleanly by Ctrl-C or SIGTERM.

Needs the shared services of `make services-up` (Redis, Memcached, PostgreSQL, the Kafka
broker); without them it says so and exits with 2. Runs in ``.run/cluster/`` (mode 0700;
sockets, configurations and every log), which a second run refuses to share. Each run
uses a namespace and an invalidation topic of its own, so entries of earlier runs are never
served. Stopping leaves the shared services running (`make services-down` stops them).

Overrides: ``STRATA_KONGSIM_LISTEN`` (NGINX, the gateway clients use; default
127.0.0.1:8000), ``STRATA_KONGSIM_UPSTREAM_LISTEN`` (the example upstream; default
127.0.0.1:9000), the sidecars' own ``STRATA_*`` settings (those the cluster sets per node
win: listen, metrics, node id, shared tiers, namespace, topic), and the flags below.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import fcntl
import os
import shutil
import signal
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

from tools import services
from tools.cluster.cluster import Cluster, Mode
from tools.cluster.processes import ChildError, leftovers
from tools.cluster.shared import ServicesDownError
from tools.services.procs import taken
from tools.services.prometheus import set_cluster_targets
from tools.stack import REPO, SidecarStartError

DEFAULT_GATEWAY = "127.0.0.1:8000"
DEFAULT_UPSTREAM = "127.0.0.1:9000"
RUN_DIR = REPO / ".run" / "cluster"
#: The example upstream's slow endpoint, as `make run` serves it.
SLOW_MS = 500


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m tools.cluster", description=__doc__.split("\n")[0])
    p.add_argument("--nodes", type=int, default=2, help="gateway nodes (default 2)")
    p.add_argument(
        "--memory-only",
        action="store_true",
        help="no shared tiers: each sidecar keeps its own memory tier (no services needed)",
    )
    p.add_argument(
        "--plugin-workers",
        default="auto",
        help="plugin-server workers per node: 'auto' (one per CPU, the default) or 1-64",
    )
    p.add_argument("--run-dir", type=Path, default=RUN_DIR, help=f"default {RUN_DIR}")
    return p


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """`path` (0700) locked for this run; BlockingIOError if another run holds it."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    path.chmod(0o700)
    with (path / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        yield


def _clear(path: Path) -> None:
    """Remove the previous run's folders (sockets, configurations, logs)."""
    for old in path.iterdir():
        if old.is_dir():
            shutil.rmtree(old)


def _summary(cluster: Cluster) -> str:
    gw = cluster.gateway_url
    lines = [
        "",
        f"Strata cluster is running ({cluster.mode.value} tiers; run folder {cluster.workdir}):",
        f"  gateway (NGINX)     {gw}  -> {', '.join(n.proxy_listen for n in cluster.nodes)}",
        f"  example upstream    {cluster.origin.url}",
    ]
    admin = _admin_enabled()
    for node in cluster.nodes:
        plugin = node.plugin_metrics_url or "(this plugin server has no --metrics-listen yet)"
        lines += [
            f"  {node.node_id}: proxy {node.proxy_url}  sidecar {node.sidecar.address}",
            f"          sidecar metrics {node.sidecar_metrics_url}",
            f"          plugin metrics  {plugin}",
        ]
        if admin:
            lines.append(f"          admin API       {node.admin_url}  (strata purge --url ...)")
    if cluster.settings.get("namespace"):
        lines.append(
            f"  shared tiers: namespace {cluster.settings['namespace']},"
            f" topic {cluster.settings['kafka_topic']}"
        )
    a, b = cluster.nodes[0], cluster.nodes[-1]
    # NGINX passes the client's host without its port: the same key as this Host header
    host = f"-H 'Host: {cluster.gateway_listen.rpartition(':')[0]}'"
    lines += [
        "Try:",
        f"  curl -si {gw}/products/1 | grep -i cache             # Miss, then Hit on any node",
        f"  curl -si {host} {b.proxy_url}/products/1 | grep -i cache  # {b.node_id}: Hit",
        f"  curl -s -X PUT -d '{{\"price\": 1}}' {host} {a.proxy_url}/products/1   # purges",
        f"  curl -si {host} {b.proxy_url}/products/1 | grep -i x-cache  # Miss on {b.node_id}",
        f"  curl -s {a.sidecar_metrics_url} | grep ^strata_lookups",
    ]
    if a.plugin_metrics_url:
        lines.append(f"  curl -s {a.plugin_metrics_url} | grep ^strata_plugin_requests_total")
    prometheus = services.load_env().get("STRATA_TEST_PROMETHEUS_URL")
    if prometheus and cluster.mode is Mode.SHARED:
        lines.append(
            f"  Prometheus {prometheus} scrapes every node (job strata-sidecar / strata-plugin,"
            f" label kong_node) and evaluates deploy/prometheus/rules: {prometheus}/alerts"
        )
    lines += [
        f"Logs: {cluster.workdir}/node-*/ and {cluster.workdir}/nginx/.",
        "Ctrl-C stops the cluster; the shared services keep running (make services-down).",
    ]
    return "\n".join(lines)


def scrape_groups(cluster: Cluster) -> list[dict[str, object]]:
    """The cluster's metrics endpoints as Prometheus file_sd target groups, labelled as the
    deploy stack's scrape jobs (``job``, ``kong_node``), so its alert rules and dashboard
    queries apply unchanged."""
    groups: list[dict[str, object]] = []
    for node in cluster.nodes:
        urls = [("strata-sidecar", node.sidecar_metrics_url)]
        if node.plugin_metrics_url:
            urls.append(("strata-plugin", node.plugin_metrics_url))
        for job, url in urls:
            address = url.removeprefix("http://").removesuffix("/metrics")
            groups.append({"targets": [address], "labels": {"job": job, "kong_node": node.node_id}})
    return groups


def _admin_enabled() -> bool:
    return bool(os.environ.get("STRATA_ADMIN_TOKEN") or os.environ.get("STRATA_ADMIN_TOKEN_FILE"))


class Restarts:
    """When a part of the cluster that exited may be started again: at most `limit` times
    per `window_s` each, `delay_s` after it was seen gone (a supervisor's
    ``Restart=always`` with a start limit)."""

    def __init__(self, limit: int = 5, window_s: float = 60.0, delay_s: float = 1.0) -> None:
        self.limit, self.window_s, self.delay_s = limit, window_s, delay_s
        self._starts: dict[str, list[float]] = {}

    def allowed(self, name: str, now: float) -> bool:
        """Whether `name` may be started again at `now` (counted when True)."""
        recent = [t for t in self._starts.get(name, []) if now - t < self.window_s]
        if len(recent) >= self.limit:
            self._starts[name] = recent
            return False
        self._starts[name] = [*recent, now]
        return True


async def _watch(cluster: Cluster, stop: asyncio.Event, restarts: Restarts) -> None:
    """Until `stop`: a part of the cluster that exits is reported and started again after
    `restarts.delay_s` (a sidecar, a gateway with its plugin server, NGINX), unless it
    restarted `restarts.limit` times within `restarts.window_s`: then it stays down and
    that is said once."""
    loop = asyncio.get_running_loop()
    given_up: set[str] = set()
    while not stop.is_set():
        parts: list[tuple[str, int | None, Callable[[], None]]] = [
            (f"{n.node_id} sidecar", n.sidecar.returncode, n.start_sidecar) for n in cluster.nodes
        ]
        parts += [(n.gateway.name, n.gateway.returncode, n.restart_gateway) for n in cluster.nodes]
        if cluster.nginx is not None:
            parts.append(("nginx", cluster.nginx.child.returncode, cluster.nginx.start))
        for name, rc, start in parts:
            if rc is None or name in given_up:
                continue
            if not restarts.allowed(name, loop.time()):
                given_up.add(name)
                print(
                    f"make cluster: {name} exited ({rc}) {restarts.limit} times within "
                    f"{restarts.window_s:.0f} s; left down (see its log), the rest keeps running",
                    flush=True,
                )
                continue
            print(f"make cluster: {name} exited ({rc}); starting it again", flush=True)
            await asyncio.sleep(restarts.delay_s)
            try:
                await asyncio.to_thread(start)
            except Exception as exc:
                print(f"make cluster: {name} did not start again: {exc}", flush=True)
            else:
                print(f"make cluster: {name} is back", flush=True)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 0.5)


async def _serve(args: argparse.Namespace, gateway: str, upstream: str) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    cluster = Cluster(
        args.run_dir,
        nodes=args.nodes,
        mode=Mode.MEMORY if args.memory_only else Mode.SHARED,
        gateway=gateway,
        upstream=upstream,
        plugin_workers=args.plugin_workers,
        slow_ms=SLOW_MS,
    )
    try:
        await cluster.start()
    except ServicesDownError as exc:
        print(f"make cluster: {exc}", file=sys.stderr)
        return 2
    except (ChildError, SidecarStartError, OSError) as exc:
        print(f"make cluster: could not start: {exc}", file=sys.stderr)
        return 1
    scraped = cluster.mode is Mode.SHARED
    try:
        if scraped:
            set_cluster_targets(None, scrape_groups(cluster))
        print(_summary(cluster), flush=True)
        await _watch(cluster, stop, Restarts())
    finally:
        print("make cluster: stopping (NGINX, gateways, sidecars, upstream)", flush=True)
        if scraped:
            set_cluster_targets(None, [])
        await cluster.stop()
    left = cluster.leftovers()
    if left:
        print(f"make cluster: still running: {left}", file=sys.stderr)
        return 1
    print("make cluster: stopped; nothing of the cluster is left running", flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    args.run_dir = args.run_dir.resolve()  # children name it: sockets, prefixes, configs
    if args.nodes < 1:
        print("make cluster: --nodes must be at least 1", file=sys.stderr)
        return 2
    gateway = os.environ.get("STRATA_KONGSIM_LISTEN", DEFAULT_GATEWAY)
    upstream = os.environ.get("STRATA_KONGSIM_UPSTREAM_LISTEN", DEFAULT_UPSTREAM)
    busy = taken([("gateway (NGINX)", gateway), ("example upstream", upstream)])
    if busy is not None:
        print(
            f"make cluster: {busy[1]} ({busy[0]}) is already in use; stop what holds it or set "
            "STRATA_KONGSIM_LISTEN / STRATA_KONGSIM_UPSTREAM_LISTEN",
            file=sys.stderr,
        )
        return 1
    try:
        with _locked(args.run_dir):
            earlier = leftovers(args.run_dir)
            if earlier:
                pids = " ".join(str(pid) for pid, _ in earlier)
                print(
                    f"make cluster: processes of an earlier run in {args.run_dir} still run"
                    f" (pids {pids}); stop them first (kill {pids})",
                    file=sys.stderr,
                )
                return 1
            _clear(args.run_dir)
            return asyncio.run(_serve(args, gateway, upstream))
    except BlockingIOError:
        print(f"make cluster: another run uses {args.run_dir}; stop it first", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
