"""The processes of the fault suite: a checkout's sidecar and kongsim (which starts that
checkout's plugin server), the suite's own origin, and private real servers.

Product processes run the code of `Checkout.root`: they start with that directory as
their working directory and ``PYTHONPATH=<root>:<root>/proto`` (the generated ``strata``
package lives in ``proto/``), and kongsim passes ``PYTHONPATH`` on to the plugin server
(``--nginx-main-env``), which Kong would otherwise start with an empty environment. So the
suite can measure an older worktree with the interpreter of a newer one. The harness itself
imports none of the product's packages.

`PrivateServices` starts Redis, Memcached and PostgreSQL in a run dir of its own through
`tools.services`, and kills and restarts them on the same port; it keeps that run dir's
``state.json`` current (`tools.services.restart` records the new process), so ``down``
still stops what was restarted. It never looks at any other run dir. Sidecars are started
with `tools.stack.SidecarProcess` (which imports none of the product's modules either).

Not guaranteed: that a port given up by a killed server is still free when it restarts
(another process may take it; the restart then fails and says so); PostgreSQL's crash
recovery time after ``kill -9``.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.procs import wait_http
from tools.stack import SidecarProcess, SidecarStartError, free_port

HERE = Path(__file__).resolve().parent
SERVICE_NAMES = ("redis", "memcached", "postgres")


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


def get_json(url: str, timeout: float = 5) -> Any:
    import json  # noqa: PLC0415

    with urllib.request.urlopen(url, timeout=timeout) as resp:
        return json.load(resp)


def rss_bytes(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


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


class Sidecars:
    """Sidecar processes of one configuration (same socket, same metrics port)."""

    def __init__(
        self, checkout: Checkout, workdir: Path, settings: Mapping[str, str], watch: Watch
    ) -> None:
        self.checkout = checkout
        self.workdir = workdir
        self.address = f"unix:{workdir / 'sidecar.sock'}"
        self.settings = dict(settings)
        self.watch = watch
        self.all: list[Proc] = []
        self.current: Proc | None = None
        self._processes: dict[int, SidecarProcess] = {}  # by pid

    def spawn(self) -> Proc:
        """Start one more sidecar (the checkout's code) without waiting for it."""
        name = f"sidecar-{len(self.all) + 1}"
        process = SidecarProcess(
            self.address,
            env=self.checkout.env(),
            cwd=self.checkout.root,
            settings=self.settings,
            log=self.workdir / f"{name}.log",
        )
        popen = process.spawn()
        self._processes[popen.pid] = process
        proc = self.watch.add(Proc(name, popen, process.log or Path(os.devnull)))
        self.all.append(proc)
        return proc

    def wait_answering(self, proc: Proc, timeout: float) -> bool:
        """Wait until `proc` answers at the socket path as its owner (so the answer is not
        an older sidecar's). False if `proc` exits first or time runs out (it is left
        running then)."""
        try:
            self._processes[proc.pid].wait_serving(timeout, kill_on_timeout=False)
        except SidecarStartError:
            return False
        return True

    def start(self, timeout: float = 60) -> Proc:
        """Spawn one and wait until it answers (RuntimeError if it does not)."""
        proc = self.spawn()
        if not self.wait_answering(proc, timeout):
            raise RuntimeError(f"sidecar did not start:\n{proc.log_tail()}")
        self.current = proc
        return proc

    def stop(self, proc: Proc, timeout: float) -> float | None:
        """SIGTERM and wait; SIGKILL after `timeout`. Seconds it took, None if killed."""
        t0 = time.monotonic()
        proc.signal(signal.SIGTERM)
        if proc.wait(timeout):
            return time.monotonic() - t0
        proc.signal(signal.SIGKILL)
        proc.wait(10)
        return None

    def stop_all(self) -> None:
        for proc in self.all:
            if proc.alive():
                self.stop(proc, 15)


class Origin:
    """The suite's origin (`bench/faults_upstream.py`), counting the requests it serves."""

    def __init__(self, workdir: Path, large_share: float, delay_ms: float, watch: Watch) -> None:
        self.address = f"127.0.0.1:{free_port()}"
        log = workdir / "origin.log"
        argv = [sys.executable, str(HERE / "faults_upstream.py"), "--listen", self.address,
                "--large-share", str(large_share), "--delay-ms", str(delay_ms)]  # fmt: skip
        with log.open("ab") as out:
            popen = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT)
        self.proc = watch.add(Proc("origin", popen, log))
        wait_http(f"http://{self.address}/_origin/count", "the origin", popen)

    def count(self) -> int:
        return int(get_json(f"http://{self.address}/_origin/count")["items"])

    def stop(self) -> None:
        self.proc.signal(signal.SIGTERM)
        if not self.proc.wait(10):
            self.proc.signal(signal.SIGKILL)
            self.proc.wait(5)


def gateway_config(origin: str, sidecar: str, plugin: Mapping[str, Any]) -> dict[str, Any]:
    config = {**plugin, "sidecar": {**plugin.get("sidecar", {}), "address": sidecar}}
    return {
        "_format_version": "3.0",
        "services": [
            {
                "name": "origin",
                "url": f"http://{origin}",
                "routes": [
                    {
                        "name": "items",
                        "paths": ["/items"],
                        "strip_path": False,
                        "plugins": [{"name": "strata-cache", "config": config}],
                    }
                ],
            }
        ],
    }


class Gateway:
    """kongsim (not strict: it fails open as Kong does) with the checkout's plugin server."""

    def __init__(
        self, checkout: Checkout, workdir: Path, config: Mapping[str, Any], watch: Watch
    ) -> None:
        import yaml  # noqa: PLC0415

        self.address = f"127.0.0.1:{free_port()}"
        path = workdir / "kong.yml"
        path.write_text(yaml.safe_dump(dict(config)))
        log = workdir / "kongsim.log"
        argv = [sys.executable, "-m", "kongsim", "--config", str(path), "--listen", self.address,
                "--prefix", str(workdir / "kong"), "--log-level", "warn", "--wait",
                "--nginx-main-env", "PYTHONPATH"]  # fmt: skip
        with log.open("ab") as out:
            popen = subprocess.Popen(
                argv, cwd=checkout.root, env=checkout.env(), stdout=out, stderr=subprocess.STDOUT
            )
        self.proc = watch.add(Proc("kongsim", popen, log))
        self.base_url = f"http://{self.address}"
        wait_http(f"{self.base_url}/_kongsim/status", "kongsim", popen)

    def plugin_servers(self) -> dict[str, Any]:
        """Per plugin server: pid, restarts and exit codes (kongsim's status)."""
        try:
            servers = get_json(f"{self.base_url}/_kongsim/status")["plugin_servers"]
        except OSError as exc:
            return {"error": f"kongsim status unavailable: {exc}"}
        return {
            name: {k: s.get(k) for k in ("pid", "restarts", "exit_codes")}
            for name, s in servers.items()
        }

    def stop(self) -> None:
        self.proc.signal(signal.SIGTERM)
        if not self.proc.wait(15):
            self.proc.signal(signal.SIGKILL)
            self.proc.wait(5)


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
