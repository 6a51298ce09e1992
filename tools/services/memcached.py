"""Recipe: a memcached with 128 MB, TCP only (as ``nobody`` when started by root, since
memcached refuses to run as root).

Not guaranteed: anything survives a restart or memory pressure (it is a cache).
"""

from __future__ import annotations

import socket
from pathlib import Path

from tools.services.base import HOST, Options, Record, Server, ServiceError
from tools.services.procs import is_root, spawn, which


def _start(run_dir: Path, port: int, opts: Options) -> Record:
    user = ["-u", "nobody"] if is_root() else []
    argv = [which("memcached"), *user, "-l", HOST, "-p", str(port), "-U", "0",
            "-m", "128", "-c", "1024"]  # fmt: skip
    return spawn("memcached", argv, run_dir, port)


def _check(rec: Record) -> None:
    with socket.create_connection((HOST, rec.port), timeout=2) as sock:
        sock.sendall(b"version\r\n")
        reply = b""
        while not reply.endswith(b"\r\n"):
            chunk = sock.recv(256)
            if not chunk:
                break
            reply += chunk
    if not reply.startswith(b"VERSION "):
        raise ServiceError(f"unexpected reply to 'version': {reply!r}")


def _env(rec: Record, run_dir: Path) -> dict[str, str]:
    return {"STRATA_TEST_MEMCACHED_SERVERS": f"{HOST}:{rec.port}"}


SERVER = Server("memcached", "memcached", _start, _check, _env)
