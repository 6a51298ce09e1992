"""`python -m bench SCENARIO [options]` - see `python -m bench --help`."""

from __future__ import annotations

import argparse
import sys

from bench import faults, gateway, hit_ratio, hostile, invalidation, lookup, memory, swr, tiers


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    sub = parser.add_subparsers(dest="scenario", required=True)
    lookup.add_arguments(sub.add_parser("lookup", help=lookup.__doc__.splitlines()[0]))
    gateway.add_arguments(sub.add_parser("gateway", help=gateway.__doc__.splitlines()[0]))
    tiers.add_arguments(sub.add_parser("tiers", help=tiers.__doc__.splitlines()[0]))
    memory.add_arguments(sub.add_parser("memory", help=memory.__doc__.splitlines()[0]))
    faults.add_arguments(sub.add_parser("faults", help=faults.__doc__.splitlines()[0]))
    hostile.add_arguments(sub.add_parser("hostile", help=hostile.__doc__.splitlines()[0]))
    invalidation.add_arguments(
        sub.add_parser("invalidation", help=invalidation.__doc__.splitlines()[0])
    )
    swr.add_arguments(sub.add_parser("swr", help=swr.__doc__.splitlines()[0]))
    hit_ratio.add_arguments(sub.add_parser("hit-ratio", help=hit_ratio.__doc__.splitlines()[0]))
    args = parser.parse_args(argv)
    if args.scenario == "lookup":
        return lookup.run(args)
    if args.scenario == "gateway":
        return gateway.run(args)
    if args.scenario == "tiers":
        return tiers.run(args)
    if args.scenario == "memory":
        return memory.run(args)
    if args.scenario == "faults":
        return faults.run(args)
    if args.scenario == "hostile":
        return hostile.run(args)
    if args.scenario == "invalidation":
        return invalidation.run(args)
    if args.scenario == "swr":
        return swr.run(args)
    if args.scenario == "hit-ratio":
        return hit_ratio.run(args)
    return 2


if __name__ == "__main__":
    sys.exit(main())
