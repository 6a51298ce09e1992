"""`strata`: the operator's command, one verb per job.

* ``strata sidecar [SETTINGS]``: the cache engine (the same as ``strata-sidecar``);
* ``strata purge ...``: purge through a sidecar's admin API (`sidecar.admin.purge_cli`);
* ``strata cdc ...``: publish invalidation events for row changes of PostgreSQL tables
  (`sidecar.cdc.cli`);
* ``strata cost ...``: what the tiers hold, save and cost per month (`sidecar.cost.cli`).

Each verb's module is imported only when it runs, so ``strata purge`` does not load gRPC or
Kafka. Exit codes are the verb's: 0 ok, 1 failed, 2 usage or configuration error.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import os
import sys
from collections.abc import Callable, Sequence
from typing import NoReturn

__all__ = ["VERBS", "entry", "main"]

#: verb -> (module, what it does); each module has ``main(argv) -> int``.
VERBS: dict[str, tuple[str, str]] = {
    "sidecar": ("sidecar.cli", "run the cache engine (the same as strata-sidecar)"),
    "purge": ("sidecar.admin.purge_cli", "purge entries through a sidecar's admin API"),
    "cdc": ("sidecar.cdc.cli", "turn PostgreSQL row changes into invalidation events"),
    "cost": ("sidecar.cost.cli", "what the tiers hold, save and cost, against the naive way"),
}


def usage() -> str:
    lines = ["usage: strata VERB [ARGS...]", "", "verbs:"]
    lines += [f"  {verb:<8} {about}" for verb, (_, about) in VERBS.items()]
    lines += ["", "`strata VERB --help` describes a verb."]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        print(usage(), file=sys.stdout if args else sys.stderr)
        return 0 if args else 2
    verb, rest = args[0], args[1:]
    if verb not in VERBS:
        print(f"strata: unknown verb {verb!r} (one of: {', '.join(VERBS)})", file=sys.stderr)
        return 2
    run: Callable[[Sequence[str]], int] = importlib.import_module(VERBS[verb][0]).main
    return run(rest)


def entry() -> NoReturn:
    """The process entry point: `main`, then leave without tearing the interpreter down
    (as `sidecar.cli.entry`: a large cache is not freed object by object)."""
    code = main()
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(code)


if __name__ == "__main__":
    entry()
