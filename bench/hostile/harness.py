"""What surrounds each hostile scenario: the sidecar under attack, a sampler of its resident
set, and the well-behaved client whose latency shows what the attack costs others.

Imports none of the product's packages (only the generated contract); the sidecar is
started with `tools.stack.SidecarProcess`.

Not guaranteed: the sampled peak is the largest of samples `SAMPLE_INTERVAL_S` apart, so a
shorter spike between two samples is missed.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import grpc
from strata.v1 import cache_pb2 as pb
from strata.v1 import cache_pb2_grpc as pb_grpc

from bench.procs import clean_env, rss_bytes
from tools.stack import SidecarProcess

VICTIM_INTERVAL_S = 0.05
VICTIM_DEADLINE_S = 2.0
SAMPLE_INTERVAL_S = 0.02


# -- the sidecar process -----------------------------------------------------------------


def start_sidecar(
    workdir: Path, memory_max_bytes: int, extra: list[str], checkout: str = ""
) -> tuple[str, SidecarProcess]:
    """A sidecar on a unix socket in `workdir`, SERVING before this returns. Its log
    (warnings and up) goes to ``workdir/sidecar.log``."""
    listen = f"unix:{workdir}/hostile.sock"
    env = clean_env()
    cwd = None
    if checkout:  # run from there too: `-m` puts the working directory first on sys.path
        cwd = Path(checkout).resolve()
        env["PYTHONPATH"] = os.pathsep.join([str(cwd), str(cwd / "proto")])
    log = workdir / "sidecar.log"
    log.write_bytes(b"")  # this sidecar's lines only
    sidecar = SidecarProcess(
        listen,
        env=env,
        metrics_listen="off",
        log_level="WARNING",
        settings={"memory_max_bytes": str(memory_max_bytes)},
        args=extra,
        log=log,
        cwd=cwd,
    )
    return listen, sidecar.start()


class RssSampler:
    """The peak resident set of a process, sampled on a thread of its own."""

    def __init__(self, pid: int) -> None:
        self._pid = pid
        self.before = rss_bytes(pid)
        self.peak = self.before
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(SAMPLE_INTERVAL_S):
            try:
                self.peak = max(self.peak, rss_bytes(self._pid))
            except (OSError, RuntimeError):
                return

    def stop(self) -> int:
        """Stop sampling; the growth of the peak over the RSS when sampling began."""
        self._stop.set()
        self._thread.join()
        return self.peak - self.before


# -- the well-behaved client -------------------------------------------------------------


@dataclass
class VictimReport:
    calls: int = 0
    failed: int = 0
    worst_ms: float = 0.0
    errors: list[str] = field(default_factory=list)


class Victim:
    """A unary Lookup every `VICTIM_INTERVAL_S` with a `deadline_s` deadline, on a thread
    and a channel of its own."""

    def __init__(self, address: str, deadline_s: float = VICTIM_DEADLINE_S) -> None:
        self._address = address
        self._deadline = deadline_s
        self.report = VictimReport()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="victim", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        with grpc.insecure_channel(self._address) as channel:
            stub = pb_grpc.CacheServiceStub(channel)
            stub.Lookup(pb.LookupRequest(key=b"v1:victim:0"), timeout=10)  # connected
            while not self._stop.wait(VICTIM_INTERVAL_S):
                start = time.monotonic()
                try:
                    stub.Lookup(pb.LookupRequest(key=b"v1:victim:1"), timeout=self._deadline)
                except grpc.RpcError as exc:
                    self.report.failed += 1
                    if len(self.report.errors) < 3:
                        self.report.errors.append(f"{exc.code().name}: {exc.details()}")
                took = (time.monotonic() - start) * 1000
                self.report.calls += 1
                self.report.worst_ms = max(self.report.worst_ms, took)

    def stop(self) -> VictimReport:
        self._stop.set()
        self._thread.join()
        return self.report
