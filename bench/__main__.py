"""`python -m bench SCENARIO [options]` - see `python -m bench --help`; `python -m bench all`
runs every scenario and writes BENCHMARKS.md (`bench.suite`)."""

from __future__ import annotations

import argparse
import sys
from types import ModuleType

from bench import (
    faults,
    gateway,
    hit_ratio,
    hostile,
    invalidation,
    lookup,
    memory,
    offload,
    stampede,
    suite,
    swr,
    tiers,
)

#: scenario -> its module (``add_arguments(parser)``, ``run(args) -> int``, a docstring whose
#: first line is the help).
SCENARIO_MODULES: dict[str, ModuleType] = {
    "lookup": lookup,
    "gateway": gateway,
    "tiers": tiers,
    "memory": memory,
    "faults": faults,
    "hostile": hostile,
    "invalidation": invalidation,
    "swr": swr,
    "hit-ratio": hit_ratio,
    "stampede": stampede,
    "offload": offload,
}


def build_parser() -> argparse.ArgumentParser:
    """The parser of every scenario and of ``all``."""
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    sub = parser.add_subparsers(dest="scenario", required=True)
    for name, module in SCENARIO_MODULES.items():
        help_line = (module.__doc__ or name).strip().splitlines()[0]
        module.add_arguments(sub.add_parser(name, help=help_line))
    suite.add_arguments(sub.add_parser("all", help=(suite.__doc__ or "").splitlines()[0]))
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.scenario == "all":
        return suite.run(args)
    code: int = SCENARIO_MODULES[args.scenario].run(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
