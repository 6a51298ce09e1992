"""A second transport for the sidecar client, measured by `python -m bench lookup` only.

`MuxClient` is a `kong_plugin.client.SidecarClient` whose calls share one Exchange stream
per channel instead of borrowing a pooled stream each: callers queue calls; grpc's request
thread sends whatever has queued up meanwhile as one batch; a reader thread hands each
reply to its caller by id. Under concurrency this turns many small messages into few large
ones (the per-message cost of Python gRPC is the bottleneck); alone, it costs one more
thread hop. Everything else -- the peer check, restarts, the channel -- is the product
client's.

Not guaranteed: a late reply fails only its own caller (the stream stays usable), and a
call whose stream broke is retried once, as in the product client; nothing here is used by
the plugin.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from queue import SimpleQueue
from typing import Any

import grpc
from strata.v1 import cache_pb2 as pb
from strata.v1 import cache_pb2_grpc as pb_grpc

from kong_plugin.client import SidecarClient, SidecarRejectedError, SidecarUnavailableError

_CLOSE = object()


class _Slot:
    __slots__ = ("event", "reply")

    def __init__(self) -> None:
        self.event = threading.Event()
        self.reply: pb.Reply | None = None


class MuxStream:
    """One Exchange stream shared by every thread of the process (see the module doc)."""

    MAX_BATCH = 64

    def __init__(self, stub: pb_grpc.CacheServiceStub) -> None:
        self.stub = stub
        self._queue: SimpleQueue[Any] = SimpleQueue()
        self._slots: dict[int, _Slot] = {}
        self.broken = False
        self._call: Any = stub.Exchange(self._requests())
        self._reader = threading.Thread(target=self._read, name="strata-mux-reader", daemon=True)
        self._reader.start()

    def _requests(self) -> Iterator[pb.ExchangeRequest]:
        queue = self._queue
        while True:
            item = queue.get()
            if item is _CLOSE:
                return
            calls = [item]
            while len(calls) < self.MAX_BATCH and not queue.empty():
                nxt = queue.get()
                if nxt is _CLOSE:
                    yield pb.ExchangeRequest(calls=calls)
                    return
                calls.append(nxt)
            yield pb.ExchangeRequest(calls=calls)

    def _read(self) -> None:
        try:
            for response in self._call:
                for reply in response.replies:
                    slot = self._slots.pop(reply.id, None)
                    if slot is not None:
                        slot.reply = reply
                        slot.event.set()
        except grpc.RpcError:
            pass
        finally:
            self.broken = True
            for slot in list(self._slots.values()):
                slot.event.set()

    def roundtrip(self, call: pb.Call, deadline: float) -> pb.Reply:
        slot = _Slot()
        self._slots[call.id] = slot
        if self.broken:
            self._slots.pop(call.id, None)
            raise SidecarUnavailableError("sidecar stream is closed")
        self._queue.put(call)
        if not slot.event.wait(max(0.0, deadline - time.monotonic())):
            self._slots.pop(call.id, None)
            raise SidecarUnavailableError("sidecar did not answer in time")
        if slot.reply is None:
            raise SidecarUnavailableError("sidecar stream closed before answering")
        return slot.reply

    def close(self) -> None:
        self._queue.put(_CLOSE)
        self._call.cancel()


class MuxClient(SidecarClient):
    """`SidecarClient` whose calls share one batched stream (see the module docstring)."""

    def __init__(
        self, address: str, timeout_s: float = 0.05, expected_uid: int | None = None
    ) -> None:
        super().__init__(address, timeout_s, expected_uid)
        self._mux: MuxStream | None = None

    def call(self, call: pb.Call, timeout_s: float | None = None, retry: bool = True) -> pb.Reply:
        deadline = time.monotonic() + (self.timeout_s if timeout_s is None else timeout_s)
        call.id = next(self._seq)
        for attempt in (1, 2):
            mux = self._mux_stream()
            try:
                reply = mux.roundtrip(call, deadline)
                break
            except SidecarUnavailableError:
                if (
                    not (retry and attempt == 1 and mux.broken)
                    or self._down()
                    or time.monotonic() >= deadline
                ):
                    raise
        if reply.WhichOneof("result") == "error":
            raise SidecarRejectedError(reply.error.code, reply.error.message)
        return reply

    def _mux_stream(self) -> MuxStream:
        """The shared stream, opened again when it broke or the channel was replaced."""
        if self._mux is not None and self._mux.broken:
            self._suspect()  # its connection may be gone: check before opening another
        stub = self._ensure()
        mux = self._mux
        if mux is None or mux.broken or mux.stub is not stub:
            with self._lock:
                if self._mux is None or self._mux.broken or self._mux.stub is not stub:
                    self._mux = MuxStream(stub)
                mux = self._mux
        return mux

    def _close_locked(self) -> None:
        if self._mux is not None:
            self._mux.close()
            self._mux = None
        super()._close_locked()
