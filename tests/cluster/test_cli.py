"""`python -m tools.cluster` (what `make cluster` runs): it refuses clearly when the shared
services are down (exit 2) or the gateway port is taken (exit 1); it starts, serves through
NGINX, and SIGINT (Ctrl-C) stops everything, nothing left running (`pgrep`)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cluster.support import cluster_dir
from tools import services
from tools.services.procs import free_port
from tools.stack import REPO

pytestmark = pytest.mark.integration


@pytest.fixture
def run_dir() -> Iterator[Path]:
    with cluster_dir() as d:
        yield d / "run"


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("STRATA_")}
    env["STRATA_KONGSIM_LISTEN"] = f"127.0.0.1:{free_port()}"
    env["STRATA_KONGSIM_UPSTREAM_LISTEN"] = f"127.0.0.1:{free_port()}"
    return {**env, **extra}


def _cli(run_dir: Path) -> list[str]:
    return [sys.executable, "-m", "tools.cluster", "--run-dir", str(run_dir)]


def _pgrep(marker: Path) -> str:
    argv = ["pgrep", "-af", str(marker)]
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    return done.stdout.strip()


def test_without_the_shared_services_it_says_how_to_start_them(
    run_dir: Path, tmp_path: Path
) -> None:
    done = subprocess.run(
        _cli(run_dir),
        env=_env(STRATA_RUN_DIR=str(tmp_path)),  # a services run dir with nothing running
        cwd=REPO,
        capture_output=True,
        check=False,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2, done.stderr
    assert "make services-up" in done.stderr
    assert _pgrep(run_dir) == ""


def _scraped(query: str, want: float, timeout: float = 30.0) -> bool:
    """Whether the services' Prometheus answers `query` with `want` within `timeout`."""
    url = services.load_env()["STRATA_TEST_PROMETHEUS_URL"]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        q = urllib.parse.urlencode({"query": query})
        with urllib.request.urlopen(f"{url}/api/v1/query?{q}", timeout=5) as resp:
            result = json.load(resp)["data"]["result"]
        if result and float(result[0]["value"][1]) == want:
            return True
        time.sleep(0.5)
    return False


def text_has(path: Path, text: str) -> bool:
    return text in path.read_text()


def test_a_taken_gateway_port_is_refused(run_dir: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run(
            _cli(run_dir),
            env=_env(STRATA_KONGSIM_LISTEN=f"127.0.0.1:{port}"),
            cwd=REPO,
            capture_output=True,
            check=False,
            text=True,
            timeout=60,
        )
    assert done.returncode == 1
    assert f"127.0.0.1:{port} (gateway (NGINX)) is already in use" in done.stderr


def test_it_serves_through_nginx_and_ctrl_c_leaves_nothing_running(
    services_up: None, run_dir: Path, tmp_path: Path
) -> None:
    env = {**_env(), "STRATA_ADMIN_TOKEN": "cluster-test-token-0123456789abcdef"}
    out = tmp_path / "out.txt"
    with out.open("wb") as sink:
        proc = subprocess.Popen(
            _cli(run_dir), env=env, cwd=REPO, stdout=sink, stderr=subprocess.STDOUT
        )
    try:
        deadline = time.monotonic() + 60
        while "Ctrl-C stops the cluster" not in out.read_text():
            assert proc.poll() is None, out.read_text()
            assert time.monotonic() < deadline, out.read_text()
            time.sleep(0.1)
        assert (run_dir.stat().st_mode & 0o777) == 0o700
        gateway = f"http://{env['STRATA_KONGSIM_LISTEN']}"
        caches = []
        for _ in range(2):
            with urllib.request.urlopen(gateway + "/products/1", timeout=10) as resp:
                assert resp.status == 200
                caches.append(resp.headers["X-Cache-Status"])
        assert caches == ["Miss", "Hit"]
        assert _pgrep(run_dir) != ""
        assert text_has(out, "admin API")  # one admin port per node, printed with a token
        # the services' Prometheus scrapes every node as the deploy stack's jobs
        assert _scraped(('up{job="strata-plugin",kong_node="node-2"}'), 1.0)
        assert _scraped(('up{job="strata-sidecar",kong_node="node-1"}'), 1.0)
        # a part that dies is started again (as a supervisor with Restart=always would)
        found = subprocess.run(
            ["pgrep", "-f", f"unix:{run_dir}/node-1/sidecar.sock"],
            capture_output=True,
            text=True,
            check=False,
        )
        os.kill(int(found.stdout.split()[0]), signal.SIGKILL)
        deadline = time.monotonic() + 60
        while "node-1 sidecar is back" not in out.read_text():
            assert time.monotonic() < deadline, out.read_text()
            time.sleep(0.2)
        assert "node-1 sidecar exited (-9); starting it again" in out.read_text()
    finally:
        proc.send_signal(signal.SIGINT)
        rc = proc.wait(60)
    text = out.read_text()
    assert rc == 0, text
    assert "nothing of the cluster is left running" in text
    assert _pgrep(run_dir) == ""
