"""The source tree the fault suite measures (`Checkout`), and its bookkeeping of the child
processes it starts (`Proc`, with the signals it sent; `Watch`, which stamps exit times).

Product processes run the code of `Checkout.root`: they start with that directory as
their working directory and ``PYTHONPATH=<root>:<root>/proto`` (the generated ``strata``
package lives in ``proto/``), and kongsim passes ``PYTHONPATH`` on to the plugin server
(``--nginx-main-env``), which Kong would otherwise start with an empty environment. So the
suite can measure an older worktree with the interpreter of a newer one. The harness itself
imports none of the product's packages.

Not guaranteed: an exit time closer than `Watch`'s 20 ms polling interval.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent


def _looks_like_checkout(path: Path) -> bool:
    return all((path / pkg / "__init__.py").is_file() for pkg in ("sidecar", "kongsim"))


@dataclass(frozen=True)
class Checkout:
    """The source tree whose sidecar, plugin and kongsim are measured."""

    root: Path

    @classmethod
    def resolve(cls, given: str | None) -> Checkout:
        """`given`, else the working directory if it is a checkout, else this file's."""
        for candidate in (given, os.getcwd(), str(HERE.parent)):
            if candidate is not None and _looks_like_checkout(Path(candidate)):
                return cls(Path(candidate).resolve())
        raise SystemExit(f"not a Strata checkout: {given}")

    def env(self) -> dict[str, str]:
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("STRATA_", "GRPC_", "KONG_", "PYTHON"))
        }
        env["PYTHONPATH"] = os.pathsep.join([str(self.root), str(self.root / "proto")])
        return env

    def describe(self) -> dict[str, Any]:
        def git(*args: str) -> str:
            out = subprocess.run(
                ["git", "-C", str(self.root), *args], capture_output=True, text=True, check=False
            )
            return out.stdout.strip()

        dirty = git("status", "--porcelain", "--untracked-files=no")
        return {"root": str(self.root), "commit": git("rev-parse", "--short", "HEAD"),
                "modified_files": len(dirty.splitlines())}  # fmt: skip


# --------------------------------------------------------------------------- processes


@dataclass
class Proc:
    """A child process we started, with the signals we sent it and when it exited."""

    name: str
    popen: subprocess.Popen[bytes]
    log: Path
    started: float = field(default_factory=time.monotonic)
    signals: list[int] = field(default_factory=list)
    exited_at: float | None = None

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def signal(self, sig: int) -> None:
        if self.alive():
            self.signals.append(sig)
            self.popen.send_signal(sig)

    def wait(self, timeout: float) -> bool:
        try:
            self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            return False
        return True

    def log_tail(self, lines: int = 6) -> str:
        with contextlib.suppress(OSError):
            text = self.log.read_text(errors="replace").strip().splitlines()
            return "\n".join(line[:300] for line in text[-lines:])
        return ""

    def failure(self) -> str | None:
        """Why this process ended other than as asked (None: running, or as asked)."""
        rc = self.popen.poll()
        if rc is None:
            return None
        asked_kill = signal.SIGKILL in self.signals
        asked_term = signal.SIGTERM in self.signals
        if asked_kill and rc == -signal.SIGKILL:
            return None
        if asked_term and not asked_kill and rc in (0, -signal.SIGTERM):
            return None
        how = f"signal {signal.Signals(-rc).name}" if rc < 0 else f"exit code {rc}"
        when = "after SIGTERM" if asked_term else "unasked"
        return f"{self.name} pid {self.pid}: {how} ({when})"


class Watch:
    """Stamps the exit time of every registered process (polled every 20 ms)."""

    def __init__(self) -> None:
        self._procs: list[Proc] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def add(self, proc: Proc) -> Proc:
        with self._lock:
            self._procs.append(proc)
        return proc

    def _run(self) -> None:
        while not self._stop.wait(0.02):
            with self._lock:
                for p in self._procs:
                    if p.exited_at is None and p.popen.poll() is not None:
                        p.exited_at = time.monotonic()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
