"""`strata-sidecar`: run the sidecar, print its configuration, or probe a running one.

Every setting of `sidecar.config.SidecarConfig` is a flag `--<name-with-dashes>`. Exit
codes: 0 ok (stopped by a signal or by another sidecar taking its socket over), 1 probe
failed or the sidecar could not start (one line on stderr says why: something that is not
a socket at the socket path, the metrics port in use, ...), 2 invalid configuration or usage.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import sys
import traceback
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import NoReturn

from sidecar import __version__
from sidecar.config import SETTINGS, SidecarConfig, env_name, load_config
from sidecar.core.errors import ConfigError
from sidecar.core.quantities import Range
from sidecar.core.redact import RedactingFormatter, Scrubber, secrets_in


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="strata-sidecar",
        description="Strata sidecar cache engine (gRPC strata.v1.CacheService).",
        epilog="Each setting can also be given as the environment variable STRATA_<NAME> "
        "or as a key in the --config TOML file; flags win over the environment, which "
        "wins over the file.",
    )
    parser.add_argument("--version", action="version", version=f"strata-sidecar {__version__}")
    parser.add_argument("--config", type=Path, help="TOML settings file (or STRATA_CONFIG)")
    parser.add_argument(
        "--print-config",
        action="store_true",
        help="print the resolved settings (secrets masked) as JSON and exit",
    )
    parser.add_argument(
        "--probe",
        action="store_true",
        help="check that the sidecar at --listen answers its health service; exit 0 if SERVING",
    )
    group = parser.add_argument_group("settings")
    for f in SETTINGS:
        check = f.metadata["check"]
        allowed = f"allowed: {check.bounds()}; " if isinstance(check, Range) else ""
        group.add_argument(
            "--" + f.name.replace("_", "-"),
            dest=f.name,
            default=None,
            metavar=f.name.upper(),
            help=f"{f.metadata['help']} (default: {f.default!r}; {allowed}"
            f"env {env_name(f.name)})".replace("%", "%%"),
        )
    return parser


def probe(address: str, timeout: float = 3.0) -> bool:
    """True if the health service at `address` reports SERVING."""
    import grpc  # noqa: PLC0415 - keep start-up of other commands light
    from grpc_health.v1 import health_pb2, health_pb2_grpc  # noqa: PLC0415

    with grpc.insecure_channel(address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        try:
            reply = stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=timeout)
        except grpc.RpcError:
            return False
    return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    overrides = {
        f.name: getattr(args, f.name) for f in SETTINGS if getattr(args, f.name) is not None
    }
    try:
        config = load_config(os.environ, overrides, args.config)
    except ConfigError as exc:
        print(f"strata-sidecar: {exc}", file=sys.stderr)
        return 2
    if args.print_config:
        print(json.dumps(config.redacted(), indent=2, sort_keys=True))
        return 0
    if args.probe:
        ok = probe(config.listen)
        print(f"{config.listen}: {'SERVING' if ok else 'NOT SERVING'}")
        return 0 if ok else 1
    return run(config)


def run(config: SidecarConfig) -> int:
    from sidecar.observability.logs import configure_logging  # noqa: PLC0415
    from sidecar.serve import serve  # noqa: PLC0415

    configure_logging(config.log_level, config.log_format)
    scrubber = scrubber_for(config)
    mask_secrets_in_output(scrubber)
    try:
        asyncio.run(serve(config, ignore_signals_after=True))
    except OSError as exc:
        reason = scrubber.scrub(os_error_text(exc))
        print(f"strata-sidecar: cannot start: {reason}", file=sys.stderr)
        return 1
    except ConfigError as exc:  # found at start (the admin token file changed since loading)
        print(f"strata-sidecar: {scrubber.scrub(str(exc))}", file=sys.stderr)
        return 2
    return 0


def os_error_text(exc: OSError) -> str:
    """An OSError as one line for an operator: its message (and file names), without the
    ``[Errno N]`` prefix of ``str(exc)``."""
    if not exc.strerror:
        return str(exc)
    names = [n for n in (exc.filename, exc.filename2) if n is not None]
    return ": ".join([exc.strerror, *map(str, names)]) if names else exc.strerror


def scrubber_for(config: SidecarConfig) -> Scrubber:
    """Masks the secrets of `config`'s secret settings (and credential-like patterns)."""
    values = [getattr(config, f.name) for f in SETTINGS if f.metadata["secret"]]
    found = [s for v in values if isinstance(v, str) for s in secrets_in(v)]
    if config.admin_token.strip():  # an opaque token: no URL or DSN pattern finds it
        found.append(config.admin_token.strip())
    return Scrubber(found)


def mask_secrets_in_output(scrubber: Scrubber) -> None:
    """Scrub every log line of the root handlers and any uncaught traceback: driver errors
    (psycopg, redis-py) may quote a DSN or URL, and nothing may print a password."""
    for handler in logging.getLogger().handlers:
        if handler.formatter is not None:
            handler.setFormatter(RedactingFormatter(handler.formatter, scrubber))

    def hook(kind: type[BaseException], exc: BaseException, tb: TracebackType | None) -> None:
        text = "".join(traceback.format_exception(kind, exc, tb))
        print(scrubber.scrub(text), end="", file=sys.stderr)

    sys.excepthook = hook


__all__ = ["main"]


def entry() -> NoReturn:
    """The process entry point (`strata-sidecar`, `python -m sidecar`): `main`, then leave
    without tearing the interpreter down. Everything was closed by then; freeing a large
    cache object by object would only keep a supervisor waiting for the exit."""
    code = main()
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(code)
