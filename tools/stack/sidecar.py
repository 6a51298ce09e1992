"""`SidecarProcess`: run a sidecar as a child process and wait until it serves.

A sidecar "serves" when its gRPC health service answers SERVING at its address and, for a
unix socket, the process listening at that path is this very process (``SO_PEERCRED``), so
that a start while another sidecar still holds the path (a takeover) waits for the new one.
Start-up failures raise `SidecarStartError` carrying the exit code and the sidecar's output.

This module talks to the sidecar as an operator would: command line, environment, signals,
gRPC health. It imports none of the sidecar's modules (only ``grpc`` and ``grpc_health``), so
a benchmark can run another checkout's sidecar with it (``python``, ``cwd`` and ``env``).

Not guaranteed: on a TCP address, that the SERVING answer comes from this process (another
process on the same port would answer too); that the output captured by default is complete
before the process has exited.
"""

from __future__ import annotations

import os
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
import weakref
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO

#: How long `SidecarProcess.start` waits by default: generous, the machine may be busy.
START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 15.0
_PEERCRED = struct.Struct("3i")  # struct ucred: pid, uid, gid


def probe(address: str, timeout: float = 0.5) -> bool:
    """True if the gRPC health service at `address` says SERVING."""
    import grpc  # noqa: PLC0415 - keep importing this module light
    from grpc_health.v1 import health_pb2, health_pb2_grpc  # noqa: PLC0415

    with grpc.insecure_channel(address) as channel:
        try:
            reply = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=""), timeout=timeout
            )
        except grpc.RpcError:
            return False
    return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)


def wait_serving(
    address: str, timeout: float = START_TIMEOUT_S, proc: subprocess.Popen[bytes] | None = None
) -> None:
    """Until the health service at `address` says SERVING, whoever serves it (e.g. a sidecar
    started by a `make run` that is `proc`); RuntimeError if `proc` exits first or `timeout`
    s pass."""
    deadline = time.monotonic() + timeout
    while not probe(address, 0.5):
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{proc.args!r} exited with {proc.returncode}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"nothing served at {address} within {timeout:.0f} s")
        time.sleep(0.1)


def unix_path(address: str) -> Path | None:
    """The socket path of a ``unix:PATH`` / ``unix://PATH`` address; None for TCP."""
    if not address.startswith("unix:"):
        return None
    path = address[len("unix:") :]
    return Path(path[2:] if path.startswith("//") else path)


def socket_owner(path: Path, timeout: float = 1.0) -> int | None:
    """The pid listening at the unix socket `path`; None if nobody answers there (or the
    listener is in another pid namespace)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        try:
            s.connect(str(path))
            pid, _uid, _gid = _PEERCRED.unpack(
                s.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _PEERCRED.size)
            )
        except OSError:
            return None
    return pid or None


def sidecar_argv(
    address: str | None,
    *,
    metrics_listen: str | None = None,
    log_level: str | None = None,
    settings: Mapping[str, str] | None = None,
    args: Sequence[str] = (),
    python: str = sys.executable,
) -> list[str]:
    """``python -m sidecar`` with ``--listen address`` (unless None: the environment or the
    default decides), ``--metrics-listen``, ``--log-level``, one ``--NAME VALUE`` per setting
    (``_`` in NAME becomes ``-``), then `args` as given."""
    argv = [python, "-m", "sidecar"]
    if address is not None:
        argv += ["--listen", address]
    if metrics_listen is not None:
        argv += ["--metrics-listen", metrics_listen]
    if log_level is not None:
        argv += ["--log-level", log_level]
    for name, value in (settings or {}).items():
        argv += ["--" + name.replace("_", "-"), value]
    return [*argv, *args]


@dataclass(frozen=True)
class Output:
    """What a sidecar wrote. With a `log` file both streams go there: `stdout` is what this
    process appended to it and `stderr` is empty."""

    stdout: str
    stderr: str

    @property
    def text(self) -> str:
        return self.stdout + self.stderr


class SidecarStartError(RuntimeError):
    """The sidecar exited before it served (`returncode`), or did not serve within the
    timeout (`returncode` None; it was killed). `stdout` / `stderr`: its output."""

    def __init__(self, message: str, returncode: int | None, output: Output) -> None:
        tail = "\n".join(output.text.strip().splitlines()[-20:])
        super().__init__(f"{message}\n{tail}" if tail else message)
        self.returncode = returncode
        self.stdout = output.stdout
        self.stderr = output.stderr


def _close_all(files: list[IO[bytes]]) -> None:
    for f in files:
        f.close()
    files.clear()


class SidecarProcess:
    """One sidecar at `address`, started (and started again) as a child process.

    Output: by default stdout and stderr are captured apart (in unnamed temporary files, never
    pipes, so a chatty sidecar cannot block) and read with `output()`; with `log` both are
    appended to that file; with `inherit_output` they go to this process's own.
    `listen_arg=False` leaves ``--listen`` off the command line (the address then comes from
    `env`, e.g. ``STRATA_LISTEN``; `address` is still where to wait for it).
    `new_session` starts it in a session of its own (a terminal's Ctrl-C does not reach it).
    """

    def __init__(
        self,
        address: str,
        *,
        env: Mapping[str, str] | None = None,
        metrics_listen: str | None = None,
        log_level: str | None = None,
        settings: Mapping[str, str] | None = None,
        args: Sequence[str] = (),
        listen_arg: bool = True,
        log: Path | None = None,
        inherit_output: bool = False,
        cwd: Path | None = None,
        python: str = sys.executable,
        new_session: bool = False,
    ) -> None:
        self.address = address
        self.socket_path = unix_path(address)
        self.metrics_listen = metrics_listen
        self.env = dict(env) if env is not None else None
        self.argv = sidecar_argv(
            address if listen_arg else None,
            metrics_listen=metrics_listen,
            log_level=log_level,
            settings=settings,
            args=args,
            python=python,
        )
        self.log = log
        self.inherit_output = inherit_output
        self.cwd = cwd
        self.new_session = new_session
        self.proc: subprocess.Popen[bytes] | None = None
        self._files: list[IO[bytes]] = []  # captured stdout, stderr of the current process
        self._log_offset = 0
        self._finalizer = weakref.finalize(self, _close_all, self._files)

    # ------------------------------------------------------------------ state

    @property
    def pid(self) -> int:
        if self.proc is None:
            raise RuntimeError("the sidecar was never started")
        return self.proc.pid

    @property
    def returncode(self) -> int | None:
        return None if self.proc is None else self.proc.poll()

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def serving(self) -> bool:
        """This process runs, answers SERVING, and (unix socket) owns the socket path."""
        if not self.alive():
            return False
        if self.socket_path is not None and socket_owner(self.socket_path) != self.pid:
            return False
        return probe(self.address, 0.5)

    def output(self) -> Output:
        """What the current (or last) process wrote so far; empty with `inherit_output`."""
        if self.log is not None:
            try:
                with self.log.open("rb") as f:
                    f.seek(self._log_offset)
                    return Output(f.read().decode(errors="replace"), "")
            except OSError:
                return Output("", "")
        texts = [os.pread(f.fileno(), os.fstat(f.fileno()).st_size, 0) for f in self._files]
        out, err = (t.decode(errors="replace") for t in texts) if texts else ("", "")
        return Output(out, err)

    # ------------------------------------------------------------------ start

    def spawn(self) -> subprocess.Popen[bytes]:
        """Start the process and return at once (`wait_serving` waits for it). A previous
        process of this object must have exited."""
        if self.alive():
            raise RuntimeError(f"the sidecar at {self.address} is already running")
        _close_all(self._files)
        stdout: IO[bytes] | int | None = None
        stderr: IO[bytes] | int | None = None
        log_file = None
        if self.log is not None:
            log_file = self.log.open("ab")
            self._log_offset = log_file.tell()
            stdout, stderr = log_file, subprocess.STDOUT
        elif not self.inherit_output:
            # Kept open past this call: closed by the next spawn, close() or the finalizer.
            self._files += [tempfile.TemporaryFile() for _ in range(2)]  # noqa: SIM115
            stdout, stderr = self._files
        try:
            self.proc = subprocess.Popen(
                self.argv,
                env=self.env,
                cwd=self.cwd,
                stdin=subprocess.DEVNULL,
                stdout=stdout,
                stderr=stderr,
                start_new_session=self.new_session,
            )
        finally:
            if log_file is not None:
                log_file.close()
        return self.proc

    def wait_serving(
        self, timeout: float = START_TIMEOUT_S, *, kill_on_timeout: bool = True
    ) -> None:
        """Return once `serving()`; `SidecarStartError` if the process exits first, or if
        `timeout` s pass (the process is then killed, unless `kill_on_timeout` is False)."""
        deadline = time.monotonic() + timeout
        while not self.serving():
            rc = self.returncode
            if rc is not None:
                raise SidecarStartError(
                    f"the sidecar at {self.address} exited with {rc} before serving",
                    rc,
                    self.output(),
                )
            if time.monotonic() > deadline:
                if kill_on_timeout:
                    self.kill()
                raise SidecarStartError(
                    f"the sidecar at {self.address} did not serve within {timeout:.0f} s",
                    None,
                    self.output(),
                )
            time.sleep(0.05)

    def start(self, timeout: float = START_TIMEOUT_S) -> SidecarProcess:
        """`spawn`, then `wait_serving`."""
        self.spawn()
        self.wait_serving(timeout)
        return self

    def expect_refusal(self, timeout: float = START_TIMEOUT_S) -> SidecarStartError:
        """Start a sidecar that must refuse to start: the error it exited with.
        AssertionError if it serves (it is stopped first) or is still running at `timeout`."""
        try:
            self.start(timeout)
        except SidecarStartError as exc:
            if exc.returncode is None:
                raise AssertionError(f"the sidecar neither served nor exited: {exc}") from exc
            return exc
        self.stop()
        raise AssertionError(f"the sidecar at {self.address} started although it should not")

    # ------------------------------------------------------------------ stop

    def signal(self, sig: int) -> None:
        """Send `sig` if the process runs (no wait)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)

    def terminate(self) -> None:
        """SIGTERM without waiting."""
        self.signal(signal.SIGTERM)

    def wait(self, timeout: float) -> int:
        """Wait for the exit; its code (TimeoutExpired if it runs on)."""
        if self.proc is None:
            raise RuntimeError("the sidecar was never started")
        return self.proc.wait(timeout)

    def stop(self, timeout: float = STOP_TIMEOUT_S) -> int | None:
        """SIGTERM, wait up to `timeout` s, then SIGKILL; the exit code (None if never
        started)."""
        if self.proc is None:
            return None
        self.terminate()
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return self.kill()

    def kill(self) -> int | None:
        """SIGKILL and wait; the exit code (None if never started)."""
        if self.proc is None:
            return None
        self.signal(signal.SIGKILL)
        return self.proc.wait(10)

    def restart(self, timeout: float = START_TIMEOUT_S) -> SidecarProcess:
        """`stop`, then `start` again with the same command line."""
        self.stop()
        return self.start(timeout)

    def close(self) -> None:
        """Stop the process if it runs and drop the captured output."""
        if self.alive():
            self.stop()
        self._finalizer()

    def __enter__(self) -> SidecarProcess:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
