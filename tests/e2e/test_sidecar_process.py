"""The sidecar as operators run it: a separate process, signals, /metrics, `make run`."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from strata.v1 import cache_pb2 as pb

from kong_plugin.client import SidecarClient, SidecarRejectedError
from tools.stack import SidecarProcess, free_port, wait_serving

pytestmark = pytest.mark.e2e
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def sidecar(
    short_tmp: Path, sidecar_env: dict[str, str]
) -> Iterator[tuple[str, str, SidecarProcess]]:
    listen = f"unix:{short_tmp}/sidecar.sock"
    metrics = f"127.0.0.1:{free_port()}"
    env = {
        **sidecar_env,
        "STRATA_LISTEN": listen,
        "STRATA_METRICS_LISTEN": metrics,
        "STRATA_SHUTDOWN_GRACE_SECONDS": "5",
    }
    process = SidecarProcess(listen, env=env, listen_arg=False)
    try:
        process.start()
        yield listen, metrics, process
    finally:
        process.kill()


def test_metrics_endpoint_counts_lookups(sidecar: tuple[str, str, SidecarProcess]) -> None:
    listen, metrics, _ = sidecar
    client = SidecarClient(listen, timeout_s=2.0)
    client.lookup(b"k")
    client.store(b"k", pb.Entry(status=200, body=b"x", ttl_ms=60_000))
    client.lookup(b"k")
    with contextlib.suppress(SidecarRejectedError):  # the refusal is what we count below
        client.lookup(b"")
    client.close()
    text = urllib.request.urlopen(f"http://{metrics}/metrics", timeout=5).read().decode()
    assert 'strata_lookups_total{outcome="hit",tier="memory"} 1.0' in text
    assert 'strata_lookups_total{outcome="miss",tier=""} 1.0' in text
    assert 'strata_stores_total{result="stored"} 1.0' in text
    assert 'strata_rejected_requests_total{operation="lookup",reason="empty_key"} 1.0' in text
    assert 'strata_tier_entries{tier="memory"} 1.0' in text


def test_sigterm_lets_in_flight_calls_finish(
    sidecar: tuple[str, str, SidecarProcess],
) -> None:
    listen, _, process = sidecar
    holder = SidecarClient(listen, timeout_s=5.0)
    assert holder.lookup(b"slow", coalesce_wait_ms=1).fill_lease
    result: dict[str, object] = {}

    def waiter() -> None:
        c = SidecarClient(listen, timeout_s=5.0)
        t0 = time.monotonic()
        try:
            result["outcome"] = c.lookup(b"slow", coalesce_wait_ms=1500).outcome
        except Exception as exc:
            result["error"] = exc
        result["elapsed"] = time.monotonic() - t0

    t = threading.Thread(target=waiter)
    t.start()
    time.sleep(0.5)  # the waiter is now inside the server, waiting on the lease
    process.signal(signal.SIGTERM)
    t.join(10)
    assert "error" not in result, result
    assert result["outcome"] == pb.OUTCOME_MISS  # its wait ran out normally
    assert process.wait(10) == 0
    assert not Path(listen[len("unix:") :]).exists()
    out = process.output().text
    assert '"message":"sidecar stopped"' in out
    assert "Traceback" not in out


def test_make_run_serves_the_example_stack_and_stops_on_ctrl_c(
    short_tmp: Path, sidecar_env: dict[str, str]
) -> None:
    listen = f"unix:{short_tmp}/run.sock"
    gateway = f"127.0.0.1:{free_port()}"
    env = {
        **sidecar_env,
        "STRATA_LISTEN": listen,
        "STRATA_METRICS_LISTEN": f"127.0.0.1:{free_port()}",
        "STRATA_KONGSIM_LISTEN": gateway,
        "STRATA_KONGSIM_UPSTREAM_LISTEN": f"127.0.0.1:{free_port()}",
    }
    proc = subprocess.Popen(
        ["make", "--no-print-directory", "run"],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        wait_serving(listen, timeout=120, proc=proc)
        words: list[str] = []
        deadline = time.monotonic() + 60
        while len(words) < 2 and time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"http://{gateway}/products/1", timeout=5) as resp:
                    words.append(resp.headers["X-Cache-Status"])
            except OSError:
                time.sleep(0.2)
        assert words == ["Miss", "Hit"]
        os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in a terminal does
        proc.wait(30)
        out = proc.stdout.read().decode() if proc.stdout else ""
        assert "make run: stopped" in out, out
        assert '"message":"sidecar stopped"' in out, out
        assert "Traceback" not in out, out
        assert not Path(listen[len("unix:") :]).exists()
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
        if proc.stdout:
            proc.stdout.close()
