"""The near-cache's subscriber: one daemon thread per sidecar address that holds the
sidecar's `Watch` stream open (on the `SidecarClient`'s own channel, after its socket
check) and applies what it pushes to a `NearCache`.

The near-cache answers only while the stream is up: it is marked connected when the
stream's hello arrives and disconnected (everything dropped) when the stream ends, breaks,
or says something out of step (a `seq` gap, an event before the hello, an event this
build does not know); a hello naming another sidecar process than the last one is logged
(its entries were dropped with the old stream anyway). The stream is opened again after a
back-off of `min_backoff_s`, doubling up to `max_backoff_s` while it keeps failing (reset
by each hello).

Nothing here raises into callers: every failure of the stream is a disconnection; `stop`
cancels the stream and joins the thread (daemon, so a forgotten feed never holds up the
process's exit).

Not guaranteed: how soon a change reaches the near-cache (the sidecar's write, the
transport and this thread's scheduling: measured in the README); that the feed notices a
sidecar that stopped answering without closing its socket (SIGSTOP): the near-cache then
serves what it holds for at most its `max_age_s`, as the sidecar's own memory would.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import grpc
from strata.v1 import cache_pb2 as pb

from kong_plugin.client import SidecarClient
from kong_plugin.near_cache import NearCache

log = logging.getLogger("strata.plugin")

__all__ = ["MAX_BACKOFF_S", "MIN_BACKOFF_S", "REFUSAL_LOG_S", "NearFeed"]

MIN_BACKOFF_S = 0.05
MAX_BACKOFF_S = 0.5
#: Least seconds between two warnings that the sidecar refused the stream.
REFUSAL_LOG_S = 60.0


class _OutOfStepError(Exception):
    """The stream said something a watcher cannot apply safely."""


def _text(raw: bytes) -> str:
    return raw.decode("utf-8", "surrogateescape")


class NearFeed:
    """Keeps `near` coherent with the sidecar `client` talks to (see the module doc)."""

    def __init__(
        self,
        client: SidecarClient,
        near: NearCache,
        *,
        min_backoff_s: float = MIN_BACKOFF_S,
        max_backoff_s: float = MAX_BACKOFF_S,
    ) -> None:
        self._client = client
        self._near = near
        self._min_backoff = min_backoff_s
        self._max_backoff = max_backoff_s
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._call: Any = None
        self._thread: threading.Thread | None = None
        self._next_refusal_log = 0.0
        #: The sidecar process the stream last said hello from ("" before any).
        self.instance_id = ""
        #: Hellos received (first connection and every reconnection).
        self.connections = 0
        #: Streams that ended or broke (each one a flush of the near-cache).
        self.disconnections = 0
        #: Events applied (changed and flush).
        self.events = 0

    def start(self) -> NearFeed:
        """Start the thread (once)."""
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name=f"strata-near-feed {self._client.address}", daemon=True
                )
                self._thread.start()
        return self

    def stop(self, timeout_s: float = 2.0) -> None:
        """Cancel the stream and wait (up to `timeout_s`) for the thread to end; the
        near-cache is left disconnected."""
        self._stopping.set()
        with self._lock:
            call, thread = self._call, self._thread
        if call is not None:
            call.cancel()
        if thread is not None:
            thread.join(timeout_s)
        self._near.set_connected(False)

    def alive(self) -> bool:
        thread = self._thread
        return thread is not None and thread.is_alive()

    def _run(self) -> None:
        backoff = self._min_backoff
        while not self._stopping.is_set():
            try:
                if self._follow():
                    backoff = self._min_backoff
            except Exception as exc:  # never let the thread die: a failure is a disconnection
                self._failed(exc)
            if self._stopping.wait(backoff):
                break
            backoff = min(backoff * 2, self._max_backoff)

    def _failed(self, exc: Exception) -> None:
        """A refused stream (the sidecar's ``max_watch_streams``) leaves this near-cache off:
        a warning (at most once a minute); any other failure is routine (debug)."""
        refused = isinstance(exc, grpc.RpcError) and (
            exc.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        )
        now = time.monotonic()
        if refused and now >= self._next_refusal_log:
            self._next_refusal_log = now + REFUSAL_LOG_S
            log.warning(
                "sidecar at %s refused the near-cache's Watch stream (its max_watch_streams is "
                "reached): this worker's near-cache stays off until a stream is free",
                self._client.address,
            )
        else:
            log.debug("near-cache feed from %s: %s", self._client.address, exc)

    def _follow(self) -> bool:
        """Open the stream and apply it until it ends; whether a hello was received."""
        call = self._client.watch()
        with self._lock:
            self._call = call
        hello = False
        try:
            if self._stopping.is_set():
                return False
            expected = 1
            for event in call:
                if event.seq != expected:
                    raise _OutOfStepError(f"event {event.seq} where {expected} was due")
                expected += 1
                if not hello:
                    self._hello(event)
                    hello = True
                else:
                    self._apply(event)
            return hello
        finally:
            with self._lock:
                self._call = None
            call.cancel()
            if hello:
                self.disconnections += 1
                log.info(
                    "near-cache feed from %s ended: near-cache flushed until it is back",
                    self._client.address,
                )
            self._near.set_connected(False)

    def _hello(self, event: pb.WatchEvent) -> None:
        if event.WhichOneof("event") != "hello":
            raise _OutOfStepError("the stream did not start with a hello")
        instance = event.hello.instance_id
        if self.instance_id and instance != self.instance_id:
            log.info(
                "sidecar at %s restarted (instance %s, was %s)",
                self._client.address,
                instance,
                self.instance_id,
            )
        self.instance_id = instance
        self.connections += 1
        self._near.set_connected(True)

    def _apply(self, event: pb.WatchEvent) -> None:
        kind = event.WhichOneof("event")
        self.events += 1
        if kind == "changed":
            changed = event.changed
            self._near.invalidate(
                keys=[_text(k) for k in changed.keys],
                prefixes=[_text(p) for p in changed.prefixes],
                tags=list(changed.tags),
            )
        elif kind == "flush":
            self._near.invalidate_all()
        else:
            raise _OutOfStepError(f"unexpected event {kind!r}")
