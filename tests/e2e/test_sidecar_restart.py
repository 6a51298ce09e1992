"""Restarting the sidecar under a running client: SIGTERM, start-while-running (takeover),
stop-then-start, kill -9, and what may not be at the socket path.

Real sidecar processes on a private unix socket; clients are the plugin's own
`SidecarClient`. Timing bounds are generous (several times what a quiet machine shows).
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from strata.v1 import cache_pb2 as pb

from kong_plugin.client import SidecarClient, SidecarError
from tests.support.sidecar import unix_sidecar
from tools.stack import SidecarProcess, free_port

pytestmark = pytest.mark.e2e


@dataclass
class Load:
    """`threads` threads doing lookups and stores in a loop until stopped; every call's
    outcome is kept with its time."""

    address: str
    threads: int = 8
    timeout_s: float = 1.0
    pause_s: float = 0.002
    ok: list[float] = field(default_factory=list)
    failed: list[tuple[float, str]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.client = SidecarClient(self.address, timeout_s=self.timeout_s)
        self._stop = threading.Event()
        self._workers = [
            threading.Thread(target=self._run, args=(i,), daemon=True) for i in range(self.threads)
        ]

    def _run(self, worker: int) -> None:
        n = 0
        while not self._stop.is_set():
            n += 1
            key = f"w{worker}-{n % 40}".encode()
            try:
                if n % 3:
                    self.client.lookup(key)
                else:
                    self.client.store(key, pb.Entry(status=200, body=b"x" * 64, ttl_ms=60_000))
            except SidecarError as exc:
                self.failed.append((time.monotonic(), str(exc)))
            else:
                self.ok.append(time.monotonic())
            time.sleep(self.pause_s)

    def __enter__(self) -> Load:
        for t in self._workers:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for t in self._workers:
            t.join(10)
        self.client.close()

    def first_ok_after(self, t: float) -> float | None:
        return min((x for x in self.ok if x >= t), default=None)


@pytest.fixture
def launched(short_tmp: Path, sidecar_env: dict[str, str]) -> Iterator[list[SidecarProcess]]:
    """Sidecars a test starts (`make`), all stopped at the end."""
    made: list[SidecarProcess] = []
    yield made
    for s in made:
        s.kill()


def make(
    launched: list[SidecarProcess],
    tmp: Path,
    env: dict[str, str],
    name: str,
    metrics: str = "off",
    grace: float = 10.0,
) -> SidecarProcess:
    sidecar = unix_sidecar(
        tmp / "sidecar.sock",
        env,
        metrics_listen=metrics,
        args=["--shutdown-grace-seconds", str(grace)],
        log=tmp / f"{name}.log",
    )
    launched.append(sidecar)
    return sidecar


def proc_of(sidecar: SidecarProcess) -> subprocess.Popen[bytes]:
    assert sidecar.proc is not None
    return sidecar.proc


def test_sigterm_with_idle_streams_exits_well_before_the_grace_period(
    short_tmp: Path, sidecar_env: dict[str, str], launched: list[SidecarProcess]
) -> None:
    a = make(launched, short_tmp, sidecar_env, "a", grace=10.0)
    a.start()
    client = SidecarClient(a.address, timeout_s=2.0)
    # Four threads at once: four Exchange streams, all idle afterwards.
    barrier = threading.Barrier(4)

    def call() -> None:
        barrier.wait()
        client.lookup(b"k")

    threads = [threading.Thread(target=call) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    t0 = time.monotonic()
    a.terminate()
    assert proc_of(a).wait(15) == 0
    assert time.monotonic() - t0 < 3.0  # was the full 10 s grace period
    assert not (short_tmp / "sidecar.sock").exists()  # a's socket path
    client.close()
    log = (short_tmp / "a.log").read_text()
    assert "Traceback" not in log, log


@pytest.mark.parametrize("old_gets_sigterm", [True, False], ids=["sigterm-old", "takeover-only"])
def test_starting_a_new_sidecar_under_load_fails_no_call(
    short_tmp: Path,
    sidecar_env: dict[str, str],
    launched: list[SidecarProcess],
    old_gets_sigterm: bool,
) -> None:
    metrics = f"127.0.0.1:{free_port()}"
    a = make(launched, short_tmp, sidecar_env, "a", metrics=metrics)
    b = make(launched, short_tmp, sidecar_env, "b", metrics=metrics)
    a.start()
    with Load(a.address) as load:
        time.sleep(0.5)
        b.start()  # same socket path, same metrics port, while A serves
        if old_gets_sigterm:
            a.terminate()
        assert proc_of(a).wait(15) == 0  # without SIGTERM: A drains once it lost the path
        a_gone = time.monotonic()
        time.sleep(0.5)
    assert load.failed == [], load.failed[:5]
    assert load.first_ok_after(a_gone) is not None
    assert proc_of(b).poll() is None
    assert b.serving()  # the path exists and names B's socket
    assert b"strata_lookups_total" in urllib.request.urlopen(f"http://{metrics}/metrics").read()
    logs = (short_tmp / "a.log").read_text() + (short_tmp / "b.log").read_text()
    assert "Traceback" not in logs, logs
    assert "took over the socket path" in logs
    assert f'"previous_owner_pid":{proc_of(a).pid}' in logs


@pytest.mark.parametrize("stop", ["sigterm", "sigkill"])
def test_client_is_back_soon_after_a_stopped_sidecar_is_started_again(
    short_tmp: Path, sidecar_env: dict[str, str], launched: list[SidecarProcess], stop: str
) -> None:
    a = make(launched, short_tmp, sidecar_env, "a")
    b = make(launched, short_tmp, sidecar_env, "b")
    a.start()
    with Load(a.address, threads=1, pause_s=0.005) as load:
        time.sleep(0.5)
        proc_of(a).send_signal(signal.SIGTERM if stop == "sigterm" else signal.SIGKILL)
        proc_of(a).wait(15)
        time.sleep(1.0)  # an outage long enough for gRPC's backoff to grow
        b.start()
        ready = time.monotonic()
        time.sleep(2.0)
    first = load.first_ok_after(ready)
    assert first is not None
    assert first - ready < 1.5  # was 2.3-4.8 s
    # Once back, no call fails on a stream left over from the old sidecar.
    assert [f for f in load.failed if f[0] > first] == []


def start_refused(listen: str, env: dict[str, str]) -> str:
    """Start a sidecar on `listen` that must refuse to start: its stderr."""
    refused = SidecarProcess(listen, env=env, metrics_listen="off").expect_refusal()
    assert refused.returncode == 1, refused
    return refused.stderr


def test_a_regular_file_at_the_socket_path_is_kept_and_named(
    short_tmp: Path, sidecar_env: dict[str, str]
) -> None:
    path = short_tmp / "sidecar.sock"
    path.write_text("not a socket\n")
    err = start_refused(f"unix:{path}", sidecar_env)
    assert str(path) in err and "not a socket" in err, err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert path.read_text() == "not a socket\n"
    assert os.listdir(short_tmp) == ["sidecar.sock"]  # nothing left beside it either


def test_a_path_that_cannot_be_bound_is_a_one_line_error_naming_it(
    sidecar_env: dict[str, str],
) -> None:
    path = "/proc/strata-test.sock"  # exists as a folder, never takes a socket
    err = start_refused(f"unix:{path}", sidecar_env)
    assert f"cannot listen on unix:{path}: No such file or directory" in err, err
    assert len(err.strip().splitlines()) == 1, err  # not the temporary name, no grpc line


def test_a_metrics_port_in_use_is_a_one_line_start_up_error(
    short_tmp: Path, sidecar_env: dict[str, str]
) -> None:
    import socket  # noqa: PLC0415

    with socket.socket() as holder:  # no SO_REUSEPORT: nobody may share it
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        path = short_tmp / "sidecar.sock"
        sidecar = SidecarProcess(
            f"unix:{path}", env=sidecar_env, metrics_listen=f"127.0.0.1:{port}"
        )
        refused = sidecar.expect_refusal()
    assert refused.returncode == 1
    err = refused.stderr + refused.stdout
    assert "metrics_listen" in err and "Traceback" not in err, err
    assert "Event loop is closed" not in err
    assert os.listdir(short_tmp) == []


def test_taking_over_from_a_sidecar_without_reuseport_waits_for_its_metrics_port(
    short_tmp: Path, sidecar_env: dict[str, str], launched: list[SidecarProcess]
) -> None:
    """An older sidecar holds the metrics port without SO_REUSEPORT: the new one starts
    anyway, takes the socket over, and serves /metrics once the port is free."""
    import socket  # noqa: PLC0415

    path = short_tmp / "sidecar.sock"
    with (
        socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as old_grpc,
        socket.socket() as old_metrics,
    ):
        old_grpc.bind(str(path))
        old_grpc.listen()
        old_metrics.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        old_metrics.bind(("127.0.0.1", 0))
        old_metrics.listen()
        metrics = f"127.0.0.1:{old_metrics.getsockname()[1]}"
        new = make(launched, short_tmp, sidecar_env, "new", metrics=metrics)
        new.start()
    deadline = time.monotonic() + 10
    while True:
        try:
            body = urllib.request.urlopen(f"http://{metrics}/metrics", timeout=2).read()
            break
        except OSError:
            assert time.monotonic() < deadline, "metrics never came up"
            time.sleep(0.1)
    assert b"strata_lookups_total" in body
    assert proc_of(new).poll() is None
    assert "metrics_wait" in (short_tmp / "new.log").read_text()
