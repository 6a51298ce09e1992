"""Child processes of a cluster run: start one with its output in a log file, wait until it
accepts TCP connections, stop it, and find every process a run left behind.

Every child starts in a session of its own, so a terminal's Ctrl-C reaches only the
process that runs the cluster, which then stops the children in order.

Not guaranteed: that a child still listens on its port after `wait_listening` returned; that
`leftovers` sees processes of another pid namespace or whose command line does not name the
run's folder (every child of a cluster run names it: sockets, prefixes, configs).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

#: Default time a child gets to start serving / to exit after its stop signal.
START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 15.0


class ChildError(RuntimeError):
    """A child exited before it served, or did not serve in time (it was killed)."""


def tail(path: Path, lines: int = 20) -> str:
    """The last `lines` lines of the log at `path`, indented ('' if unreadable)."""
    try:
        text = path.read_text(errors="replace").splitlines()[-lines:]
    except OSError:
        return ""
    return "\n".join(f"  | {line}" for line in text)


def port_open(listen: str, timeout: float = 0.5) -> bool:
    """True if something accepts a TCP connection at ``host:port``."""
    host, _, port = listen.rpartition(":")
    try:
        with socket.create_connection((host, int(port)), timeout):
            return True
    except OSError:
        return False


class Child:
    """One child process: `argv` run in `cwd` with `env`, stdout and stderr appended to
    `log`. `stop_signal` asks it to stop (SIGKILL follows after the stop timeout)."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        *,
        log: Path,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
        stop_signal: int = signal.SIGTERM,
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self.log = log
        self.env = dict(env) if env is not None else None
        self.cwd = cwd
        self.stop_signal = stop_signal
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return None if self.proc is None else self.proc.pid

    @property
    def returncode(self) -> int | None:
        return None if self.proc is None else self.proc.poll()

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def spawn(self) -> None:
        if self.alive():
            raise RuntimeError(f"{self.name} is already running")
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                self.argv,
                env=self.env,
                cwd=self.cwd,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def wait_listening(self, listen: str, timeout: float = START_TIMEOUT_S) -> None:
        """Until `listen` accepts connections; `ChildError` (with the log's tail) if the
        child exits first or `timeout` s pass (it is then killed)."""
        deadline = time.monotonic() + timeout
        while not port_open(listen):
            rc = self.returncode
            if rc is not None:
                raise ChildError(f"{self.name} exited with {rc} before serving\n{tail(self.log)}")
            if time.monotonic() > deadline:
                self.kill()
                raise ChildError(
                    f"{self.name} did not listen on {listen} within {timeout:.0f} s\n"
                    f"{tail(self.log)}"
                )
            time.sleep(0.05)

    def stop(self, timeout: float = STOP_TIMEOUT_S) -> int | None:
        """`stop_signal`, wait up to `timeout` s, then SIGKILL; the exit code (None if
        never started)."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(self.stop_signal)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return self.kill()

    def kill(self) -> int | None:
        """SIGKILL its whole process group (its session: NGINX's workers, say) and wait;
        the exit code (None if never started)."""
        if self.proc is None:
            return None
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        return self.proc.wait(10)


def _processes() -> dict[int, tuple[int, bytes]]:
    """Every live process: pid -> (parent pid, command line)."""
    table = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[0] not in ("Z", "X"):
            table[int(entry.name)] = (int(fields[1]), cmdline)
    return table


#: The programs a cluster runs (first word of the command line, base name prefix): a
#: process that merely names the run folder (``tail -f .run/cluster/node-1/sidecar.log``)
#: is not one of them.
PROGRAMS = (b"python", b"nginx")


def leftovers(marker: str | os.PathLike[str]) -> list[tuple[int, str]]:
    """(pid, command line) of every live Python or NGINX process whose command line
    contains `marker` (a run folder), and of their descendants (NGINX's workers do not
    name it); this process excluded."""
    needle = os.fsencode(str(marker))
    table = _processes()
    found = {
        pid
        for pid, (_, cmdline) in table.items()
        if needle in cmdline and os.path.basename(cmdline.split(b"\0", 1)[0]).startswith(PROGRAMS)
    }
    found.discard(os.getpid())
    grew = True
    while grew:
        children = {pid for pid, (ppid, _) in table.items() if ppid in found} - found
        found |= children
        grew = bool(children)
    return [
        (pid, table[pid][1].replace(b"\0", b" ").decode(errors="replace").strip())
        for pid in sorted(found)
    ]


def kill_leftovers(marker: str | os.PathLike[str], timeout: float = 5.0) -> list[int]:
    """SIGTERM, then SIGKILL, every process `leftovers(marker)` finds; their pids."""
    pids = [pid for pid, _ in leftovers(marker)]
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        deadline = time.monotonic() + timeout
        while leftovers(marker) and time.monotonic() < deadline:
            time.sleep(0.05)
        if not leftovers(marker):
            break
    return pids
