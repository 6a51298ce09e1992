"""`strata cost`: what the cache holds, saves and costs, against the naive way.

    strata cost --metrics http://127.0.0.1:9464 [--metrics URL ...] [--window SECONDS]
    strata cost --prometheus http://prometheus:9090 [--range 1h]
        [--ram-gb-month 10] [--disk-gb-month 0.10] [--origin-per-million 0.40]
        [--egress-per-gb 0.09] [--nodes N] [--json]

Reads every node's /metrics (sidecars, and plugin servers for their near-cache hits) or a
Prometheus server, and prints a table (default) or one JSON document on stdout
(`sidecar.cost.model` says what is computed and assumed, `sidecar.cost.render` how it is
shown). Exit codes: 0 ok, 1 a source failed (one line on stderr naming it), 2 usage error.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
from collections.abc import Sequence

from sidecar.cost.model import Prices, compute
from sidecar.cost.render import as_json, table
from sidecar.cost.sources import SourceError, node_key, read_pages, read_prometheus

__all__ = ["build_parser", "main", "parse_duration"]

_DURATION = re.compile(r"(\d+(?:\.\d+)?)([smhd]?)")
_UNIT_S = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}
#: --window: from 1 s to a day (longer: a Prometheus range).
WINDOW_S = (1.0, 86400.0)
#: --range: whole seconds from 1 s to 365 days.
RANGE_S = (1.0, 365 * 86400.0)
DEFAULTS = Prices()
#: Each price's `Prices` field (its flag: dashes for underscores) and what it prices.
PRICE_FLAGS = (
    ("ram_gb_month", "RAM per GB-month"),
    ("disk_gb_month", "disk per GB-month"),
    ("origin_per_million", "per million origin requests"),
    ("egress_per_gb", "per GB of origin egress"),
)


class UsageError(Exception):
    """A command line problem (exit 2)."""


def parse_duration(text: str) -> float:
    """``90``, ``90s``, ``15m``, ``1h``, ``7d`` -> seconds (> 0); `UsageError` otherwise."""
    m = _DURATION.fullmatch(text.strip())
    seconds = float(m.group(1)) * _UNIT_S[m.group(2)] if m else 0.0
    if not (m and math.isfinite(seconds) and seconds > 0):
        raise UsageError(f"{text!r} is not a positive duration (e.g. 300, 15m, 1h, 7d)")
    return seconds


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="strata cost",
        description="What Strata's tiers hold, save and cost per month, against the same "
        "traffic cached the naive way (one uncompressed copy per node, in RAM).",
        epilog="Prices are examples unless given; GB = 2^30 bytes. Exit codes: 0 ok, "
        "1 a source failed, 2 usage error.",
    )
    src = parser.add_argument_group("sources (one kind)")
    src.add_argument(
        "--metrics",
        action="append",
        default=[],
        metavar="URL",
        help="a sidecar's or plugin server's /metrics (repeat for every node)",
    )
    src.add_argument("--prometheus", metavar="URL", help="a Prometheus server scraping them")
    src.add_argument(
        "--window",
        metavar="SECONDS",
        help="with --metrics: read twice this far apart, 1s to 1d (default: since each "
        "sidecar started)",
    )
    src.add_argument(
        "--range",
        default="1h",
        help="with --prometheus: counters over this range, whole seconds from 1s to 365d (1h)",
    )
    prices = parser.add_argument_group("prices (examples unless given)")
    for field, about in PRICE_FLAGS:
        default = getattr(DEFAULTS, field)
        prices.add_argument(
            "--" + field.replace("_", "-"),
            default=default,
            type=float,
            help=f"{about} ({default:g})",
        )
    parser.add_argument(
        "--nodes", type=int, help="nodes the naive way keeps a copy on (default: sidecars read)"
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument(
        "--timeout",
        type=float,
        default=10.0,
        help="seconds each page or query may take in all (10)",
    )
    return parser


def _prices(args: argparse.Namespace) -> Prices:
    for field, _ in PRICE_FLAGS:
        try:
            Prices(**{field: getattr(args, field)})
        except ValueError as exc:
            raise UsageError(f"--{field.replace('_', '-')}: {exc}") from None
    return Prices(**{field: getattr(args, field) for field, _ in PRICE_FLAGS})


def _check(args: argparse.Namespace) -> None:
    if bool(args.metrics) == bool(args.prometheus):
        raise UsageError("give --metrics URL (one per node) or --prometheus URL, not both")
    if args.window is not None and not args.metrics:
        raise UsageError("--window goes with --metrics (with --prometheus: --range)")
    if args.nodes is not None and args.nodes < 1:
        raise UsageError("--nodes must be at least 1")
    if not (math.isfinite(args.timeout) and args.timeout > 0):
        raise UsageError("--timeout must be a positive number of seconds")
    seen: dict[str, str] = {}
    for url in args.metrics:
        try:
            key = node_key(url)
        except SourceError:
            continue  # not a URL: a source failure when it is read
        if key in seen:
            raise UsageError(
                f"--metrics {url} names the same page as --metrics {seen[key]}: give each node once"
            )
        seen[key] = url


def _window(text: str) -> float:
    seconds = parse_duration(text)
    low, high = WINDOW_S
    if not low <= seconds <= high:
        raise UsageError(
            f"--window {text}: must be from 1s to 1d (longer: --prometheus URL --range)"
        )
    return seconds


def _range(text: str) -> float:
    seconds = parse_duration(text)
    low, high = RANGE_S
    if not (low <= seconds <= high and seconds == int(seconds)):
        raise UsageError(f"--range {text}: must be whole seconds from 1s to 365d")
    return seconds


def main(argv: Sequence[str]) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(list(argv))
    except SystemExit as exc:  # --help (0) or a usage error (2)
        return int(exc.code or 0)
    try:
        _check(args)
        prices = _prices(args)
        window = _window(args.window) if args.window is not None else None
        range_s = _range(args.range)
    except UsageError as exc:
        print(f"strata cost: {exc}", file=sys.stderr)
        return 2
    try:
        if args.metrics:
            readings, notes = read_pages(args.metrics, window, timeout=args.timeout)
        else:
            readings, notes = read_prometheus(args.prometheus, range_s, timeout=args.timeout)
        report = compute(readings, prices, nodes=args.nodes)
    except (SourceError, ValueError) as exc:
        print(f"strata cost: {exc}", file=sys.stderr)
        return 1
    if args.json:
        try:
            text = json.dumps(as_json(report, notes), indent=2, allow_nan=False)
        except ValueError:
            print("strata cost: the report has a number that is not finite", file=sys.stderr)
            return 1
        print(text)
    else:
        print(table(report, notes))
    return 0
