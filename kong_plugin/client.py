"""The plugin's client for the sidecar: one process-wide channel, one Exchange stream per
thread, a hard deadline on every call.

The kong-pdk plugin server runs each event in its own thread, so calls come from many
threads at once. A bidirectional stream is not thread-safe, hence one per thread
(thread-local, reused across events). A stream has no per-message deadline, so a watchdog
thread cancels a stream whose answer is late; the caller then gets `SidecarUnavailableError`
and the stream is reopened on the next call (3-6 ms).

Restarts: a pooled stream that the sidecar ended (a draining sidecar ends them all) or that
died with its connection is dropped before use. A call whose stream breaks under it (the
stream ends without an answer, or UNAVAILABLE) is sent once more on a new stream while its
deadline allows and the channel is not known to be down. The channel retries connecting
every 50-200 ms and a connectivity watch keeps its I/O moving between calls; without that,
a reconnection made while no call is in flight stalls until the connect attempt times out
(measured: 2.3-4.8 s after the sidecar was back).

What this does not guarantee: delivery of a call that timed out (it may or may not have
been applied); single application of a retried call whose first answer was lost on its way
back (every operation of the contract repeats harmlessly: a store writes the same entry
again, a release or a purge repeats; a lookup whose lost answer granted a fill lease waits
on that lease like any other caller until its deadline); ordering between calls made from
different threads. Every failure is `SidecarError`; nothing else escapes.

Who answers (unix sockets): before the channel first connects, and again before the first
call after its connection may have changed (the connectivity watch saw it leave READY, a
pooled stream had ended, a stream broke under a call), the client checks the socket with
`kong_plugin.peer.check_peer`: it must be a socket (not a symbolic link) whose listener
runs as the expected uid (`expected_uid`, default this process's euid). Until that check
passes no call is started, so nothing reaches an impostor. Another uid fails the call at
once with `SidecarUntrustedError` (naming path, uid and pid) and closes the channel, so
grpc does not reconnect there on its own; the verdict is kept for `UNTRUSTED_RECHECK_S`
while the path names the same file (calls fail after one lstat, without connecting; a new
socket at the path is checked at once) and logged at most once per `UNTRUSTED_LOG_S`.
A socket nobody answers on fails as `SidecarUnavailableError` and closes the channel too.
Residual window, not guaranteed: grpc connects by itself, after the check, through the
same path; a process able to replace the socket in between could be reached -- which needs
write access to the socket's folder (see `kong_plugin.peer`), and a connection lost and
re-made by grpc before the watch reports it is checked only at the next sign of a change.
"""

from __future__ import annotations

import itertools
import logging
import os
import threading
import time
from typing import Any

import grpc
from strata.v1 import cache_pb2 as pb
from strata.v1 import cache_pb2_grpc as pb_grpc

from kong_plugin.peer import PeerCheck, Verdict, check_peer, expected_uid, same_file
from kong_plugin.streams import Stream, Watchdog
from kong_plugin.wire import (
    HeaderLines,
    invalidate_request,
    lookup_request,
    release_request,
    store_request,
)

log = logging.getLogger("strata.plugin")

_CHANNEL_OPTIONS = [
    # Come back within a fraction of a second after a sidecar restart instead of grpc's
    # 1 s .. 120 s backoff: a connect attempt on a local socket costs microseconds, so
    # trying every 200 ms at most while the sidecar is down is nothing.
    ("grpc.initial_reconnect_backoff_ms", 50),
    ("grpc.max_reconnect_backoff_ms", 200),
    # Despite its name, how long one connect attempt may wait for the server's HTTP/2
    # SETTINGS (grpc's default: 20 s). Generous, so that a loaded machine does not fail
    # attempts; a refused or missing socket fails at once whatever this is.
    ("grpc.min_reconnect_backoff_ms", 1000),
    ("grpc.max_receive_message_length", 64 * 1024 * 1024),
    ("grpc.max_send_message_length", 64 * 1024 * 1024),
]

#: Status codes of a call the sidecar answered by refusing it (not a transport failure).
_REFUSED_CODES = frozenset(
    {
        grpc.StatusCode.INVALID_ARGUMENT,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        grpc.StatusCode.UNIMPLEMENTED,
    }
)

#: How long an untrusted socket's verdict is reused (while the path names the same file).
UNTRUSTED_RECHECK_S = 1.0
#: Least time between two log lines about an untrusted socket (per client).
UNTRUSTED_LOG_S = 1.0


class SidecarError(Exception):
    """Base of every error the client raises."""


class SidecarUnavailableError(SidecarError):
    """The sidecar did not answer in time or could not be reached: fail open."""


class SidecarUntrustedError(SidecarError):
    """The unix socket is not served by the expected uid (or is not a socket): nothing was
    sent; fail open. The message names the path, the uid and pid found and the uid
    expected."""


class SidecarRejectedError(SidecarError):
    """The sidecar refused the call (INVALID_ARGUMENT and the like): a plugin bug or bad
    input; fail open too, and log it."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(f"sidecar refused the call ({code}): {message}")
        self.code = code


def target_for(address: str) -> str:
    """`unix:/path` and `host:port` are both gRPC targets already; checked here."""
    if address.startswith("unix:") or ":" in address:
        return address
    raise ValueError(f"sidecar address must be unix:/path or host:port, got {address!r}")


def socket_path_of(target: str) -> str | None:
    """The file system path of a ``unix:/path`` or ``unix:///path`` target (None for TCP)."""
    if not target.startswith("unix:"):
        return None
    path = target[len("unix:") :]
    return path[2:] if path.startswith("///") else path


class SidecarClient:
    """Thread-safe client. Create one per process (channels do not survive fork).

    Each call borrows a pooled stream of its own (see the module docstring).
    """

    def __init__(
        self,
        address: str,
        timeout_s: float = 0.05,
        expected_uid: int | None = None,
    ) -> None:
        self.address = target_for(address)
        self.timeout_s = timeout_s
        #: The uid the sidecar must run as on a unix socket (None: this process's euid).
        self.expected_uid = expected_uid
        self._socket_path = socket_path_of(self.address)
        # Whether the socket was checked since the channel's connection last changed.
        self._verified = False
        self._was_ready = False
        self._untrusted: PeerCheck | None = None
        self._untrusted_until = 0.0
        self._next_log = 0.0
        self._pid = -1
        self._lock = threading.Lock()
        self._channel: grpc.Channel | None = None
        self._stub: pb_grpc.CacheServiceStub | None = None
        self._pool: list[Stream] = []
        self._watchdog: Watchdog | None = None
        self._seq = itertools.count(1)
        self._connectivity: grpc.ChannelConnectivity | None = None

    # -- connection management ---------------------------------------------------------

    def _ensure(self) -> pb_grpc.CacheServiceStub:
        """The stub, after checking who answers at the socket when that is due (raises
        `SidecarUntrustedError` / `SidecarUnavailableError` without starting a call)."""
        stub = self._stub
        if self._pid == os.getpid() and stub is not None and self._verified:
            return stub
        with self._lock:
            if self._pid != os.getpid():  # forked: the parent's channel is not ours to use
                self._stub = self._channel = None
                self._verified = False
            if not self._verified:
                self._verify_locked()
            if self._stub is None:
                self._channel = grpc.insecure_channel(self.address, options=_CHANNEL_OPTIONS)
                self._was_ready = False
                # The watch (one grpc thread) drives the channel's I/O while no call is in
                # flight, so a reconnection completes without waiting for one.
                self._channel.subscribe(self._on_connectivity, try_to_connect=True)
                self._stub = pb_grpc.CacheServiceStub(self._channel)
                self._watchdog = Watchdog()
                self._pool = []
                self._pid = os.getpid()
            return self._stub

    def _verify_locked(self) -> None:
        """Check the unix socket's listener (see the module docstring); on failure close the
        channel, so grpc does not reconnect there on its own, and raise."""
        if self._socket_path is None:
            self._verified = True
            return
        now = time.monotonic()
        found = self._untrusted
        if found is None or now >= self._untrusted_until or not same_file(self._socket_path, found):
            found = check_peer(
                self._socket_path, expected_uid(self.expected_uid), min(self.timeout_s, 1.0)
            )
        if found.trusted:
            self._untrusted = None
            self._verified = True
            return
        self._close_locked()
        if found.verdict is Verdict.UNREACHABLE:
            raise SidecarUnavailableError(found.reason)
        if found is not self._untrusted:
            self._untrusted, self._untrusted_until = found, now + UNTRUSTED_RECHECK_S
        if now >= self._next_log:
            self._next_log = now + UNTRUSTED_LOG_S
            log.error("refusing the sidecar socket, cache bypassed: %s", found.reason)
        raise SidecarUntrustedError(found.reason)

    def _suspect(self) -> None:
        """The channel's connection may have changed: check the socket before the next call."""
        self._verified = False

    def _on_connectivity(self, state: grpc.ChannelConnectivity) -> None:
        self._connectivity = state
        if state is grpc.ChannelConnectivity.READY:
            self._was_ready = True
        elif self._was_ready or state is grpc.ChannelConnectivity.TRANSIENT_FAILURE:
            # The connection it was checked for is gone; grpc's next one is not checked yet.
            self._verified = False

    def _down(self) -> bool:
        """The channel last reported that it cannot connect (a retry would fail too)."""
        return self._connectivity is grpc.ChannelConnectivity.TRANSIENT_FAILURE

    def _stream(self) -> Stream:
        """An idle pooled stream that is still open, or a new one (list.pop is atomic
        under the GIL)."""
        stub = self._ensure()
        while True:
            try:
                stream = self._pool.pop()
            except IndexError:
                return Stream(stub)
            if not stream.ended():
                return stream
            stream.close()
            self._suspect()  # its connection may be gone: check before opening another
            stub = self._ensure()

    def _discard(self, stream: Stream) -> None:
        stream.close()

    def close(self) -> None:
        """Close the channel; later calls reopen it (after checking the socket again)."""
        with self._lock:
            self._close_locked()

    def _close_locked(self) -> None:
        while self._pool:
            self._pool.pop().close()
        if self._channel is not None:
            self._channel.unsubscribe(self._on_connectivity)
            self._channel.close()
        self._channel = None
        self._stub = None
        self._connectivity = None
        self._verified = False

    # -- calls -------------------------------------------------------------------------

    def call(self, call: pb.Call, timeout_s: float | None = None, retry: bool = True) -> pb.Reply:
        """Send one call on this thread's stream and wait for its reply. With `retry`, a
        call whose stream broke is sent once more on a new stream if time is left."""
        deadline = time.monotonic() + (self.timeout_s if timeout_s is None else timeout_s)
        stream = self._stream()
        for attempt in (1, 2):
            try:
                reply = self._roundtrip(stream, call, deadline)
            except SidecarRejectedError:
                self._pool.append(stream)
                raise
            except SidecarUnavailableError:
                self._discard(stream)
                if attempt == 2 or not retry or self._down() or time.monotonic() >= deadline:
                    raise
                self._suspect()  # the stream broke: its connection may have been replaced
                stream = Stream(self._ensure())  # never another pooled one: it may be as old
            else:
                self._pool.append(stream)
                return reply
        raise AssertionError("unreachable")

    def _roundtrip(self, stream: Stream, call: pb.Call, deadline: float) -> pb.Reply:
        assert self._watchdog is not None
        seq = next(self._seq)
        call.id = seq
        stream.inflight = seq
        self._watchdog.arm(stream, seq, deadline)
        try:
            response = stream.roundtrip(pb.ExchangeRequest(calls=[call]))
        except grpc.RpcError as exc:
            code = exc.code() if hasattr(exc, "code") else None
            raise SidecarUnavailableError(f"sidecar call failed: {code}") from exc
        except StopIteration as exc:
            raise SidecarUnavailableError("sidecar closed the stream") from exc
        finally:
            stream.inflight = None
        if len(response.replies) != 1 or response.replies[0].id != seq:
            self._discard(stream)
            raise SidecarUnavailableError("sidecar reply out of step; stream reset")
        reply = response.replies[0]
        if reply.WhichOneof("result") == "error":
            raise SidecarRejectedError(reply.error.code, reply.error.message)
        return reply

    def lookup(
        self,
        key: bytes,
        request_headers: HeaderLines | None = None,
        coalesce_wait_ms: int = 0,
        timeout_s: float | None = None,
    ) -> pb.LookupResponse:
        """Look `key` up; with `coalesce_wait_ms`, the deadline (unless given) grows by the
        wait."""
        req = lookup_request(key, request_headers, coalesce_wait_ms)
        if coalesce_wait_ms and timeout_s is None:
            timeout_s = self.timeout_s + coalesce_wait_ms / 1000.0
        return self.call(pb.Call(lookup=req), timeout_s).lookup

    def store(
        self,
        key: bytes,
        entry: pb.Entry,
        request_headers: HeaderLines | None = None,
        timeout_s: float | None = None,
        route: str = "",
    ) -> pb.StoreResponse:
        """Store `entry` under `key`; `route` is the key prefix of the entry's route
        (`kong_plugin.wire.store_request`)."""
        req = store_request(key, entry, request_headers, route)
        return self.call(pb.Call(store=req), timeout_s).store

    def release(self, key: bytes, timeout_s: float | None = None) -> pb.ReleaseResponse:
        return self.call(pb.Call(release=release_request(key)), timeout_s).release

    def watch(self) -> Any:
        """Open a `Watch` stream (what changed in the sidecar's cache, for a near-cache:
        `kong_plugin.near_feed`) on this client's channel, after the same socket check as a
        call (`SidecarUntrustedError` / `SidecarUnavailableError`, nothing opened). Returns
        grpc's call object: iterate it for `WatchEvent`s (it raises `grpc.RpcError` when the
        stream breaks) and `cancel()` it to stop. It has no deadline."""
        return self._ensure().Watch(pb.WatchRequest())

    def report_access(self, batch: pb.AccessBatch, timeout_s: float) -> pb.AccessAck:
        """Send a batch of analytics events (unary ``ReportAccess``, after the same socket
        check as a call) and wait at most `timeout_s` for the answer. Raises
        `SidecarUnavailableError` (unreachable, deadline passed) or `SidecarRejectedError`
        (the sidecar refused the batch, or does not know the call: ``UNIMPLEMENTED``); never
        retried here (the caller drops the batch and backs off)."""
        stub = self._ensure()
        try:
            ack: pb.AccessAck = stub.ReportAccess(batch, timeout=timeout_s)
        except grpc.RpcError as exc:
            code = exc.code() if hasattr(exc, "code") else None
            if code is not None and code in _REFUSED_CODES:
                details = exc.details() if hasattr(exc, "details") else ""
                raise SidecarRejectedError(code.value[0], str(details or "")) from exc
            raise SidecarUnavailableError(f"sidecar call failed: {code}") from exc
        return ack

    def invalidate(
        self,
        *,
        key: bytes | None = None,
        prefix: bytes | None = None,
        tag: str | None = None,
        route: str | None = None,
        timeout_s: float | None = None,
    ) -> pb.InvalidateResponse:
        req = invalidate_request(key, prefix, tag, route)
        return self.call(pb.Call(invalidate=req), timeout_s).invalidate
