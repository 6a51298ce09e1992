"""The client's transport pieces: one Exchange stream used by one thread at a time, and the
watchdog that enforces a call's deadline by cancelling the stream it waits on.

A bidirectional stream has no per-message deadline, so `SidecarClient` arms the watchdog
before each round trip; a stream whose call is late is cancelled, its caller sees the
stream fail, and the stream is never used again.

Not guaranteed: a deadline is enforced to within `WATCHDOG_GRANULARITY_S` (and the
scheduling of the watchdog's thread); the cancelled call may still have been applied.
"""

from __future__ import annotations

import heapq
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from queue import SimpleQueue
from typing import Any

from strata.v1 import cache_pb2 as pb
from strata.v1 import cache_pb2_grpc as pb_grpc

#: How often the watchdog looks for late streams at most (coarse on purpose: it is idle
#: work on every call otherwise). A deadline is enforced within this much.
WATCHDOG_GRANULARITY_S = 0.002

_CLOSE = object()


class Stream:
    """One Exchange stream, used by one thread at a time."""

    def __init__(self, stub: pb_grpc.CacheServiceStub) -> None:
        self._queue: SimpleQueue[Any] = SimpleQueue()
        self._call: Any = stub.Exchange(self._requests())
        self.inflight: int | None = None
        self.used = False

    def _requests(self) -> Iterator[pb.ExchangeRequest]:
        while True:
            item = self._queue.get()
            if item is _CLOSE:
                return
            yield item

    def roundtrip(self, request: pb.ExchangeRequest) -> pb.ExchangeResponse:
        self._queue.put(request)
        self.used = True
        return next(self._call)  # type: ignore[no-any-return]

    def ended(self) -> bool:
        """The stream is over (the sidecar ended it, or its connection died)."""
        return bool(self._call.done())

    def cancel(self) -> None:
        self._call.cancel()

    def close(self) -> None:
        self._queue.put(_CLOSE)
        self._call.cancel()


@dataclass(order=True)
class _Deadline:
    at: float
    seq: int
    stream: Stream = field(compare=False)


class Watchdog:
    """Cancels streams whose call outlived its deadline (one daemon thread per channel)."""

    def __init__(self) -> None:
        self._heap: list[_Deadline] = []
        self._cond = threading.Condition()
        self._thread = threading.Thread(target=self._run, name="strata-watchdog", daemon=True)
        self._thread.start()

    def arm(self, stream: Stream, seq: int, at: float) -> None:
        with self._cond:
            first = not self._heap or at < self._heap[0].at
            heapq.heappush(self._heap, _Deadline(at, seq, stream))
            if first:
                self._cond.notify()

    def _run(self) -> None:
        with self._cond:
            while True:
                if not self._heap:
                    self._cond.wait()
                    continue
                now = time.monotonic()
                wait = self._heap[0].at - now
                if wait > 0:
                    self._cond.wait(max(wait, WATCHDOG_GRANULARITY_S))
                    continue
                while self._heap and self._heap[0].at <= now:
                    d = heapq.heappop(self._heap)
                    if d.stream.inflight == d.seq:
                        d.stream.cancel()
