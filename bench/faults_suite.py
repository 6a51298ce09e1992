"""The fault suite (`python -m bench faults`, described in `bench.faults`): its options,
the stack it starts, and the phases it runs, one per fault.

`run_suite` starts private servers, a sidecar, the origin, kongsim and the load, runs each
selected fault as a phase (steady, fault, recovery), repairs what a phase left broken and
waits for the hit ratio to settle before the next, then stops everything. Each phase ends
as a `bench.faults_report.phase_report` object.

Not guaranteed: that the stack is steady at a phase's start when settling timed out (the
report says so: ``settle_s`` is None).
"""

from __future__ import annotations

import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.faults_load import Load, Timeline
from bench.faults_procs import Checkout, Proc, Watch
from bench.faults_report import Marks, phase_report
from bench.faults_services import PrivateServices
from bench.faults_stack import Gateway, Origin, Sidecars, gateway_config
from bench.procs import rss_bytes
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
        crashes = sorted({f for p in sidecar_procs if (f := p.failure())})
        for proc in (self.gateway.proc, self.origin.proc):
            if not proc.alive():
                crashes.append(f"{proc.name} exited with {proc.popen.returncode}")
        for name, after_s in plugin_after.items():
            before_s = plugin_before.get(name, {})
            if not isinstance(after_s, dict) or after_s.get("restarts") != before_s.get("restarts"):
                crashes.append(f"plugin server {name}: {after_s} (before: {before_s})")
        current = self._sidecar().current
        rss = None
        if current is not None and current.alive():
            try:
                rss = rss_bytes(current.pid)
            except (OSError, RuntimeError):  # gone since, or a zombie (no VmRSS)
                rss = None
        return phase_report(
            fault, marks, timeline, self.opts.tolerance, crashes, rss, self.opts.memory_max_bytes
        )


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
