"""External plugin servers as Kong manages them: query, start, log capture, respawn, stop.

A server is declared by a :class:`~kongsim.protocol.spec.PluginServerSpec`.

As Kong 3.9 (``kong/runloop/plugin_servers/process.lua``):

* the query command runs first (``io.popen``); only its stdout counts, and it must be JSON (see
  :func:`kongsim.config.plugins.parse_dump`): Kong ignores the command's exit status
  (``query_external_plugin_info`` reads the output and closes the pipe without looking at it);
* the start command runs through the shell as ``exec <cmd>`` with stderr merged into stdout
  (``ngx.pipe.spawn``, ``merge_stderr = true``); each output line is logged **at INFO** with a
  ``[name:pid]`` prefix (``grab_logs``: ``raw_log(ngx.INFO, ...)``), so at Kong's default
  ``log_level`` (``notice``) nothing the plugin server prints is visible;
* the server runs with nginx's cleared environment: nginx workers keep only ``TZ`` and the
  names listed in ``env`` directives (Kong's ``nginx_main_env`` / ``KONG_NGINX_MAIN_ENV``), and
  the spawned process inherits that (``passthrough_env`` here); nothing else, not ``PATH``;
* a server that exits is respawned at most once per second, except after exit code 127
  (command not found); shutdown sends SIGTERM;
* Kong does not wait for the socket: requests that arrive before the server listens fail to
  start their instance (Kong answers 500).

Added by kongsim (Kong does not do these): the child gets its own session (SIGTERM goes to its
process group), output is also appended to ``<log_dir>/<name>.log``, :meth:`PluginServerProcess.
wait_ready` lets a test harness wait for the socket, a stale socket file is removed before each
start and after stop, and a server still alive 5 s after SIGTERM gets SIGKILL. Pooled RPC
connections to a dead server are dropped (nginx's keep-alive pool notices closed idle
connections too).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from kongsim.config.plugins import PluginInfo, parse_dump
from kongsim.errors import PluginServerError
from kongsim.loglevels import NOTICE
from kongsim.protocol.spec import PluginServerSpec, child_env

log = logging.getLogger("kongsim.pluginserver")

QUERY_TIMEOUT = 30.0
READY_TIMEOUT = 20.0
STOP_TIMEOUT = 5.0


class PluginServerProcess:
    """One supervised plugin server."""

    def __init__(
        self,
        spec: PluginServerSpec,
        prefix: str,
        log_dir: str,
        on_exit: Callable[[PluginServerProcess, int], None] | None = None,
        passthrough_env: Sequence[str] = (),
    ) -> None:
        self.spec = spec
        self.env = child_env(passthrough_env)
        self.prefix = prefix
        self.log_path = os.path.join(log_dir, f"{spec.name}.log")
        self.socket_path = spec.socket_path(prefix)
        self.on_exit = on_exit
        self.info: PluginInfo | None = None
        self.pid: int | None = None
        self.spawns = 0
        self.exit_codes: list[int] = []
        self.last_exit: int | None = None
        self._proc: asyncio.subprocess.Process | None = None
        self._supervisor: asyncio.Task[None] | None = None
        self._stopping = False
        self._ready = asyncio.Event()
        self._died_unready = asyncio.Event()

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def restarts(self) -> int:
        return max(self.spawns - 1, 0)

    async def query(self) -> PluginInfo:
        """Run the query command and parse its dump (Kong does this before starting)."""
        cmd = self.spec.expand(self.prefix, self.spec.query_cmd)
        proc = await asyncio.create_subprocess_shell(
            cmd,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=self.env,
            start_new_session=True,
        )
        try:
            out, err = await asyncio.wait_for(proc.communicate(), QUERY_TIMEOUT)
        except TimeoutError as exc:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()
            raise PluginServerError(
                f"plugin server '{self.name}': query command timed out: {cmd}"
            ) from exc
        if proc.returncode != 0:
            # Kong does not look at the exit status, only at what was printed
            log.warning(
                "[pluginserver] query command of %r exited with %s (ignored, as Kong does)",
                self.name,
                proc.returncode,
            )
        try:
            self.info = parse_dump(self.name, out.decode(errors="replace"))
        except PluginServerError as exc:
            tail = err.decode(errors="replace").strip().splitlines()[-5:]
            detail = "\n".join(tail) if tail else "(nothing on stderr)"
            raise PluginServerError(f"{exc}\nquery command: {cmd}\nits stderr:\n{detail}") from exc
        return self.info

    async def start(self, *, wait: bool = True) -> None:
        """Start supervising the server; with `wait` (a harness affordance, Kong does not),
        wait until its socket accepts connections, and fail if it dies first."""
        Path(self.prefix).mkdir(parents=True, exist_ok=True)
        Path(self.log_path).parent.mkdir(parents=True, exist_ok=True)
        self._stopping = False
        self._died_unready.clear()
        self._supervisor = asyncio.create_task(self._supervise(), name=f"pluginserver:{self.name}")
        if not wait:
            return
        ready = asyncio.create_task(self._ready.wait())
        died = asyncio.create_task(self._died_unready.wait())
        try:
            await asyncio.wait(
                {ready, died}, timeout=READY_TIMEOUT, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            ready.cancel()
            died.cancel()
        if not self._ready.is_set():
            # kongsim-only: a server that cannot even start is reported at once, with its output
            await self.stop()
            what = (
                f"exited with {self.last_exit}"
                if self.last_exit is not None
                else (
                    f"is not accepting connections on {self.socket_path} after {READY_TIMEOUT:g} s"
                )
            )
            raise PluginServerError(
                f"plugin server '{self.name}' {what} before becoming ready; its output "
                f"({self.log_path}):\n{self._log_tail()}"
            )

    async def wait_ready(self, timeout: float = READY_TIMEOUT) -> None:
        """Wait until the (re)started server accepts connections on its socket."""
        try:
            await asyncio.wait_for(self._ready.wait(), timeout)
        except TimeoutError as exc:
            raise PluginServerError(
                f"plugin server '{self.name}' is not accepting connections on "
                f"{self.socket_path} after {timeout:g} s (see {self.log_path})"
            ) from exc

    def _log_tail(self, lines: int = 15) -> str:
        try:
            text = Path(self.log_path).read_text(encoding="utf-8", errors="replace")
        except OSError:
            return "(no output)"
        return "\n".join(text.rstrip().splitlines()[-lines:]) or "(no output)"

    @property
    def stopping(self) -> bool:
        return self._stopping

    @property
    def ready(self) -> bool:
        return self._ready.is_set()

    async def stop(self) -> None:
        """SIGTERM the server (SIGKILL after 5 s), stop respawning, remove the socket."""
        self._stopping = True
        proc = self._proc
        if proc is not None and proc.returncode is None:
            _signal_group(proc.pid, signal.SIGTERM)
            try:
                await asyncio.wait_for(proc.wait(), STOP_TIMEOUT)
            except TimeoutError:
                _signal_group(proc.pid, signal.SIGKILL)
                await proc.wait()
        if self._supervisor is not None:
            self._supervisor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._supervisor
            self._supervisor = None
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.socket_path)

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Send ``sig`` to the running server (tests use this to simulate a crash)."""
        if self._proc is not None and self._proc.returncode is None:
            os.kill(self._proc.pid, sig)

    async def _supervise(self) -> None:
        loop = asyncio.get_running_loop()
        next_spawn = 0.0
        while not self._stopping:
            delay = next_spawn - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            next_spawn = loop.time() + 1.0
            rc = await self._run_once()
            if self.stopping:
                break
            self.exit_codes.append(rc)
            if self.on_exit is not None:
                self.on_exit(self, rc)
            if rc == 127:
                log.error(
                    '[pluginserver] %r start command exited with "command not found"; '
                    "not respawned",
                    self.name,
                )
                break
            # Kong: kong.log.notice("external pluginserver '...' terminated: ...")
            log.log(NOTICE, "[pluginserver] %r terminated with %s; respawning", self.name, rc)

    async def _run_once(self) -> int:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.socket_path)
        cmd = "exec " + self.spec.expand(self.prefix, self.spec.start_cmd)
        log.log(NOTICE, "[pluginserver] starting pluginserver process for %r: %s", self.name, cmd)
        proc = await asyncio.create_subprocess_shell(
            cmd,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            env=self.env,
            cwd="/",
            start_new_session=True,
        )
        self._proc = proc
        self.pid = proc.pid
        self.spawns += 1
        pump = asyncio.create_task(self._pump_logs(proc))
        probe = asyncio.create_task(self._probe_ready(proc))
        try:
            rc = await proc.wait()
            await asyncio.wait_for(pump, 5.0)
        finally:
            probe.cancel()
            self.last_exit = proc.returncode
            if not self._ready.is_set():
                self._died_unready.set()
            self._ready.clear()
        return rc

    async def _probe_ready(self, proc: asyncio.subprocess.Process) -> None:
        while proc.returncode is None:
            if os.path.exists(self.socket_path) and await _can_connect(self.socket_path):
                log.log(NOTICE, "[pluginserver] %r ready (pid %s)", self.name, proc.pid)
                self._ready.set()
                return
            await asyncio.sleep(0.02)

    async def _pump_logs(self, proc: asyncio.subprocess.Process) -> None:
        assert proc.stdout is not None
        prefix = f"[{self.name}:{proc.pid}] "
        with open(self.log_path, "a", encoding="utf-8") as sink:
            sink.write(f"--- {time.strftime('%Y-%m-%d %H:%M:%S')} pid {proc.pid} ---\n")
            while True:
                line = await proc.stdout.readline()
                if not line:
                    break
                text = line.decode(errors="replace").rstrip("\n")
                sink.write(text + "\n")
                sink.flush()
                if text:
                    # grab_logs: raw_log(ngx.INFO, prefix .. line) -- hidden at notice
                    log.info("%s%s", prefix, text)


async def _can_connect(path: str) -> bool:
    try:
        _reader, writer = await asyncio.open_unix_connection(path)
    except OSError:
        return False
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return True


def _signal_group(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)
