"""Start the plugin server: one listening socket, one or more worker processes.

With one worker the server is this process. With more, this process binds the socket
Kong connects to, empties the instance registry, and starts each worker as
``python -m kong_plugin --worker I ...`` with the listening socket passed down (a fresh
interpreter, not a fork: nothing of grpc or of a thread crosses into a worker). It then
only supervises: a worker that dies is started again (at most once a second per worker;
its events in flight end and Kong fails open for those requests), SIGTERM/SIGINT stop
every worker (SIGKILL after `STOP_GRACE_S`), and when the process that started it goes
away (Kong exited) it stops too.

With ``--metrics-listen`` the supervisor also serves ``/metrics`` from a thread of its own
(`kong_plugin.pluginserver.metrics_http`), adding up what each worker counted
(`kong_plugin.pluginserver.metrics_node`); a server of one worker then runs a supervisor
too, so that the endpoint is never on a worker's event loop.

Not guaranteed: a worker that hangs without exiting is not detected (Kong's RPC timeout
applies); the workers' output goes to this process's stdout, which Kong logs at INFO.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from kong_pdk.module import Module

from kong_plugin.pluginserver.connection import serve
from kong_plugin.pluginserver.instances import prepare_registry
from kong_plugin.pluginserver.lifeline import FLAG, die_with_parent
from kong_plugin.pluginserver.metrics_http import MetricsEndpoint
from kong_plugin.pluginserver.metrics_node import Census, NodeMetrics
from kong_plugin.pluginserver.worker import MAX_WORKERS, Worker, relay_path

log = logging.getLogger("strata.pluginserver")

STOP_GRACE_S = 5.0
BACKLOG = 4096
RESPAWN_EVERY_S = 1.0
POLL_S = 0.2


@dataclass(frozen=True)
class Layout:
    """Where one server's files live: the socket Kong connects to, the instance registry,
    and the workers' private relay sockets (next to the socket)."""

    socket_path: str

    @property
    def registry(self) -> Path:
        return Path(self.socket_path + ".instances")


def usable_cpus() -> int:
    """CPUs this process may run on (its affinity mask), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def resolve_workers(value: str) -> int:
    """``auto`` (usable CPUs, at most `MAX_WORKERS`) or 1..`MAX_WORKERS`."""
    if value == "auto":
        return min(usable_cpus(), MAX_WORKERS)
    try:
        n = int(value)
    except ValueError:
        n = 0
    if not 1 <= n <= MAX_WORKERS:
        raise ValueError(f"--workers must be 'auto' or 1..{MAX_WORKERS}, not {value!r}")
    return n


def bind(path: str, backlog: int) -> socket.socket:
    """The listening unix socket at `path` (a stale file there is removed first)."""
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(backlog)
    listener.setblocking(False)
    return listener


def run_worker(
    module: Module,
    layout: Layout,
    listener: socket.socket,
    index: int,
    count: int,
    prepare: Callable[[Worker], None] | None = None,
    *,
    backlog: int = BACKLOG,
    supervisor: int | None = None,
) -> int:
    """Serve as worker `index` of `count` until SIGTERM/SIGINT or the parent goes away
    (`supervisor`: the pid it must stay the child of; `lifeline.hold` already tied the
    two); `prepare` sees the worker first (to register notice handlers, `Worker.peers`).
    A supervised worker (several, or one under a supervisor that serves metrics) listens
    on its private socket too."""
    supervised = count > 1 or supervisor is not None
    if supervised:
        die_with_parent()  # again: harmless, and covers a caller that skipped `hold`
    worker = Worker(module, layout.registry, index, count, layout.socket_path)
    if prepare is not None:
        prepare(worker)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        assert task is not None
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, task.cancel)
        parent = supervisor if supervisor is not None else os.getppid()

        async def watch_parent() -> None:
            while os.getppid() == parent:
                await asyncio.sleep(1.0)
            log.info("parent %d gone, worker %d exits", parent, index)
            task.cancel()

        watcher = loop.create_task(watch_parent())
        try:
            await serve(worker, listener, relay=supervised, backlog=backlog)
        finally:
            watcher.cancel()

    with contextlib.suppress(asyncio.CancelledError):
        asyncio.run(main())
    if supervised:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(relay_path(layout.socket_path, index))
    return 0


def interpreter_command() -> list[str]:
    """How this process was started, less its own arguments: ``python -m kong_plugin``
    (or ``python some_server.py``), so that workers run the same program."""
    user_args = len(sys.argv) - 1
    original = list(sys.orig_argv)
    head = original[: len(original) - user_args] if user_args else original
    return [sys.executable, *head[1:]]


def supervise(
    layout: Layout,
    listener: socket.socket,
    count: int,
    argv: Sequence[str],
    metrics_listen: tuple[str, int] | None = None,
) -> int:
    """Start `count` workers (`argv` + ``--worker I``) sharing `listener`; keep them up;
    serve ``/metrics`` on `metrics_listen` (host, port) when given."""
    fd = listener.fileno()
    os.set_inheritable(fd, True)
    stopping = False

    def stop(*_: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    parent = os.getppid()

    prefix = interpreter_command()

    def spawn(index: int) -> subprocess.Popen[bytes]:
        cmd = [*prefix, *argv, "--worker", str(index)]
        cmd += ["--workers", str(count), "--listen-fd", str(fd), FLAG, str(os.getpid())]
        return subprocess.Popen(cmd, pass_fds=(fd,))

    census = Census()
    endpoint = None
    if metrics_listen is not None:
        node = NodeMetrics(layout.socket_path, count, census)
        endpoint = MetricsEndpoint(*metrics_listen, node.collect).start()
    children = {i: spawn(i) for i in range(count)}
    started = dict.fromkeys(children, time.monotonic())
    census.live = count
    log.info("plugin server %s: %d workers (pid %d)", layout.socket_path, count, os.getpid())
    while not stopping:
        time.sleep(POLL_S)
        if os.getppid() != parent:
            log.info("parent %d gone, stopping the workers", parent)
            break
        for index, child in list(children.items()):
            code = child.poll()
            if code is None or stopping:
                continue
            if time.monotonic() - started[index] < RESPAWN_EVERY_S:
                continue
            log.error(
                "worker %d (pid %d) exited with %s; starting it again", index, child.pid, code
            )
            children[index] = spawn(index)
            started[index] = time.monotonic()
            census.restarts += 1
        census.live = sum(child.poll() is None for child in children.values())
    if endpoint is not None:
        endpoint.stop()
    for child in children.values():
        with contextlib.suppress(ProcessLookupError):
            child.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + STOP_GRACE_S
    for child in children.values():
        try:
            child.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
    return 0


def start(
    module: Module,
    layout: Layout,
    backlog: int,
    count: int,
    argv: Sequence[str],
    prepare: Callable[[Worker], None] | None = None,
    metrics_listen: tuple[str, int] | None = None,
) -> int:
    """Bind the socket, empty the registry, then serve with `count` workers (`prepare`:
    see `run_worker`; with a supervisor each worker runs it in its own process) and, with
    `metrics_listen`, ``/metrics`` from a supervisor (even for one worker)."""
    prepare_registry(layout.registry)
    listener = bind(layout.socket_path, backlog)
    if count == 1 and metrics_listen is None:
        return run_worker(module, layout, listener, 0, 1, prepare, backlog=backlog)
    return supervise(layout, listener, count, argv, metrics_listen)
