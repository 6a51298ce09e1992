"""Faults under steady load: Redis, Memcached, PostgreSQL and the sidecar killed and
restarted, the sidecar restarted gracefully, while clients keep asking kongsim.

One run starts private Redis, Memcached and PostgreSQL (a run dir of its own, never the
shared services), an origin serving ~2,000 items of mixed sizes (most small, a few
64 KiB-960 KiB so that Memcached and PostgreSQL hold entries), a sidecar with all four
tiers, and kongsim with the checkout's plugin server on a route caching `/items`. It asks
for every item once (warm-up), then `--clients` clients ask for items over a Zipf key set
for the whole run. Each fault is a phase of its own: steady (`--steady` s), fault, recovery
(`--recovery` s):

- `redis`, `memcached`, `postgres`, `sidecar`: `kill -9`, `--fault` s down, restart on the
  same port / socket; the server's return is when it answers its health check;
- `sidecar-graceful`: SIGTERM, wait for the exit, start a new one (stop then start);
- `sidecar-overlap`: start a new sidecar with the same settings and socket path while the
  old one runs, wait until the new one answers on the path (or fails), then SIGTERM the old.

After a phase, a sidecar that is missing or unreachable is started again (`repaired`), and
the suite waits (up to `--settle` s: `settle_s`) until the hit ratio is back to the phase's
steady one, so that the next phase starts from a working, steady stack. Per fault one JSON
object per line on stdout, then the same as a markdown table: client errors (non-2xx or
transport errors), `Bypass` answers, hit ratio (Hit or Stale) before / during / after, time
to recover (from the server's return to the first 1 s window whose hit ratio is within
`--tolerance` of the steady one), origin requests, processes that exited unasked or wrongly,
sidecar RSS.

Children run the code of the checkout (the working directory, or `--checkout`): run it from
an older worktree with ``cd WORKTREE && python -m bench faults`` (after copying
bench/faults*.py, bench/procs.py and tools/ there) or ``cd WORKTREE && PYTHONPATH=WORKTREE python
PATH/bench/faults.py``.

The suite and its phases are `bench.faults_suite`, the report `bench.faults_report`, the
load `bench.faults_load`, the origin `bench.faults_upstream`, the processes
`bench.faults_stack`, `bench.faults_procs` and `bench.faults_services`.

Not guaranteed: figures are of one run on a shared machine; throughput, and so the number of
requests in a window, follows whatever else runs. The sidecar's memory tier is kept small
(`--memory-max-bytes`) so that lookups reach the shared tiers.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a file: import this file's helpers, not the checkout's
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.faults_report import markdown
from bench.faults_suite import FAULTS, Options, run_suite


def add_arguments(p: argparse.ArgumentParser) -> None:
    d = Options()
    p.add_argument("--faults", default=",".join(FAULTS), help=f"comma list of {', '.join(FAULTS)}")
    p.add_argument("--steady", type=float, default=d.steady, help="seconds before each fault")
    p.add_argument("--fault", type=float, default=d.fault, help="seconds a killed server is down")
    p.add_argument("--recovery", type=float, default=d.recovery, help="seconds after its return")
    p.add_argument("--settle", type=float, default=d.settle, help="at most this many seconds "
                   "between phases, waiting for the steady hit ratio")  # fmt: skip
    p.add_argument("--clients", type=int, default=d.clients, help="concurrent clients")
    p.add_argument("--urls", type=int, default=d.urls, help="distinct cacheable URLs")
    p.add_argument("--alpha", type=float, default=d.alpha, help="Zipf exponent")
    p.add_argument("--large-share", type=float, default=d.large_share, help="share of 64K-960K")
    p.add_argument("--origin-delay-ms", type=float, default=d.origin_delay_ms)
    p.add_argument("--memory-max-bytes", default=d.memory_max_bytes, help="sidecar memory tier")
    p.add_argument("--tolerance", type=float, default=d.tolerance, help="recovered: hit ratio "
                   "at least steady minus this")  # fmt: skip
    p.add_argument("--no-warmup", dest="warmup", action="store_false")
    p.add_argument("--checkout", help="source tree to measure (default: the working directory)")
    p.add_argument("--workdir", help="keep logs here (default: a temporary directory)")
    p.add_argument(
        "--sidecar",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="extra sidecar setting, e.g. shutdown_grace_seconds=5 (repeatable)",
    )


def options_from(args: argparse.Namespace) -> Options:
    faults = [f.strip() for f in args.faults.split(",") if f.strip()]
    unknown = sorted(set(faults) - set(FAULTS))
    if unknown:
        raise SystemExit(f"unknown fault(s) {', '.join(unknown)}; known: {', '.join(FAULTS)}")
    settings = dict(s.split("=", 1) for s in args.sidecar)
    return Options(
        faults=faults, steady=args.steady, fault=args.fault, recovery=args.recovery,
        settle=args.settle,
        clients=args.clients, urls=args.urls, alpha=args.alpha, large_share=args.large_share,
        origin_delay_ms=args.origin_delay_ms, memory_max_bytes=args.memory_max_bytes,
        tolerance=args.tolerance, warmup=args.warmup, checkout=args.checkout,
        workdir=args.workdir, sidecar_settings=settings,
    )  # fmt: skip


def run(args: argparse.Namespace) -> int:
    opts = options_from(args)
    reports = run_suite(opts)
    for report in reports:
        print(json.dumps(report, sort_keys=True), flush=True)
    print()
    print(markdown(reports))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench/faults.py", description=__doc__.splitlines()[0])
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
