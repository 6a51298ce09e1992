"""``python -m kongsim``: run kongsim in front of real plugin servers.

Examples::

    python -m kongsim --config kong.yml --listen 127.0.0.1:8000
    python -m kongsim --config kong.yml --strict \\
        --plugin-server 'my-plugin={python} plugins/my_plugin.py -p {prefix} \\
                         --socket-name my-plugin.socket;{python} plugins/my_plugin.py --dump'
    python -m kongsim --config kong.yml --check      # validate and exit

Without ``--plugin-server`` the repository's ``strata-cache`` server is used
(``{python} -m kong_plugin ...``); ``--no-default-plugin-server`` runs with key-auth only.

Exit codes: 0 normal stop, 1 a plugin server could not be queried or started, 2 invalid
configuration (the message names the entity and the field).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import sys
from collections.abc import Sequence

from kongsim.errors import ConfigError, PluginServerError
from kongsim.http.gateway import Gateway, Options
from kongsim.loglevels import kong_log_level
from kongsim.protocol.spec import PluginServerSpec, parse_env_names

log = logging.getLogger("kongsim")


def _listen(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit():
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {value!r}")
    return host or "127.0.0.1", int(port)


def _spec(value: str) -> PluginServerSpec:
    try:
        return PluginServerSpec.parse(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m kongsim",
        description="A development/test stand-in for Kong 3.9 driving real plugin servers.",
    )
    parser.add_argument("--config", "-c", required=True, help="decK declarative file (kong.yml)")
    parser.add_argument(
        "--listen", type=_listen, default=("127.0.0.1", 8000), help="HOST:PORT to proxy on"
    )
    parser.add_argument(
        "--strict", action="store_true", help="fail requests on anything Kong would only log"
    )
    parser.add_argument(
        "--plugin-server",
        action="append",
        type=_spec,
        default=None,
        metavar="NAME=START_CMD;QUERY_CMD[;SOCKET]",
        help="an external plugin server; placeholders {python} {prefix} {socket} {name}",
    )
    parser.add_argument(
        "--no-default-plugin-server",
        action="store_true",
        help="do not start the default strata-cache plugin server",
    )
    parser.add_argument("--prefix", help="directory for sockets and logs (default: temporary)")
    parser.add_argument("--workers", type=int, default=1, help="simulated nginx workers")
    parser.add_argument(
        "--rpc-timeout", type=float, default=None, help="seconds (default 5 strict, 60 otherwise)"
    )
    parser.add_argument(
        "--rpc-mode",
        choices=("pooled", "per-call"),
        default="pooled",
        help="keep-alive pool (Kong) or a new connection per RPC",
    )
    parser.add_argument("--check", action="store_true", help="validate the config and exit")
    parser.add_argument(
        "--log-level",
        default="notice",
        help="Kong's levels: debug, info, notice (default, as Kong), warn, error, crit; "
        "plugin servers' output is logged at info",
    )
    parser.add_argument(
        "--nginx-main-env",
        action="append",
        default=None,
        metavar="NAME",
        help="pass this environment variable to plugin servers (Kong's nginx_main_env; "
        "default: the names in KONG_NGINX_MAIN_ENV). Everything else is cleared, as by nginx.",
    )
    parser.add_argument(
        "--wait",
        action="store_true",
        help="wait for the plugin servers' sockets before listening (Kong does not)",
    )
    return parser


def options_from_args(args: argparse.Namespace) -> Options:
    servers: list[PluginServerSpec] | None = args.plugin_server
    if servers is None and args.no_default_plugin_server:
        servers = []
    return Options(
        config_path=args.config,
        strict=args.strict,
        plugin_servers=servers,
        host=args.listen[0],
        port=args.listen[1],
        workers=args.workers,
        rpc_timeout=args.rpc_timeout,
        rpc_pooled=args.rpc_mode == "pooled",
        prefix=args.prefix,
        passthrough_env=tuple(
            args.nginx_main_env
            if args.nginx_main_env is not None
            else parse_env_names(os.environ.get("KONG_NGINX_MAIN_ENV", ""))
        ),
        wait_for_plugin_servers=args.wait,
    )


async def _check(options: Options) -> None:
    gateway = Gateway(options)
    try:
        await gateway.check()
    finally:
        await gateway.stop()
    print(f"kongsim: {options.config_path} is valid", file=sys.stderr)


async def _serve(options: Options) -> None:
    gateway = Gateway(options)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    await gateway.start()
    try:
        await stop.wait()
    finally:
        log.info("stopping")
        await gateway.stop()


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    level = kong_log_level(args.log_level)
    if level is None:
        print(f"kongsim: unknown --log-level {args.log_level!r}", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    options = options_from_args(args)
    try:
        asyncio.run(_check(options) if args.check else _serve(options))
    except ConfigError as exc:
        print(f"kongsim: invalid configuration in {args.config}:", file=sys.stderr)
        for message in exc.messages:
            print(f"  {message}", file=sys.stderr)
        return 2
    except PluginServerError as exc:
        print(f"kongsim: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"kongsim: {exc}", file=sys.stderr)
        return 1
    return 0
