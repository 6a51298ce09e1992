"""The plugin server's processes: workers never outlive their supervisor, the backlog asked
for is the one the socket gets, and bad options fail at start with a message."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from kong_plugin.pluginserver.lifeline import supervisor_of

REPO = Path(__file__).resolve().parents[3]


def _workers_of(socket_name: str) -> list[int]:
    out = subprocess.run(
        ["pgrep", "-f", f"kong_plugin .*--socket-name {socket_name} .*--worker "],
        capture_output=True,
        text=True,
        check=False,
    )
    return [int(p) for p in out.stdout.split()]


def _start(prefix: Path, name: str, *extra: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "kong_plugin", "-p", str(prefix), "--socket-name", name, *extra],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def _wait_socket(path: Path, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 20
    while not path.exists():
        assert proc.poll() is None and time.monotonic() < deadline, "no socket"
        time.sleep(0.02)


def test_the_supervisor_pid_is_read_from_the_worker_command() -> None:
    assert supervisor_of(["-p", "/x", "--supervisor", "42"]) == 42
    assert supervisor_of(["--supervisor=7"]) == 7
    assert supervisor_of(["--supervisor", "x"]) is None
    assert supervisor_of(["-p", "/x"]) is None


@pytest.mark.parametrize("delay_s", [0.0, 0.1, 2.0])
def test_workers_never_outlive_a_killed_supervisor(tmp_path: Path, delay_s: float) -> None:
    """Killed while its workers are still starting (the race a review found) or once they
    serve: within seconds no worker of it is left."""
    name = f"life{int(delay_s * 10)}.sock"
    proc = _start(tmp_path, name, "--workers", "2")
    _wait_socket(tmp_path / name, proc)
    time.sleep(delay_s)
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    deadline = time.monotonic() + 8
    while _workers_of(name):
        assert time.monotonic() < deadline, f"orphaned workers: {_workers_of(name)}"
        time.sleep(0.1)


def test_the_listen_backlog_is_the_one_asked_for(tmp_path: Path) -> None:
    proc = _start(tmp_path, "bl.sock", "--workers", "1", "--listen-queue-size", "700")
    try:
        _wait_socket(tmp_path / "bl.sock", proc)
        time.sleep(1.0)  # the worker's loop listens again on it
        out = subprocess.run(
            ["ss", "-xlnH", "src", str(tmp_path / "bl.sock")],
            capture_output=True,
            text=True,
            check=False,
        )
        if out.returncode != 0 or not out.stdout.strip():
            pytest.skip("ss cannot list unix sockets here")
        assert out.stdout.split()[3] == "700", out.stdout
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--workers", "0"], "--workers"),
        (["--workers", "65"], "--workers"),
        (["--listen-queue-size", "0"], "--listen-queue-size"),
        (["--socket-name", "../x.sock"], "--socket-name"),
        (["--engine", "kong-pdk", "--workers", "2"], "drop --workers"),
        (["--near-cache-bytes", "-1"], "--near-cache-bytes"),
        (["-m"], "-m is not supported"),
        (["--no-lua-style"], "--no-lua-style is not supported"),
    ],
)
def test_bad_options_fail_at_start_naming_the_option(
    tmp_path: Path, args: list[str], message: str
) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "kong_plugin", "-p", str(tmp_path), *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert out.returncode == 2 and message in out.stderr, (out.returncode, out.stderr)
    assert not any(p.suffix == ".sock" for p in tmp_path.iterdir())


def test_a_worker_started_for_a_dead_supervisor_exits_at_once(tmp_path: Path) -> None:
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(tmp_path / "d.sock"))
    listener.listen(4)
    os.set_inheritable(listener.fileno(), True)
    fd = str(listener.fileno())
    argv = ["--worker", "0", "--workers", "2", "--listen-fd", fd, "--supervisor", "1"]
    out = subprocess.run(
        [sys.executable, "-m", "kong_plugin", "-p", str(tmp_path), *argv],
        cwd=REPO,
        pass_fds=(listener.fileno(),),
        capture_output=True,
        timeout=20,
        check=False,
    )
    listener.close()
    assert out.returncode == 0
