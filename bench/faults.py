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

Not guaranteed: figures are of one run on a shared machine; throughput, and so the number of
requests in a window, follows whatever else runs. The sidecar's memory tier is kept small
(`--memory-max-bytes`) so that lookups reach the shared tiers.
"""

from __future__ import annotations

import argparse
import json
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a file: import this file's helpers, not the checkout's
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.faults_load import Load, Timeline
from bench.faults_stack import (
    Checkout,
    Gateway,
    Origin,
    PrivateServices,
    Proc,
    Sidecars,
    Watch,
    gateway_config,
    rss_bytes,
)
from tools.stack import free_port, probe

FAULTS = ("redis", "memcached", "postgres", "sidecar", "sidecar-graceful", "sidecar-overlap")
SERVICE_OF = {"redis": "redis", "memcached": "memcached", "postgres": "postgres"}
STOP_WAIT_S = 30.0
START_WAIT_S = 60.0


@dataclass
class Options:
    faults: Sequence[str] = FAULTS
    steady: float = 10.0
    fault: float = 10.0
    recovery: float = 15.0
    settle: float = 30.0
    clients: int = 8
    urls: int = 2000
    alpha: float = 1.0
    large_share: float = 0.04
    origin_delay_ms: float = 2.0
    memory_max_bytes: str = "4MiB"
    tolerance: float = 0.03
    warmup: bool = True
    checkout: str | None = None
    workdir: str | None = None
    sidecar_settings: dict[str, str] = field(default_factory=dict)
    plugin_config: dict[str, Any] = field(default_factory=lambda: {"cache_ttl": 3600})
    log: Callable[[str], None] = lambda message: print(message, file=sys.stderr, flush=True)


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


# --------------------------------------------------------------------------- one phase


@dataclass
class Marks:
    """Instants of one phase (time.monotonic()) and what happened in it."""

    steady: float
    fault: float = 0.0
    back: float = 0.0  # the server's (or the new sidecar's) return
    end: float = 0.0
    repaired_at: float | None = None
    settled_at: float = 0.0
    settled: bool = True
    notes: list[str] = field(default_factory=list)
    origin: dict[str, int] = field(default_factory=dict)


class Suite:
    def __init__(self, opts: Options, workdir: Path) -> None:
        self.opts = opts
        self.workdir = workdir
        self.checkout = Checkout.resolve(opts.checkout)
        self.watch = Watch()
        self.services = PrivateServices(workdir / "services")
        self.sidecars: Sidecars | None = None
        self.origin: Origin | None = None
        self.gateway: Gateway | None = None
        self.load: Load | None = None
        self._t0 = time.monotonic()

    def say(self, message: str) -> None:
        self.opts.log(f"faults [{time.monotonic() - self._t0:6.1f} s] {message}")

    # ---- set-up and tear-down

    def start(self) -> None:
        log = self.say
        log(f"checkout {self.checkout.describe()}; work dir {self.workdir}")
        env = self.services.up()
        settings = {
            "metrics_listen": f"127.0.0.1:{free_port()}",
            "log_level": "WARNING",
            "memory_max_bytes": self.opts.memory_max_bytes,
            "redis_url": env["STRATA_TEST_REDIS_URL"],
            "memcached_servers": env["STRATA_TEST_MEMCACHED_SERVERS"],
            "postgres_dsn": env["STRATA_TEST_POSTGRES_DSN"],
            **self.opts.sidecar_settings,
        }
        self.sidecars = Sidecars(self.checkout, self.workdir, settings, self.watch)
        self.sidecars.start(START_WAIT_S)
        self.origin = Origin(
            self.workdir, self.opts.large_share, self.opts.origin_delay_ms, self.watch
        )
        config = gateway_config(self.origin.address, self.sidecars.address, self.opts.plugin_config)
        self.gateway = Gateway(self.checkout, self.workdir, config, self.watch)
        self.load = Load(self.gateway.base_url, self.opts.urls, self.opts.clients, self.opts.alpha)
        if self.opts.warmup:
            t0 = time.monotonic()
            warm = self.load.warm()
            failed = sum(1 for s in warm if s.failed)
            log(f"warm-up {len(warm)} requests in {time.monotonic() - t0:.1f} s, "
                f"{failed} failed")  # fmt: skip
        self.load.start()

    def stop(self) -> None:
        if self.load is not None:
            self.load.stop()
        for part in (self.gateway, self.sidecars, self.origin):
            if part is not None:
                try:
                    part.stop_all() if isinstance(part, Sidecars) else part.stop()
                except Exception as exc:  # tear-down goes on
                    self.say(f"stopping {type(part).__name__}: {exc}")
        self.services.down()
        self.watch.close()

    # ---- faults

    def _sidecar(self) -> Sidecars:
        assert self.sidecars is not None
        return self.sidecars

    def _inject(self, fault: str, marks: Marks) -> None:
        """Run the fault; set marks.fault and marks.back."""
        sidecars = self._sidecar()
        if fault in SERVICE_OF:
            name = SERVICE_OF[fault]
            marks.fault = time.monotonic()
            self.services.kill(name)
            time.sleep(self.opts.fault)
            t0 = time.monotonic()
            self.services.restart(name, START_WAIT_S)
            marks.back = time.monotonic()
            marks.notes.append(f"{name} restarted in {marks.back - t0:.2f} s")
        elif fault == "sidecar":
            old = sidecars.current
            assert old is not None
            marks.fault = time.monotonic()
            old.signal(signal.SIGKILL)
            old.wait(10)
            time.sleep(self.opts.fault)
            self._start_sidecar(marks)
        elif fault == "sidecar-graceful":
            old = sidecars.current
            assert old is not None
            marks.fault = time.monotonic()
            took = sidecars.stop(old, STOP_WAIT_S)
            marks.notes.append(
                f"old exited {took:.2f} s after SIGTERM" if took is not None
                else f"old still running {STOP_WAIT_S:.0f} s after SIGTERM: killed"
            )  # fmt: skip
            self._start_sidecar(marks)
        elif fault == "sidecar-overlap":
            self._overlap(marks)
        else:
            raise ValueError(fault)

    def _start_sidecar(self, marks: Marks) -> None:
        sidecars = self._sidecar()
        t0 = time.monotonic()
        new = sidecars.spawn()
        if sidecars.wait_answering(new, START_WAIT_S):
            sidecars.current = new
            marks.notes.append(f"new sidecar answered {time.monotonic() - t0:.2f} s after start")
        else:
            marks.notes.append(f"new sidecar did not start: {new.log_tail(3)}")
        marks.back = time.monotonic()

    def _overlap(self, marks: Marks) -> None:
        sidecars = self._sidecar()
        old = sidecars.current
        assert old is not None
        marks.fault = time.monotonic()
        new = sidecars.spawn()
        answered = sidecars.wait_answering(new, START_WAIT_S)
        t_new = time.monotonic()
        if answered:
            marks.notes.append(f"new sidecar answered {t_new - marks.fault:.2f} s after start")
            sidecars.current = new
        else:
            state = "exited" if not new.alive() else "never answered on the socket"
            marks.notes.append(f"new sidecar {state}: {new.log_tail(3)}")
        took = sidecars.stop(old, STOP_WAIT_S)
        marks.notes.append(
            f"old exited {took:.2f} s after SIGTERM" if took is not None
            else f"old still running {STOP_WAIT_S:.0f} s after SIGTERM: killed"
        )  # fmt: skip
        marks.back = time.monotonic()

    def _repair(self, marks: Marks) -> None:
        """Leave one answering sidecar (and healthy servers) for the next phase."""
        sidecars = self._sidecar()
        for name in self.services.names:
            if not self.services.healthy(name):
                marks.notes.append(f"{name} unhealthy after the phase: restarted")
                self.services.restart(name, START_WAIT_S)
                marks.repaired_at = time.monotonic()
        current = sidecars.current
        if current is not None and current.alive() and probe(sidecars.address):
            return
        marks.notes.append("no sidecar answering after the phase: started a new one")
        for proc in sidecars.all:
            if proc.alive():
                sidecars.stop(proc, STOP_WAIT_S)
        sidecars.start(START_WAIT_S)
        marks.repaired_at = time.monotonic()

    def run_phase(self, fault: str) -> dict[str, Any]:
        assert self.origin is not None and self.gateway is not None and self.load is not None
        log, origin, gateway = self.say, self.origin, self.gateway
        plugin_before = gateway.plugin_servers()
        marks = Marks(steady=time.monotonic())
        marks.origin["steady"] = origin.count()
        log(f"{fault}: steady {self.opts.steady:g} s")
        time.sleep(self.opts.steady)
        marks.origin["fault"] = origin.count()
        self._inject(fault, marks)
        marks.origin["back"] = origin.count()
        log(f"{fault}: back after {marks.back - marks.fault:.2f} s; recovery")
        time.sleep(self.opts.recovery)
        marks.end = time.monotonic()
        marks.origin["end"] = origin.count()
        self._repair(marks)
        self._settle(marks)
        # the sidecars of this phase: running at its start, or started since
        involved = [
            p for p in self._sidecar().all if p.exited_at is None or p.exited_at >= marks.steady
        ]
        report = self._report(fault, marks, plugin_before, gateway.plugin_servers(), involved)
        log(f"{fault}: done: {report['client_errors']} errors, {report['bypasses_fault']} + "
            f"{report['bypasses_recovery']} bypasses, recovered {report['recover_s']}, "
            f"crashes {report['crashes']}; {'; '.join(marks.notes)}")  # fmt: skip
        return report

    def _settle(self, marks: Marks) -> None:
        """Wait (at most `--settle` s) until the hit ratio of the last second, after any
        repair, is back to this phase's steady one: the next phase starts steady."""
        assert self.load is not None
        steady = Timeline(self.load.samples).window(marks.steady, marks.fault).hit_ratio
        target = (steady or 0.0) - self.opts.tolerance
        deadline = time.monotonic() + self.opts.settle
        while True:
            now = time.monotonic()
            if marks.repaired_at is None or now - 1.0 >= marks.repaired_at:
                last = Timeline(self.load.samples).window(now - 1.0, now)
                if last.requests >= 5 and (last.hit_ratio or 0.0) >= target:
                    break
            if now > deadline:
                marks.settled = False
                marks.notes.append(f"hit ratio not back to steady {self.opts.settle:.0f} s later")
                break
            time.sleep(0.25)
        marks.settled_at = time.monotonic()

    # ---- report

    def _report(
        self,
        fault: str,
        marks: Marks,
        plugin_before: dict[str, Any],
        plugin_after: dict[str, Any],
        sidecar_procs: list[Proc],
    ) -> dict[str, Any]:
        assert self.load is not None and self.gateway is not None and self.origin is not None
        timeline = Timeline(self.load.samples)
        steady = timeline.window(marks.steady, marks.fault)
        during = timeline.window(marks.fault, marks.back)
        after = timeline.window(marks.back, marks.end)
        windows = {"steady": steady, "fault": during, "recovery": after}
        if marks.settled_at > marks.end + 0.05:
            windows["settle"] = timeline.window(marks.end, marks.settled_at)
        target = (steady.hit_ratio or 0.0) - self.opts.tolerance
        recover = timeline.time_to_recover(marks.back, marks.end, target)
        crashes = sorted({f for p in sidecar_procs if (f := p.failure())})
        for proc in (self.gateway.proc, self.origin.proc):
            if not proc.alive():
                crashes.append(f"{proc.name} exited with {proc.popen.returncode}")
        for name, after_s in plugin_after.items():
            before_s = plugin_before.get(name, {})
            if not isinstance(after_s, dict) or after_s.get("restarts") != before_s.get("restarts"):
                crashes.append(f"plugin server {name}: {after_s} (before: {before_s})")
        current = self._sidecar().current
        rss = rss_bytes(current.pid) if current is not None and current.alive() else None
        o = marks.origin
        return {
            "fault": fault,
            "client_errors": sum(w.errors for w in windows.values()),
            "bypasses_fault": during.bypasses,
            "bypasses_recovery": after.bypasses,
            "hit_ratio": {
                "before": _round(steady.hit_ratio),
                "during": _round(during.hit_ratio),
                "after": _round(after.hit_ratio),
            },
            "recover_s": recover,
            "fault_s": round(marks.back - marks.fault, 2),
            "origin_requests": {
                "steady": o["fault"] - o["steady"],
                "fault": o["back"] - o["fault"],
                "recovery": o["end"] - o["back"],
            },
            "crashed": bool(crashes),
            "crashes": crashes,
            "repaired": marks.repaired_at is not None,
            "settle_s": round(marks.settled_at - marks.end, 2) if marks.settled else None,
            "sidecar_rss_mib": None if rss is None else round(rss / 2**20, 1),
            "memory_max_bytes": self.opts.memory_max_bytes,
            "windows": {k: w.as_dict() for k, w in windows.items()},
            "notes": marks.notes,
        }


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


def run_suite(opts: Options) -> list[dict[str, Any]]:
    """Start everything, run the selected faults in order, stop everything."""
    if opts.workdir:
        workdir = Path(opts.workdir)
        workdir.mkdir(parents=True, exist_ok=True)
        return _run_in(opts, workdir)
    # short: the sidecar's unix socket lives here (paths are limited to 107 bytes)
    tmp = Path(tempfile.mkdtemp(prefix="strata-faults-", dir="/tmp"))
    try:
        return _run_in(opts, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _run_in(opts: Options, workdir: Path) -> list[dict[str, Any]]:
    suite = Suite(opts, workdir)
    reports = []
    try:
        suite.start()
        for fault in opts.faults:
            reports.append(suite.run_phase(fault))
    finally:
        suite.stop()
    return reports


# --------------------------------------------------------------------------- output


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}"


def markdown(reports: Sequence[dict[str, Any]]) -> str:
    rows = [
        "| fault | client errors | bypasses fault / recovery | hit % before / during / after "
        "| recover s | down s | origin req. fault / recovery | crash | repaired "
        "| sidecar RSS MiB |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in reports:
        h, o = r["hit_ratio"], r["origin_requests"]
        recover = "never" if r["recover_s"] is None else f"{r['recover_s']:.1f}"
        crash = "; ".join(r["crashes"]) if r["crashed"] else "no"
        rows.append(
            f"| {r['fault']} | {r['client_errors']} | {r['bypasses_fault']} / "
            f"{r['bypasses_recovery']} | {_pct(h['before'])} / {_pct(h['during'])} / "
            f"{_pct(h['after'])} | {recover} | {r['fault_s']:.1f} | {o['fault']} / "
            f"{o['recovery']} | {crash} | {'yes' if r['repaired'] else 'no'} | "
            f"{r['sidecar_rss_mib']} |"
        )
    return "\n".join(rows)


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
