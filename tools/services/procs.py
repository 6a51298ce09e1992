"""Processes through ``/proc``: free ports, spawning a server, telling our own pid apart from
a reused one, and stopping it.

Linux only. Not guaranteed: that a port picked free stays free until the server binds it;
that a process still holds the port it was started with (`owns_port` answers None when the
process's fds cannot be read).
"""

from __future__ import annotations

import contextlib
import os
import shlex
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

from tools.services.base import HOST, STOP_TIMEOUT_S, Record, Server, ServiceError

# Defaults of the servers started here and of things a developer may run beside them.
WELL_KNOWN_PORTS = frozenset({2024, 5432, 6379, 8000, 8080, 9090, 9092, 9093, 9100, 9464, 11211})


def free_port() -> int:
    """A loopback port that was free a moment ago and is no server's well-known default."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind((HOST, 0))
            port: int = sock.getsockname()[1]
        if port not in WELL_KNOWN_PORTS:
            return port
    raise ServiceError("could not find a free loopback port")


def port_free(listen: str) -> bool:
    """True if ``host:port`` can be bound now by a server (which sets ``SO_REUSEADDR``, as
    NGINX, aiohttp and the services do: connections in TIME_WAIT do not hold the port, a
    listener does). Another process may take it at once."""
    host, _, port = listen.rpartition(":")
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, int(port)))
        except OSError:
            return False
    return True


def taken(listens: Sequence[tuple[str, str]]) -> tuple[str, str] | None:
    """The first (name, ``host:port``) of `listens` that cannot be bound now (`port_free`)."""
    return next(((name, listen) for name, listen in listens if not port_free(listen)), None)


def parse_stat(stat: str) -> tuple[str, int]:
    """(state letter, start time in clock ticks) from the text of ``/proc/<pid>/stat``."""
    fields = stat[stat.rindex(")") + 2 :].split()  # fields[0] is field 3 of proc(5)
    return fields[0], int(fields[19])


def proc_stat(pid: int) -> tuple[str, int] | None:
    """(state letter, start time in clock ticks) of a process, or None if it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="utf-8")
    except OSError:
        return None
    return parse_stat(stat)


def program_of(cmdline: bytes) -> str:
    """Base name of the first word of a ``/proc/<pid>/cmdline`` ('' if there is none)."""
    argv0 = cmdline.split(b"\0", 1)[0].decode(errors="replace")
    words = argv0.split()  # redis-server retitles itself "redis-server 127.0.0.1:<port>"
    return os.path.basename(words[0]) if words else ""


def program(pid: int) -> str:
    """Base name of the first word of a process's command line ('' if unreadable)."""
    try:
        return program_of(Path(f"/proc/{pid}/cmdline").read_bytes())
    except OSError:
        return ""


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie does not; our own exited child is reaped here)."""
    if pid <= 0:  # a placeholder record; os.waitpid(-1) would reap any child
        return False
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)
    stat = proc_stat(pid)
    return stat is not None and stat[0] not in ("Z", "X")


def is_ours(server: Server, rec: Record) -> bool:
    """Whether ``rec``'s pid is still the process recorded: alive, same start time, same
    program."""
    stat = proc_stat(rec.pid)
    return (
        alive(rec.pid)
        and stat is not None
        and stat[1] == rec.start_ticks
        and program(rec.pid) == server.program
    )


def listening_inodes(tcp_tables: list[str], port: int) -> set[str]:
    """``socket:[inode]`` names of the sockets listening on ``port`` in ``/proc/net/tcp``-style
    tables (each given as its text)."""
    inodes: set[str] = set()
    for table in tcp_tables:
        for line in table.splitlines()[1:]:
            cols = line.split()
            if cols[3] == "0A" and int(cols[1].rsplit(":", 1)[1], 16) == port:  # 0A: LISTEN
                inodes.add(f"socket:[{cols[9]}]")
    return inodes


def owns_port(pid: int, port: int) -> bool | None:
    """Whether ``pid`` holds a socket listening on ``port``; None if its fds are unreadable."""
    tables: list[str] = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            tables.append(Path(table).read_text(encoding="ascii"))
    inodes = listening_inodes(tables, port)
    if not inodes:
        return False
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except PermissionError:
        return None
    except OSError:
        return False
    for fd in fds:
        with contextlib.suppress(OSError):
            if os.readlink(f"/proc/{pid}/fd/{fd}") in inodes:
                return True
    return False


def wait_gone(pid: int, timeout: float) -> bool:
    """Wait up to ``timeout`` s for ``pid`` to stop running; whether it did."""
    deadline = time.monotonic() + timeout
    while alive(pid):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)
    return True


def spawn(
    name: str,
    argv: list[str],
    run_dir: Path,
    port: int,
    *,
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
) -> Record:
    """Start ``argv`` in its own session, output to ``<name>.log``, and record its pid."""
    log_path = run_dir / f"{name}.log"
    with open(log_path, "ab") as log:
        stamp = time.strftime("%Y-%m-%d %H:%M:%S")
        log.write(f"=== tools.services {stamp}: {shlex.join(argv)}\n".encode())
        log.flush()
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # survives this process and its terminal
            cwd=cwd or run_dir,
            env=env,
        )
    stat = proc_stat(proc.pid)
    (run_dir / f"{name}.pid").write_text(f"{proc.pid}\n", encoding="ascii")
    return Record(pid=proc.pid, port=port, start_ticks=stat[1] if stat else -1)


def terminate(server: Server, rec: Record) -> None:
    """SIGTERM, wait, then SIGKILL - only if the pid is still the process we recorded."""
    for sig, wait in ((signal.SIGTERM, STOP_TIMEOUT_S), (signal.SIGKILL, 5.0)):
        if not is_ours(server, rec):
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(rec.pid, sig)
        if wait_gone(rec.pid, wait):
            return
    raise ServiceError(f"{server.name}: pid {rec.pid} survived SIGKILL")


def which(name: str) -> str:
    """The path of program ``name`` on PATH; ServiceError saying how to install it."""
    path = shutil.which(name)
    if path is None:
        raise ServiceError(f"{name} not found on PATH (apt-get install it)")
    return path


def is_root() -> bool:
    return os.geteuid() == 0
