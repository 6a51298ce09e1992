"""``python -m tools.services up|down|status``: the command line of the supervisor.

``up`` prints the env file's path on stdout once every selected server is healthy; progress
goes to stderr. Exit code 0 on success, 1 on any failure (``status``: unless some server is
recorded and every recorded one is healthy).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from collections.abc import Sequence

from tools.services.base import HEALTH_TIMEOUT_S, Options, ServiceError
from tools.services.state import DEFAULT_RUN_DIR, RUN_DIR_ENV
from tools.services.supervisor import SERVER_NAMES, down, status, up


def split_list(value: str | None) -> list[str] | None:
    """``"a, b,,c"`` as ``["a", "b", "c"]``; None stays None."""
    if value is None:
        return None
    return [item.strip() for item in value.split(",") if item.strip()]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tools.services", description="Start, check and stop Strata's test servers."
    )
    parser.add_argument("command", choices=("up", "down", "status"))
    parser.add_argument("--run-dir", help=f"default: ${RUN_DIR_ENV} or {DEFAULT_RUN_DIR}")
    parser.add_argument("--only", help=f"comma-separated subset of {','.join(SERVER_NAMES)}")
    parser.add_argument("--prometheus-targets", help="host:port,... for Prometheus to scrape")
    parser.add_argument("--timeout", type=float, default=HEALTH_TIMEOUT_S, help="health wait, s")
    args = parser.parse_args(argv)
    only = split_list(args.only) or None
    targets = split_list(args.prometheus_targets)
    try:
        if args.command == "up":
            t0 = time.monotonic()
            path = up(args.run_dir, only, Options(args.timeout, targets))
            print(f"all healthy in {time.monotonic() - t0:.2f} s; env file:", file=sys.stderr)
            print(path)
        elif args.command == "down":
            down(args.run_dir, only)
        else:
            return 0 if status(args.run_dir, only) else 1
    except ServiceError as exc:
        print(f"services: {args.command} failed: {exc}", file=sys.stderr)
        return 1
    except (OSError, subprocess.SubprocessError) as exc:
        print(f"services: {args.command} failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
