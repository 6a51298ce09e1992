"""Private real servers for the fault suite: Redis, Memcached and PostgreSQL of a run dir
of its own, killed and restarted on the same port.

`PrivateServices` starts them through `tools.services`, and kills and restarts them on the
same port; it keeps that run dir's ``state.json`` current (`tools.services.restart` records
the new process), so ``down`` still stops what was restarted. It never looks at any other
run dir.

Not guaranteed: that a port given up by a killed server is still free when it restarts
(another process may take it; the restart then fails and says so); PostgreSQL's crash
recovery time after ``kill -9``.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path

SERVICE_NAMES = ("redis", "memcached", "postgres")


def _children(pid: int) -> list[int]:
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                stat = (entry / "stat").read_text()
                if int(stat[stat.rindex(")") + 2 :].split()[1]) == pid:
                    out.append(int(entry.name))
    return out


def _exists(pid: int) -> bool:
    """Whether `pid` is still in the process table (a zombie counts; our own is reaped)."""
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)
    return Path(f"/proc/{pid}").exists()


@contextlib.contextmanager
def _detached() -> Iterator[None]:
    """tools.services drops the Popen of a server it starts (the server outlives it, and is
    stopped by pid); quiet the ResourceWarning that dropping a running Popen raises."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        yield


class PrivateServices:
    """Redis, Memcached and PostgreSQL of a run dir of our own (see the module docstring)."""

    def __init__(self, run_dir: Path, names: Sequence[str] = SERVICE_NAMES) -> None:
        from tools import services  # noqa: PLC0415
        from tools.services.procs import alive  # noqa: PLC0415

        self._services = services
        self._alive = alive
        self.run_dir = run_dir
        self.names = list(names)
        self._killed: dict[str, list[int]] = {}

    def up(self) -> dict[str, str]:
        with _detached():
            self._services.up(self.run_dir, only=self.names)
        return self._services.load_env(self.run_dir)

    def down(self) -> None:
        self._services.down(self.run_dir, only=self.names)

    def _pid(self, name: str) -> int:
        rec = self._services.running(self.run_dir, name)
        if rec is None:
            raise RuntimeError(f"{name} of {self.run_dir} is not running")
        return rec.pid

    def kill(self, name: str) -> None:
        """SIGKILL the server (PostgreSQL: the postmaster and all its processes at once)."""
        pid = self._pid(name)
        pids = [pid, *(_children(pid) if name == "postgres" else [])]
        for each in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(each, signal.SIGKILL)
        self._killed[name] = pids
        deadline = time.monotonic() + 10
        while any(self._alive(each) for each in pids) and time.monotonic() < deadline:
            time.sleep(0.02)

    def restart(self, name: str, timeout: float = 60) -> None:
        """Start the killed server again on its port (same data dir) and wait until healthy.

        First waits (up to 10 s) until the killed processes are reaped: PostgreSQL refuses
        to start while the pid in its lock file exists, even as a zombie, and an orphan is
        reaped only when init gets to it."""
        killed, deadline = self._killed.pop(name, []), time.monotonic() + 10
        while any(_exists(pid) for pid in killed) and time.monotonic() < deadline:
            time.sleep(0.02)
        with _detached():
            self._services.restart(self.run_dir, name, timeout)

    def healthy(self, name: str) -> bool:
        return bool(self._services.healthy(self.run_dir, name))
