"""`strata.v1.CacheService` handlers over the engine: the unary calls here, the `Exchange`
stream in `sidecar.rpc.exchange`, the operations both run in `sidecar.rpc.operations`.

One table maps error types to gRPC status codes. Requests that do not even decode are
refused as INVALID_ARGUMENT too (the deserializer hands over an `Undecodable`), counted and
logged like any other bad request; the server carries on. So are large requests with a
repeated field over its limit, refused before they are parsed (`sidecar.rpc.intake`).

A refused unary call returns with its status set (`context.set_code`), never through
`context.abort`: grpc.aio keeps the exception `abort` raises on the call's state, and its
traceback holds the handler's frames, the request among them, in a reference cycle with
that state; the request then stayed in memory until a full garbage collection (measured:
a 16 MB refused request held 430 MiB each, RSS +2.6 GiB after six).

Limits of the gRPC surface (`sidecar.rpc.bounds.RpcLimits`), each refusal counted in
`strata_rejected_requests_total{operation,reason}` and logged (`sidecar.rpc.refusals`, at
most one line per operation and reason every few seconds):

* An `Exchange` message of more than `max_batch_calls` calls runs none of them: it gets one
  reply, id 0, with a RESOURCE_EXHAUSTED error naming the limit (reason `batch_too_large`);
  the stream carries on.
* At `max_streams` open `Exchange` streams, a new one ends the stream that has waited
  longest for its client's next message (status OK: the client reopens one on its next
  call; reason `stream_evicted`); only when none is waiting is the new one ended at once
  with RESOURCE_EXHAUSTED naming the setting (`too_many_streams`). Above
  `max_unary_in_flight` unary calls being handled, a new one gets RESOURCE_EXHAUSTED
  (`too_many_unary`).
* A request larger than 64 KiB is counted in `max_request_bytes_in_flight` until its call
  is done; over it, it is refused unparsed with RESOURCE_EXHAUSTED (`request_bytes_budget`;
  in `Exchange`, as one error reply with id 0, and the stream goes on).
* At `max_watch_streams` open `Watch` streams, a new one is ended at once with
  RESOURCE_EXHAUSTED (`too_many_watchers`); each one's queue is bounded
  (`sidecar.rpc.watch`).
* Above `max_coalesce_waiters` lookups that may wait for a fill, a lookup asking to wait is
  answered as if it had not asked (no lease, no wait; `too_many_waiters`).
* In one reply message, a call whose reply does not fit in what is left of the message
  limit (`reply_too_large`), or whose reply would take the bytes written to clients and
  not yet read above `max_pending_reply_bytes` (`reply_budget`), gets a RESOURCE_EXHAUSTED
  error instead, naming the sizes and the limit; the other calls and the stream go on. A
  lookup refused so gives its fill lease back. Calls run concurrently (a batch with a
  coalescing lookup) are fitted in the order they finish, the others in batch order. A
  unary `Lookup` reply of more than 64 KiB is counted in the same budget until the call is
  done; over it, the call gets RESOURCE_EXHAUSTED (`reply_budget`).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import grpc
from strata.v1 import cache_pb2 as _pb

from sidecar.analytics.service import Analytics
from sidecar.core.errors import InvalidRequestError
from sidecar.engine.engine import Engine
from sidecar.invalidation import Invalidations
from sidecar.rpc.bounds import SMALL_MESSAGE_BYTES, ByteBudget, Gate, Refusal, RpcLimits
from sidecar.rpc.exchange import ExchangeStreams, serialized
from sidecar.rpc.intake import Intake, OverBudget, Received, TooManyElements, Undecodable
from sidecar.rpc.operations import (
    STATUS_FOR_ERROR,
    NotBuiltError,
    Operations,
    ReplyRefusedError,
)
from sidecar.rpc.watch import WatchStreams

__all__ = ["STATUS_FOR_ERROR", "CacheService", "serialized"]

_T = TypeVar("_T")


class CacheService:
    """The handlers. `grpc` only appears in `sidecar.rpc`."""

    def __init__(
        self,
        engine: Engine,
        limits: RpcLimits | None = None,
        invalidations: Invalidations | None = None,
        analytics: Analytics | None = None,
    ) -> None:
        """`analytics`: where ``ReportAccess`` events go (default: off, every batch is
        answered ``disabled``)."""
        self._engine = engine
        self.analytics = analytics or Analytics("local")
        self.limits = limits = limits or RpcLimits()
        self._closing = asyncio.Event()  # set once: the server is shutting down
        self._unary = Gate(limits.max_unary_in_flight)
        self._reports = Gate(limits.max_reports_in_flight)
        self.reply_budget = ByteBudget(limits.max_pending_reply_bytes)
        self.intake = Intake(limits)
        self._ops = Operations(engine, limits.max_coalesce_waiters, invalidations)
        self._streams = ExchangeStreams(
            self._ops, limits, self.reply_budget, self.intake, self._closing
        )
        self.watches = WatchStreams(
            self._ops, engine.changes, limits.max_watch_streams, self._closing
        )

    def begin_shutdown(self) -> int:
        """Stop taking new messages on open streams: idle streams end now, busy ones right
        after their current message, streams opened from now on before their first. Each
        ends with status OK, which tells the client to open a new stream (on the sidecar
        that took over, if any). Returns the number of streams ended at once.

        Call it after the server has stopped taking new calls, or clients just reopen.
        A message that was on its way on an idle stream is dropped unanswered: the client
        sees the stream end without a reply and sends it again on a new stream."""
        self._closing.set()
        self._engine.wake_waiters()  # coalesced lookups answer now, not after their wait
        self.watches.end_all()
        return self._streams.end_idle()

    async def Exchange(  # noqa: N802
        self, requests: AsyncIterator[Any], context: grpc.aio.ServicerContext
    ) -> None:
        """See `sidecar.rpc.exchange.ExchangeStreams.serve`."""
        await self._streams.serve(requests, context)

    async def Watch(self, request: Any, context: grpc.aio.ServicerContext) -> None:  # noqa: N802
        """See `sidecar.rpc.watch.WatchStreams.serve`."""
        await self.watches.serve(request, context)

    def stats(self) -> _pb.StatsResponse:
        return self._ops.stats()

    # -- unary -------------------------------------------------------------------------

    # Each returns None (the reply is then not sent) when it has set a status other than OK.

    async def Lookup(  # noqa: N802
        self, request: Any, context: grpc.aio.ServicerContext
    ) -> _pb.LookupResponse | None:
        # The client's gRPC deadline (if it set one) bounds the tier reads too.
        remaining = context.time_remaining()
        return await self._handle(
            "lookup", request, context, lambda r: self._unary_lookup(r, remaining, context)
        )

    async def Store(  # noqa: N802
        self, request: Any, context: grpc.aio.ServicerContext
    ) -> _pb.StoreResponse | None:
        return await self._handle("store", request, context, self._ops.store)

    async def Invalidate(  # noqa: N802
        self, request: Any, context: grpc.aio.ServicerContext
    ) -> _pb.InvalidateResponse | None:
        return await self._handle("invalidate", request, context, self._ops.invalidate)

    async def Release(  # noqa: N802
        self, request: Any, context: grpc.aio.ServicerContext
    ) -> _pb.ReleaseResponse | None:
        return await self._handle("release", request, context, self._ops.release)

    async def Stats(self, request: Any, context: grpc.aio.ServicerContext) -> _pb.StatsResponse:  # noqa: N802
        return self.stats()

    async def ReportAccess(  # noqa: N802
        self, request: Any, context: grpc.aio.ServicerContext
    ) -> _pb.AccessAck | None:
        """Analytics events (`sidecar.analytics.service`); a batch of more than
        `RpcLimits.max_report_events` is refused whole (INVALID_ARGUMENT,
        ``too_many_events``), and so is a call beyond `RpcLimits.max_reports_in_flight`
        (RESOURCE_EXHAUSTED, ``too_many_reports``)."""
        return await self._handle("report_access", request, context, self._report_access)

    async def _report_access(self, req: _pb.AccessBatch) -> _pb.AccessAck:
        limit = self.limits.max_report_events
        if len(req.events) > limit:
            self._engine.note_rejected("report_access", "too_many_events")
            raise InvalidRequestError(
                "events", f"more than {limit} elements; nothing was taken", "too_many_events"
            )
        if not self._reports.try_enter():
            raise ReplyRefusedError(
                "too_many_reports",
                f"{self._reports.limit} ReportAccess calls are in progress, the most this "
                "sidecar handles at once; nothing was taken",
            )
        try:
            return await self.analytics.report(req)
        finally:
            self._reports.leave()

    async def _handle(
        self,
        operation: str,
        request: Any,
        context: grpc.aio.ServicerContext,
        handler: Callable[[Any], Awaitable[_T]],
    ) -> _T | None:
        if type(request) is Received:
            intake, received = self.intake, request
            context.add_done_callback(lambda _: intake.done(received))
            request = request.take()  # only this frame holds the message now
        if isinstance(request, OverBudget):
            self._ops.refuse_call(context, operation, "request_bytes_budget", request.message)
            return None
        if not self._unary.try_enter():
            message = (
                f"{self._unary.limit} unary calls are in progress, the most max_unary_in_flight "
                "allows; retry later or use an Exchange stream"
            )
            self._ops.refuse_call(context, operation, "too_many_unary", message)
            return None
        try:
            if isinstance(request, Undecodable):
                raise self._ops.undecodable(operation, request)
            if isinstance(request, TooManyElements):
                raise self._ops.too_many(operation, request)
            return await handler(request)
        except InvalidRequestError as exc:
            self._ops.refusals.refused(operation, exc.reason, str(exc))
            context.set_code(STATUS_FOR_ERROR[InvalidRequestError])
            context.set_details(str(exc))
            return None
        except ReplyRefusedError as exc:
            self._ops.refuse_call(context, operation, exc.reason, exc.message)
            return None
        finally:
            self._unary.leave()

    async def _unary_lookup(
        self, req: _pb.LookupRequest, timeout_s: float | None, context: grpc.aio.ServicerContext
    ) -> _pb.LookupResponse:
        budget, limit = self.reply_budget, self.limits.max_message_bytes
        out = _pb.LookupResponse()
        try:
            await self._ops.lookup_into(
                req,
                out,
                timeout_s,
                fits=lambda n: n <= limit and (n <= SMALL_MESSAGE_BYTES or budget.fits(n)),
            )
        except NotBuiltError as exc:
            out.Clear()
            size = exc.size
        else:
            size = out.ByteSize()
        if size > limit:  # a shared tier's entry from a larger limit
            await self._ops.give_back_lease(req, out)
            raise ReplyRefusedError(
                Refusal.TOO_LARGE.value,
                f"reply of {size} bytes exceeds the {limit}-byte message limit",
            )
        if size > SMALL_MESSAGE_BYTES:  # counted until the client has it (or left)
            if not budget.take(size):
                await self._ops.give_back_lease(req, out)
                raise ReplyRefusedError(
                    Refusal.BUDGET.value,
                    f"reply of {size} bytes not sent: {budget.pending} bytes of replies wait "
                    f"for clients to read them, max_pending_reply_bytes is {budget.limit}",
                )
            context.add_done_callback(lambda _: budget.give(size))
        return out
