"""The sidecar's hand-over steps: take the socket path, notice losing it, drain, let go.

A restart needs nothing but starting the new sidecar: it binds beside the socket path and
renames its socket over it (`sidecar.rpc.unix_socket`); the old sidecar checks every
`OWNERSHIP_CHECK_S` whether the path still names its socket and, once it does not, drains
and exits on its own. No pid file and no signal cross between them, so nothing can signal
the wrong process after a pid is reused, and it works the same across containers that only
share the socket's folder. SIGTERM drains the same way.

Draining: health NOT_SERVING, the server takes no new calls (clients reconnect, to the
new sidecar if one took over), open Exchange streams end at once when idle or right after
their current message, and calls in flight get at most `shutdown_grace_seconds`.

Not guaranteed: a sidecar of a version before this one neither drains when its path is
taken nor leaves a newer sidecar's path alone on exit (it deletes the path): the first
restart onto this version should be stop-then-start.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import threading
import time

from prometheus_client import CollectorRegistry

from sidecar.observability.endpoint import MetricsEndpoint
from sidecar.rpc.server import RunningServer, set_serving
from sidecar.rpc.unix_socket import OwnedSocket, Ownership, PathKind, PathState

log = logging.getLogger("strata.sidecar")

#: How often a sidecar checks that its socket path is still its own (one stat(2)).
OWNERSHIP_CHECK_S = 0.2
#: How often the metrics port is tried again while an older sidecar still holds it.
METRICS_RETRY_S = 0.5
#: The name grpc.aio gives the task of each call it serves (none match if that changes).
GRPC_CALL_TASK_NAME = "rpc_task"
#: How long a drain waits for those tasks once the server has stopped.
LEFTOVER_WAIT_S = 1.0


def check_listen_path(listen: str, takeover: bool = True) -> PathState | None:
    """What is at a unix `listen` path before anything starts (None for TCP), creating its
    folder (0750) if missing. Raises `SocketPathError` naming the path or folder when the
    folder is writable by other users, the path holds something other than a socket, or a
    live socket there may not be taken over (another uid's, or any with `takeover` off).
    A world-writable sticky folder (like /tmp) is logged as a warning."""
    if not listen.startswith("unix:"):
        return None
    owned = OwnedSocket(listen[len("unix:") :], takeover=takeover)
    state = owned.prepare()
    if owned.shared_folder:
        log.warning(
            "socket folder %s is writable by other users (sticky): another local user can "
            "take the socket path while no sidecar holds it; use a folder of its own "
            "(e.g. /run/strata, mode 0750)",
            owned.folder,
            extra={
                "event.action": "socket_folder_shared",
                "strata.listen": listen,
                "strata.socket_folder": owned.folder,
            },
        )
    return state


class Metrics:
    """The `/metrics` endpoint, or none when `listen` is empty or 'off'.

    When the port is taken and `wait_for_port` is set (a running sidecar is about to be
    taken over and may be a version without SO_REUSEPORT), the sidecar starts without the
    endpoint and binds it as soon as the port is free; otherwise a taken port is a start-up
    error (OSError naming the setting)."""

    def __init__(self, listen: str, registry: CollectorRegistry, wait_for_port: bool) -> None:
        self._listen = listen
        self._registry = registry
        self._endpoint: MetricsEndpoint | None = None
        self._closed = threading.Event()
        self._lock = threading.Lock()
        if listen in {"", "off"}:
            return
        try:
            self._endpoint = MetricsEndpoint(listen, registry)
        except OSError as exc:
            if not (wait_for_port and exc.errno == errno.EADDRINUSE):
                raise OSError(exc.errno, f"metrics_listen {listen}: {exc.strerror}") from exc
            log.warning(
                "metrics port held by the sidecar being replaced; /metrics starts when it "
                "frees the port",
                extra={"event.action": "metrics_wait", "strata.metrics_listen": listen},
            )
            threading.Thread(target=self._retry, name="strata-metrics-bind", daemon=True).start()

    def _retry(self) -> None:
        while not self._closed.wait(METRICS_RETRY_S):
            try:
                endpoint = MetricsEndpoint(self._listen, self._registry)
            except OSError:
                continue
            with self._lock:
                closed = self._closed.is_set()
                if not closed:
                    self._endpoint = endpoint
            if closed:
                endpoint.close()
            else:
                log.info("metrics endpoint bound", extra={"event.action": "metrics_bound"})
            return

    def close(self) -> None:
        """Stop serving /metrics (idempotent)."""
        with self._lock:
            self._closed.set()
            endpoint, self._endpoint = self._endpoint, None
        if endpoint is not None:
            endpoint.close()


def log_published(running: RunningServer, before: PathState | None) -> None:
    """Say what `start_serving` replaced at the socket path, if anything."""
    if before is None:
        return
    if before.kind is PathKind.LIVE:
        log.warning(
            "took over the socket path from a running sidecar; it drains and exits",
            extra={
                "event.action": "socket_takeover",
                "strata.listen": running.address,
                "strata.previous_owner_pid": before.owner_pid,
                "strata.previous_owner_uid": before.owner_uid,
            },
        )
    elif before.kind is PathKind.STALE:
        log.info(
            "replaced a socket left by a sidecar that is gone",
            extra={"event.action": "socket_replace_stale", "strata.listen": running.address},
        )


async def watch_ownership(owned: OwnedSocket, stop: asyncio.Event) -> None:
    """Set `stop` once another sidecar has taken the socket path over. A path removed by
    someone else is logged once; the sidecar keeps serving the clients it has."""
    warned = False
    while not stop.is_set():
        await asyncio.sleep(OWNERSHIP_CHECK_S)
        state = owned.state()
        if state is Ownership.REPLACED:
            log.warning(
                "another sidecar took over the socket path; draining",
                extra={"event.action": "socket_lost", "strata.listen": f"unix:{owned.path}"},
            )
            stop.set()
            return
        if state is Ownership.MISSING and not warned:
            warned = True
            log.warning(
                "socket path removed by someone else; new clients cannot connect until a "
                "sidecar is started on it",
                extra={"event.action": "socket_missing", "strata.listen": f"unix:{owned.path}"},
            )


async def drain(running: RunningServer, grace_s: float) -> None:
    """Stop taking calls, end the Exchange streams, let calls in flight finish within
    `grace_s` (then they are cancelled)."""
    started = time.monotonic()
    await set_serving(running, False)
    stopping = asyncio.ensure_future(running.server.stop(grace_s))
    await asyncio.sleep(0)  # stop() has now refused new calls: no stream can open behind us
    ended = running.service.begin_shutdown()
    await stopping
    # grpc's per-call tasks finish their bookkeeping on the next turns of the loop; any
    # left when the sidecar exits would be cancelled by asyncio and logged by grpc as errors.
    leftovers = [t for t in asyncio.all_tasks() if t.get_name() == GRPC_CALL_TASK_NAME]
    if leftovers:
        await asyncio.wait(leftovers, timeout=LEFTOVER_WAIT_S)
    log.info(
        "drained",
        extra={
            "event.action": "drain",
            "strata.streams_ended": ended,
            "event.duration": int((time.monotonic() - started) * 1e9),
        },
    )
