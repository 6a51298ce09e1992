"""`strata purge`: purge through a sidecar's admin API (``POST /purge``).

    strata purge --tag products:42 [--tag ...] [--url /p?q] [--prefix /p/] [--key K]
                 [--route R] [--flush NAME] [--soft]
    strata purge --all [--soft]

Items of every kind given go into one event (purged on every node); one line on stdout says
what happened: ``purged id=<event id> dropped=<entries dropped on that node> queued=<yes|no>
duplicate=<yes|no>`` (queued: handed to Kafka for the other nodes; duplicate: the same event
id and content was already applied cluster-wide, so nothing was purged again). The token
comes from ``--token-file``, else ``--token`` (visible to every user in ``ps``: avoid it),
else the environment variable ``STRATA_ADMIN_TOKEN``. Exit codes: 0 purged, 1 failed
(refused, unreachable: one line on stderr), 2 usage error. Proxies from the environment are
not used.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

__all__ = ["DEFAULT_ADMIN", "TOKEN_ENV", "build_parser", "event_of", "main"]

DEFAULT_ADMIN = "http://127.0.0.1:8790"
TOKEN_ENV = "STRATA_ADMIN_TOKEN"
#: Flag -> event field (each flag may be repeated).
ITEM_FLAGS = {
    "tag": "tags",
    "url": "urls",
    "prefix": "prefixes",
    "key": "keys",
    "route": "routes",
}


class UsageError(Exception):
    """A command line or token problem (exit 2)."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="strata purge",
        description="Purge cached responses on every node, through a sidecar's admin API.",
        epilog=f"The token: --token-file, else --token, else ${TOKEN_ENV}. Exit codes: "
        "0 purged, 1 failed, 2 usage error.",
    )
    what = parser.add_argument_group("what to purge (repeatable, combined into one purge)")
    what.add_argument("--tag", action="append", default=[], help="entries carrying this tag")
    what.add_argument(
        "--url", action="append", default=[], help="a path and query as clients send it"
    )
    what.add_argument(
        "--prefix", action="append", default=[], help="a path prefix (everything under it)"
    )
    what.add_argument("--key", action="append", default=[], help="one exact cache key")
    what.add_argument(
        "--route", action="append", default=[], help="every entry stored with this route"
    )
    what.add_argument("--flush", metavar="NAME", help="a Kong route or service name")
    what.add_argument("--all", action="store_true", help="everything")
    parser.add_argument(
        "--soft",
        action="store_true",
        help="mark stale instead of removing (served stale while revalidated); not with --key",
    )
    parser.add_argument(
        "--admin", default=DEFAULT_ADMIN, help=f"the admin API's URL (default {DEFAULT_ADMIN})"
    )
    parser.add_argument("--token-file", type=Path, help="file holding the bearer token")
    parser.add_argument(
        "--token", help=f"the bearer token itself (visible in ps: prefer ${TOKEN_ENV})"
    )
    parser.add_argument(
        "--timeout", type=float, default=30.0, help="seconds to wait for the answer (30)"
    )
    return parser


def event_of(args: argparse.Namespace) -> dict[str, Any]:
    """The event the arguments ask for; UsageError when they ask for nothing or for
    everything and something."""
    event: dict[str, Any] = {
        field: list(getattr(args, flag))
        for flag, field in ITEM_FLAGS.items()
        if getattr(args, flag)
    }
    if args.flush is not None:
        event["flush"] = args.flush
    if args.all:
        if event:
            raise UsageError("--all purges everything: give it alone (with --soft at most)")
        event["flush"] = "*"
    if not event:
        raise UsageError("nothing to purge: give --tag, --url, --prefix, --key, --route, "
                         "--flush or --all")  # fmt: skip
    if args.soft:
        event["soft"] = True
    return event


def token_of(args: argparse.Namespace, environ: Mapping[str, str]) -> str:
    """The bearer token (see the module docstring for where it is looked for)."""
    token: str
    if args.token_file is not None:
        try:
            token = Path(args.token_file).read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as exc:
            raise UsageError(f"cannot read the token file {args.token_file}: {exc}") from None
        if not token:
            raise UsageError(f"the token file {args.token_file} is empty")
        return token
    token = (args.token or "").strip() or environ.get(TOKEN_ENV, "").strip()
    if not token:
        raise UsageError(f"no token: give --token-file or set {TOKEN_ENV}")
    return token


def _purge_url(admin: str) -> str:
    if not admin.startswith(("http://", "https://")):
        raise UsageError(f"--admin must be an http:// or https:// URL, got {admin[:80]!r}")
    return admin.rstrip("/") + "/purge"


def _message(raw: bytes) -> str:
    try:
        found = json.loads(raw)
    except ValueError:
        return raw[:200].decode("utf-8", "replace").strip()
    return str(found.get("message", "")) if isinstance(found, dict) else str(found)


def _post(url: str, token: str, event: dict[str, Any], timeout: float) -> dict[str, Any]:
    request = urllib.request.Request(
        url,
        data=json.dumps(event).encode("utf-8"),
        method="POST",
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(request, timeout=timeout) as reply:
        found = json.loads(reply.read())
    if not isinstance(found, dict):
        raise ValueError("the admin API answered something other than a JSON object")
    return found


def main(argv: Sequence[str]) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(list(argv))
    except SystemExit as exc:  # --help (0) or a usage error (2)
        return int(exc.code or 0)
    try:
        event = event_of(args)
        token = token_of(args, os.environ)
        url = _purge_url(args.admin)
    except UsageError as exc:
        print(f"strata purge: {exc}", file=sys.stderr)
        return 2
    try:
        done = _post(url, token, event, args.timeout)
    except urllib.error.HTTPError as exc:
        with exc:
            detail = _message(exc.read())
        print(f"strata purge: refused ({exc.code}): {detail}", file=sys.stderr)
        return 1
    except urllib.error.URLError as exc:
        print(f"strata purge: cannot reach {url}: {exc.reason}", file=sys.stderr)
        return 1
    except (OSError, ValueError) as exc:
        print(f"strata purge: failed: {exc}", file=sys.stderr)
        return 1
    print(_summary(done))
    return 0


def _summary(done: Mapping[str, Any]) -> str:
    """The output line of a purge the admin API accepted."""
    queued = "yes" if done.get("queued") else "no"
    duplicate = "yes" if done.get("duplicate") else "no"
    return (
        f"purged id={done.get('id')} dropped={done.get('dropped')} queued={queued} "
        f"duplicate={duplicate}"
    )
