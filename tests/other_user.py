"""A second local user for socket tests: a child process that drops to uid/gid 65534.

The child is started as root and drops its privileges itself, after the interpreter has
loaded (the venv's interpreter may live under a folder that user cannot read); it only
does socket work and reports back through its stdout. Tests using it need root
(`needs_root`).
"""

from __future__ import annotations

import errno
import os
import select
import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

#: The uid and gid the child runs as ("nobody" on Debian).
OTHER_UID = 65534

needs_root = pytest.mark.skipif(
    os.geteuid() != 0, reason="acting as a second local user needs root (setuid in a child)"
)


def _become_other() -> None:
    os.setgroups([])
    os.setgid(OTHER_UID)
    os.setuid(OTHER_UID)


def _child(*args: str) -> subprocess.Popen[bytes]:
    """This module run as a fresh interpreter (started as root, it drops to `OTHER_UID`
    before touching any socket). A fresh process, not a fork: the test process runs gRPC,
    whose threads do not survive a fork."""
    root = Path(__file__).resolve().parent.parent
    return subprocess.Popen(
        [sys.executable, "-m", "tests.other_user", *args],
        cwd=root,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PYTHONPATH": str(root)},
    )


def connect_as_other_user(path: Path | str) -> str:
    """Connect to the unix socket `path` as `OTHER_UID`: "connected", or the errno name
    (e.g. "EACCES"), or "ExceptionName: message" for anything else."""
    child = _child("connect", str(path))
    out, _ = child.communicate(timeout=30)
    return out.decode().strip()


class Impostor:
    """A listening unix socket at `path` owned by `OTHER_UID`, in a child process that
    accepts every connection and counts what it receives. `stop()` returns
    (connections, bytes received); `pid` is the listening process's."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.pid = 0
        self._child: subprocess.Popen[bytes] | None = None

    def start(self) -> Impostor:
        child = self._child = _child("serve", str(self.path))
        self.pid = child.pid
        assert child.stdout is not None
        ready = child.stdout.readline()
        if ready.strip() != b"R":
            self.stop()
            raise RuntimeError(f"the impostor could not listen on {self.path}: {ready!r}")
        return self

    def stop(self) -> tuple[int, int]:
        """Stop the child; (connections accepted, bytes received)."""
        child, self._child = self._child, None
        if child is None:
            return 0, 0
        out, _ = child.communicate(timeout=30)  # closing its stdin tells it to stop
        self.pid = 0
        try:
            conns, received = out.decode().split()
        except ValueError:
            return 0, 0
        return int(conns), int(received)

    def __enter__(self) -> Impostor:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _serve(path: str) -> tuple[int, int]:  # pragma: no cover - runs in the child
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(64)
    sys.stdout.write("R\n")
    sys.stdout.flush()
    open_conns: list[socket.socket] = []
    conns = received = 0
    stdin = sys.stdin.fileno()
    while True:
        watched: list[Any] = [listener, stdin, *open_conns]
        readable, _, _ = select.select(watched, [], [], 5.0)
        for item in readable:
            if item is listener:
                conn, _ = listener.accept()
                conns += 1
                open_conns.append(conn)
            elif item == stdin:
                if not os.read(stdin, 4096):
                    return conns, received
            else:
                assert isinstance(item, socket.socket)
                data = item.recv(65536)
                received += len(data)
                if not data:
                    open_conns.remove(item)
                    item.close()


def _connect(path: str) -> str:  # pragma: no cover - runs in the child
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(path)
    except OSError as exc:
        return errno.errorcode.get(exc.errno or 0, f"{type(exc).__name__}: {exc}")
    finally:
        sock.close()
    return "connected"


def main(argv: list[str]) -> None:  # pragma: no cover - runs in the child
    command, path = argv
    _become_other()
    if command == "serve":
        conns, received = _serve(path)
        sys.stdout.write(f"{conns} {received}\n")
    else:
        sys.stdout.write(_connect(path) + "\n")
    sys.stdout.flush()


@contextmanager
def shared_folder(mode: int = 0o1777) -> Iterator[Path]:
    """A fresh folder under /tmp with `mode` (default: sticky and world-writable, like
    /tmp itself), removed afterwards whoever created files in it."""
    folder = Path(tempfile.mkdtemp(prefix="strata-", dir="/tmp"))
    try:
        os.chmod(folder, mode)
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":  # pragma: no cover
    main(sys.argv[1:])
