"""The command line of ``python -m kong_plugin``: kong-pdk's dedicated-server options, plus
``--workers``, ``--engine``, the near-cache's options and ``--metrics-listen``.

kong-pdk options kept, with their meaning: ``-p/--kong-prefix`` (socket folder, must exist),
``--socket-name`` (default ``<plugin>.sock``, as kong-pdk's dedicated server), ``-v``
(counted: none is INFO, ``-v`` DEBUG), ``--listen-queue-size``, ``--dump``, ``--version``.
Refused with a message naming the option: ``-m``/``-g`` (kong-pdk's multiprocessing and
gevent modes) and ``--no-lua-style`` (the plugin is written for Lua-style results).

Each worker (and the kong-pdk engine's one process) installs the outcome subscribers at
start-up: the metrics' (`kong_plugin.plugin_metrics`) and the analytics'
(`kong_plugin.analytics`).

Not guaranteed: that the options a future kong-pdk adds are understood.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from kong_pdk.module import Module

from kong_plugin.near_cache import MAX_AGE_S, MAX_BYTES, MAX_ENTRY_BYTES
from kong_plugin.pluginserver.metrics_http import parse_listen

if TYPE_CHECKING:
    from kong_plugin.pluginserver.worker import Worker


#: The near-cache's bytes per node (and sidecar address), shared among the workers.
NEAR_NODE_BYTES = 2 * MAX_BYTES

DEFAULT_SOCKET_NAME = "python_pluginserver.sock"  # kong-pdk's; means "<plugin>.sock"
ORIGIN_NOTICE = "strata.origin"
REFUSED = {
    "-m": "kong-pdk's multiprocessing mode loses per-instance state; use --workers",
    "--multiprocessing": "kong-pdk's multiprocessing mode loses per-instance state; use --workers",
    "-g": "kong-pdk's gevent mode blocks on gRPC; the default engine already runs events as "
    "greenlets",
    "--gevent": "kong-pdk's gevent mode blocks on gRPC",
    "--no-lua-style": "the plugin is written for Lua-style (data, err) PDK results",
}


def parser(name: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m kong_plugin", description=f"The {name} plugin server for Kong."
    )
    p.add_argument("-p", "--kong-prefix", "-kong-prefix", dest="prefix", default="/usr/local/kong/")
    p.add_argument("-v", "--verbose", action="count", default=1)
    p.add_argument("--version", "-version", action="store_true")
    p.add_argument("--socket-name", default=DEFAULT_SOCKET_NAME)
    p.add_argument("--listen-queue-size", type=int, default=4096)
    p.add_argument("--dump", "-dump", action="store_true", help="print the plugin info (JSON)")
    p.add_argument(
        "--workers",
        default="auto",
        help="worker processes: 'auto' (usable CPUs, the default) or 1-64; each runs the "
        "plugin on one core",
    )
    p.add_argument(
        "--engine",
        choices=("strata", "kong-pdk"),
        default="strata",
        help="'strata' (default): greenlet events on asyncio workers; 'kong-pdk': kong-pdk's "
        "own thread-per-event server, one process (kept as a baseline)",
    )
    p.add_argument(
        "--near-cache-bytes",
        type=int,
        default=NEAR_NODE_BYTES,
        help="bytes of hot entries the workers answer from their own memory, per sidecar "
        "address, shared evenly among the workers (default: %(default)s; 0 turns the "
        "near-cache off)",
    )
    p.add_argument(
        "--near-cache-entry-bytes",
        type=int,
        default=MAX_ENTRY_BYTES,
        help="largest entry the near-cache holds (default: %(default)s)",
    )
    p.add_argument(
        "--near-cache-max-age-ms",
        type=int,
        default=int(MAX_AGE_S * 1000),
        help="longest a near-cache copy is answered after the sidecar lookup that fetched "
        "it, whatever the pushed changes say (default: %(default)s)",
    )
    p.add_argument(
        "--metrics-listen",
        default=None,
        metavar="HOST:PORT",
        help="serve the plugin server's Prometheus metrics at http://HOST:PORT/metrics "
        "(port 0: a free port, logged); default: no endpoint",
    )
    p.add_argument("--worker", type=int, default=None, help=argparse.SUPPRESS)
    p.add_argument("--listen-fd", type=int, default=None, help=argparse.SUPPRESS)
    p.add_argument("--supervisor", type=int, default=None, help=argparse.SUPPRESS)
    return p


def module_for(name: str, plugin: Any, version: str, priority: int, schema: Any) -> Module:
    """kong-pdk's description of the plugin (phases, schema, version, priority)."""

    class Mod:
        Plugin = plugin
        Schema = schema

    Mod.version = version  # type: ignore[attr-defined]
    Mod.priority = priority  # type: ignore[attr-defined]
    return Module(name, module=Mod)


WORKER_ONLY = ("--workers", "--worker", "--listen-fd", "--supervisor")
#: Options of the supervisor that workers are not given.
SUPERVISOR_ONLY = ("--metrics-listen",)
#: Options kong-pdk's own server does not know (its argument parser would refuse them).
NOT_KONG_PDK = (
    *WORKER_ONLY,
    "--engine",
    "--metrics-listen",
    "--near-cache-bytes",
    "--near-cache-entry-bytes",
    "--near-cache-max-age-ms",
)


def without(argv: Sequence[str], names: Sequence[str]) -> list[str]:
    """`argv` less the options `names` (each takes a value, as ``--x v`` or ``--x=v``)."""
    out: list[str] = []
    skip = False
    for arg in argv:
        if skip:
            skip = False
            continue
        if arg in names:
            skip = True
            continue
        if arg.startswith(tuple(f"{n}=" for n in names)):
            continue
        out.append(arg)
    return out


def main(
    name: str, plugin: Any, version: str, priority: int, schema: Any, argv: Sequence[str]
) -> int:
    """Run the plugin server for one plugin; returns the exit status."""
    for arg in argv:
        if arg in REFUSED:
            print(f"{name}: {arg} is not supported: {REFUSED[arg]}", file=sys.stderr)
            return 2
    args = parser(name).parse_args(list(argv))
    if args.version:
        print(f"{name} {version}")
        return 0
    module = module_for(name, plugin, version, priority, schema)
    if args.dump:
        from kong_plugin.pluginserver.worker import plugin_info  # noqa: PLC0415

        sys.stdout.write(json.dumps([plugin_info(module)]))
        return 0
    index = args.worker
    level = logging.WARNING - 10 * args.verbose
    tag = f"w{index} " if index is not None else ""
    logging.basicConfig(
        level=max(level, logging.DEBUG),
        stream=sys.stdout,
        format=f"%(levelname)s {tag}%(name)s: %(message)s",
        force=True,
    )
    if not os.path.isdir(args.prefix):
        print(f"{name}: prefix {args.prefix} does not exist", file=sys.stderr)
        return 2
    socket_name = args.socket_name
    if socket_name == DEFAULT_SOCKET_NAME:
        socket_name = f"{name}.sock"
    if "/" in socket_name or socket_name in ("", ".", ".."):
        print(f"{name}: --socket-name must be a file name, not {socket_name!r}", file=sys.stderr)
        return 2
    if args.listen_queue_size < 1:
        print(f"{name}: --listen-queue-size must be 1 or more", file=sys.stderr)
        return 2
    if args.engine == "kong-pdk" and args.workers not in ("auto", "1"):
        print(f"{name}: --engine kong-pdk runs one process; drop --workers", file=sys.stderr)
        return 2
    from kong_plugin.pluginserver import supervisor  # noqa: PLC0415

    try:
        count = 1 if args.engine == "kong-pdk" else supervisor.resolve_workers(str(args.workers))
    except ValueError as exc:
        print(f"{name}: {exc}", file=sys.stderr)
        return 2
    problem = _near_settings(args, count)
    if problem:
        print(f"{name}: {problem}", file=sys.stderr)
        return 2
    metrics_listen = None
    if args.metrics_listen is not None:
        try:
            metrics_listen = parse_listen(args.metrics_listen)
        except ValueError as exc:
            print(f"{name}: {exc}", file=sys.stderr)
            return 2
    if args.engine == "kong-pdk":
        return _kong_pdk(name, plugin, version, priority, schema, argv, metrics_listen)
    layout = supervisor.Layout(os.path.join(args.prefix, socket_name))
    if index is not None:  # a worker started by a supervisor
        import socket  # noqa: PLC0415

        if args.listen_fd is None or not 0 <= index < count:
            print(
                f"{name}: --worker needs --listen-fd and an index below --workers", file=sys.stderr
            )
            return 2
        listener = socket.socket(fileno=args.listen_fd)
        listener.setblocking(False)
        return supervisor.run_worker(
            module,
            layout,
            listener,
            index,
            count,
            _prepare,
            backlog=args.listen_queue_size,
            supervisor=args.supervisor,
        )
    return supervisor.start(
        module,
        layout,
        args.listen_queue_size,
        count,
        without(argv, (*WORKER_ONLY, *SUPERVISOR_ONLY)),
        _prepare,
        metrics_listen,
    )


def install_subscribers() -> None:
    """The outcome subscribers of this process: metrics, then analytics (each idempotent;
    analytics only once its module exists)."""
    from kong_plugin import plugin_metrics  # noqa: PLC0415

    plugin_metrics.install()
    try:
        from kong_plugin import analytics  # noqa: PLC0415
    except ImportError:
        return
    install = getattr(analytics, "install", None)
    if callable(install):
        install()


def _prepare(worker: Worker) -> None:
    """A worker's start-up: the state its peers share, the outcome subscribers, and the
    snapshot its supervisor asks for (`kong_plugin.plugin_metrics.snapshot`)."""
    from kong_plugin import plugin_metrics  # noqa: PLC0415

    _share_state(worker)
    install_subscribers()
    peers = worker.peers
    worker.snapshot = lambda: plugin_metrics.snapshot(
        relayed=worker.relayed, notices_sent=peers.sent, notices_received=peers.received
    )


def _share_state(worker: Worker) -> None:
    """What a node's workers must agree on travels between them as notices: which origins
    are down (`kong_plugin.origin`)."""
    from kong_plugin import runtime  # noqa: PLC0415

    runtime.origins.on_change = lambda event: worker.peers.notify(ORIGIN_NOTICE, event)
    worker.peers.handlers[ORIGIN_NOTICE] = runtime.origins.apply


def _near_settings(args: argparse.Namespace, workers: int) -> str:
    """Apply the ``--near-cache-*`` options to `kong_plugin.runtime`, the bytes shared
    evenly among the `workers`; the problem, if any."""
    from kong_plugin import runtime  # noqa: PLC0415

    if args.near_cache_bytes < 0:
        return "--near-cache-bytes must be 0 (off) or more"
    if args.near_cache_bytes and not 0 < args.near_cache_entry_bytes <= args.near_cache_bytes:
        return "--near-cache-entry-bytes must be between 1 and --near-cache-bytes"
    if not 1 <= args.near_cache_max_age_ms <= 60_000:
        return "--near-cache-max-age-ms must be 1..60000"
    share = args.near_cache_bytes // workers
    runtime.near_settings = runtime.NearSettings(
        share, min(args.near_cache_entry_bytes, share), args.near_cache_max_age_ms / 1000
    )
    return ""


def _kong_pdk(
    name: str,
    plugin: Any,
    version: str,
    priority: int,
    schema: Any,
    argv: Sequence[str],
    metrics_listen: tuple[str, int] | None = None,
) -> int:
    """kong-pdk's own dedicated server (thread per event), instance ids made restart-safe,
    with the outcome subscribers and, with `metrics_listen`, ``/metrics`` from a thread
    (`kong_plugin.server.serve_metrics`)."""
    from kong_pdk.cli import start_dedicated_server  # noqa: PLC0415

    from kong_plugin import server  # noqa: PLC0415

    sys.argv = [sys.argv[0], *without(argv, NOT_KONG_PDK)]
    server.install()
    if metrics_listen is not None:
        server.serve_metrics(*metrics_listen)
    start_dedicated_server(name, plugin, version, priority, schema)
    return 0
