"""`kong_plugin.peer` and the client's check of who answers at the sidecar socket.

A listener of another uid is simulated by expecting a uid other than ours (no root
needed); tests/integration/test_socket_peer.py does it with a real second user.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from strata.v1 import cache_pb2 as pb

from kong_plugin.client import (
    SidecarClient,
    SidecarUnavailableError,
    SidecarUntrustedError,
    socket_path_of,
)
from kong_plugin.peer import Verdict, check_peer, expected_uid
from kong_plugin.report import Reporter

ME = os.geteuid()
NOT_ME = ME + 1


class Listener:
    """A plain unix listener that accepts and counts the bytes it receives."""

    def __init__(self, path: Path) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(str(path))
        self.sock.listen(64)
        self.sock.settimeout(0.1)
        self.accepted = 0
        self.received = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            self.accepted += 1
            with conn:
                conn.settimeout(0.2)
                try:
                    while data := conn.recv(65536):
                        self.received += len(data)
                except TimeoutError:
                    pass

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.sock.close()


@pytest.fixture
def listener(short_tmp: Path) -> Iterator[Listener]:
    ln = Listener(short_tmp / "s.sock")
    yield ln
    ln.close()


def test_our_own_listener_is_trusted_and_named(short_tmp: Path, listener: Listener) -> None:
    found = check_peer(str(short_tmp / "s.sock"), ME)
    assert found.verdict is Verdict.TRUSTED
    assert (found.pid, found.uid) == (os.getpid(), ME)


def test_a_listener_of_another_uid_is_untrusted_and_named(
    short_tmp: Path, listener: Listener
) -> None:
    path = short_tmp / "s.sock"
    found = check_peer(str(path), NOT_ME)
    assert found.verdict is Verdict.UNTRUSTED
    assert str(path) in found.reason
    assert f"pid {os.getpid()} uid {ME}" in found.reason
    assert f"expected uid {NOT_ME}" in found.reason


def test_nothing_or_nobody_listening_is_unreachable(short_tmp: Path) -> None:
    assert check_peer(str(short_tmp / "none.sock"), ME).verdict is Verdict.UNREACHABLE
    dead = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    dead.bind(str(short_tmp / "dead.sock"))
    dead.close()
    found = check_peer(str(short_tmp / "dead.sock"), ME)
    assert found.verdict is Verdict.UNREACHABLE and "refused" in found.reason


def test_a_file_or_a_symbolic_link_is_untrusted(short_tmp: Path, listener: Listener) -> None:
    (short_tmp / "file").write_text("x")
    assert check_peer(str(short_tmp / "file"), ME).verdict is Verdict.UNTRUSTED
    link = short_tmp / "link.sock"
    link.symlink_to(short_tmp / "s.sock")  # to a socket we would trust: still refused
    found = check_peer(str(link), ME)
    assert found.verdict is Verdict.UNTRUSTED and "symbolic link" in found.reason


def test_the_expected_uid_defaults_to_our_own() -> None:
    assert expected_uid(None) == ME
    assert expected_uid(0) == 0


@pytest.mark.parametrize(
    ("target", "path"),
    [("unix:/run/s.sock", "/run/s.sock"), ("unix:///run/s.sock", "/run/s.sock"), ("h:1", None)],
)
def test_socket_path_of_targets(target: str, path: str | None) -> None:
    assert socket_path_of(target) == path


def test_the_client_sends_nothing_to_a_socket_of_another_uid(
    short_tmp: Path, listener: Listener
) -> None:
    address = f"unix:{short_tmp}/s.sock"
    client = SidecarClient(address, timeout_s=0.5, expected_uid=NOT_ME)
    try:
        started = time.monotonic()
        with pytest.raises(SidecarUntrustedError) as info:
            client.lookup(b"k", [(b"authorization", b"Bearer secret")])
        assert time.monotonic() - started < 0.4  # fails fast, not at the deadline
        assert f"uid {ME}" in str(info.value) and f"expected uid {NOT_ME}" in str(info.value)
        for _ in range(3):  # and again, from the kept verdict
            with pytest.raises(SidecarUntrustedError):
                client.store(b"k", pb.Entry())
    finally:
        client.close()
    time.sleep(0.3)
    assert listener.received == 0
    assert listener.accepted >= 1  # it was checked, and sent nothing


def test_untrusted_is_logged_at_most_once_a_second(
    short_tmp: Path, listener: Listener, caplog: pytest.LogCaptureFixture
) -> None:
    client = SidecarClient(f"unix:{short_tmp}/s.sock", timeout_s=0.5, expected_uid=NOT_ME)
    try:
        for _ in range(20):
            with pytest.raises(SidecarUntrustedError):
                client.lookup(b"k")
    finally:
        client.close()
    lines = [r for r in caplog.records if "refusing the sidecar socket" in r.getMessage()]
    assert len(lines) == 1


def test_a_missing_socket_is_unavailable_not_untrusted(short_tmp: Path) -> None:
    client = SidecarClient(f"unix:{short_tmp}/none.sock", timeout_s=0.5)
    try:
        with pytest.raises(SidecarUnavailableError):
            client.lookup(b"k")
    finally:
        client.close()


def test_a_report_the_caller_logs_itself_goes_to_kong_only(
    caplog: pytest.LogCaptureFixture,
) -> None:
    sent: list[str] = []

    class Log:
        def err(self, text: str) -> None:
            sent.append(text)

    class Kong:
        log = Log()

    reporter = Reporter(interval_s=30.0)
    for _ in range(5):
        reporter.report(Kong(), "err", "sidecar-untrusted", "socket untrusted", local=False)
    assert not [r for r in caplog.records if "socket untrusted" in r.getMessage()]
    assert sent == ["[strata-cache] socket untrusted"]
