"""`strata.v1.CacheService` handlers over the engine.

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
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import grpc
from strata.v1 import cache_pb2 as _pb

from sidecar import __version__
from sidecar.core.errors import InvalidRequestError
from sidecar.engine.engine import Engine
from sidecar.rpc.bounds import (
    SMALL_MESSAGE_BYTES,
    ByteBudget,
    Gate,
    Refusal,
    ReplyRoom,
    RpcLimits,
    reply_size,
)
from sidecar.rpc.convert import entry_from_proto, headers_from_proto, lookup_to_proto
from sidecar.rpc.intake import (
    Intake,
    OverBudget,
    OversizedBatch,
    Received,
    TooManyElements,
    Undecodable,
)
from sidecar.rpc.refusals import RefusalLog

log = logging.getLogger("strata.sidecar.rpc")
_T = TypeVar("_T")
_RESOURCE_EXHAUSTED = grpc.StatusCode.RESOURCE_EXHAUSTED.value[0]
_INVALID_ARGUMENT = grpc.StatusCode.INVALID_ARGUMENT.value[0]
#: Longest error message put in a reply (a call's reply must stay small, see `bounds`).
_MAX_ERROR_CHARS = 200

_STORE_RESULT = {
    "stored": _pb.STORE_RESULT_STORED,
    "not_admitted": _pb.STORE_RESULT_NOT_ADMITTED,
    "too_large": _pb.STORE_RESULT_TOO_LARGE,
    "expired": _pb.STORE_RESULT_EXPIRED,
}

#: Error type -> gRPC status. Anything else is a bug: INTERNAL, logged with its traceback.
STATUS_FOR_ERROR: dict[type[Exception], grpc.StatusCode] = {
    InvalidRequestError: grpc.StatusCode.INVALID_ARGUMENT,
}


def _may_wait(call: _pb.Call) -> bool:
    """A call that can wait on something other than the CPU (a coalesced lookup)."""
    return call.WhichOneof("op") == "lookup" and call.lookup.coalesce_wait_ms > 0


def _set_error(reply: _pb.Reply, code: int, message: str) -> None:
    reply.ClearField("result")
    reply.error.code = code
    reply.error.message = message[:_MAX_ERROR_CHARS]


def serialized(message: bytes) -> bytes:
    """The `Exchange` response serializer: the handler writes replies already serialized
    (their size is known before they are written, and the message object is gone)."""
    return message


class CacheService:
    """The handlers. `grpc` only appears here and in `sidecar.rpc.server`."""

    def __init__(self, engine: Engine, limits: RpcLimits | None = None) -> None:
        self._engine = engine
        self.limits = limits = limits or RpcLimits()
        self._closing = asyncio.Event()  # set once: the server is shutting down
        # Exchange handlers in progress -> since when (monotonic) each has been waiting for
        # its client's next message; None while it handles one.
        self._streams: dict[asyncio.Task[Any], float | None] = {}
        # Streams told to end (shut down or evicted) and not finished yet.
        self._ending: set[asyncio.Task[Any]] = set()
        self._unary = Gate(limits.max_unary_in_flight)
        self._waiters = Gate(limits.max_coalesce_waiters)
        self.reply_budget = ByteBudget(limits.max_pending_reply_bytes)
        self.intake = Intake(limits)
        self._refusals = RefusalLog(log)

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
        idle = [task for task, since in self._streams.items() if since is not None]
        for task in idle:
            self._end_stream(task)
        return len(idle)

    def _end_stream(self, task: asyncio.Task[Any]) -> None:
        """End an idle stream with status OK (`Exchange` turns the cancel into a return)."""
        self._ending.add(task)
        task.cancel()

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
        return await self._handle("store", request, context, self._store)

    async def Invalidate(  # noqa: N802
        self, request: Any, context: grpc.aio.ServicerContext
    ) -> _pb.InvalidateResponse | None:
        return await self._handle("invalidate", request, context, self._invalidate)

    async def Release(  # noqa: N802
        self, request: Any, context: grpc.aio.ServicerContext
    ) -> _pb.ReleaseResponse | None:
        return await self._handle("release", request, context, self._release)

    async def Stats(self, request: Any, context: grpc.aio.ServicerContext) -> _pb.StatsResponse:  # noqa: N802
        return self.stats()

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
            self._refused(context, operation, "request_bytes_budget", request.message)
            return None
        if not self._unary.try_enter():
            message = (
                f"{self._unary.limit} unary calls are in progress, the most max_unary_in_flight "
                "allows; retry later or use an Exchange stream"
            )
            self._refused(context, operation, "too_many_unary", message)
            return None
        try:
            if isinstance(request, Undecodable):
                raise self._undecodable(operation, request)
            if isinstance(request, TooManyElements):
                raise self._too_many(operation, request)
            return await handler(request)
        except InvalidRequestError as exc:
            self._refusals.refused(operation, exc.reason, str(exc))
            context.set_code(STATUS_FOR_ERROR[InvalidRequestError])
            context.set_details(str(exc))
            return None
        except _ReplyRefusedError as exc:
            self._refused(context, operation, exc.reason, exc.message)
            return None
        finally:
            self._unary.leave()

    def _refused(
        self, context: grpc.aio.ServicerContext, operation: str, reason: str, message: str
    ) -> None:
        """Count, log and set the call's status to RESOURCE_EXHAUSTED (the handler then
        returns None: no reply is sent)."""
        self._refuse(operation, reason, message)
        context.set_code(grpc.StatusCode.RESOURCE_EXHAUSTED)
        context.set_details(message)

    def _refuse(self, operation: str, reason: str, message: str) -> None:
        """Count a refusal over a limit and log it (rate-limited)."""
        self._engine.note_rejected(operation, reason)
        self._refusals.refused(operation, reason, message)

    async def _unary_lookup(
        self, req: _pb.LookupRequest, timeout_s: float | None, context: grpc.aio.ServicerContext
    ) -> _pb.LookupResponse:
        budget, limit = self.reply_budget, self.limits.max_message_bytes
        out = _pb.LookupResponse()
        try:
            await self._lookup_into(
                req,
                out,
                timeout_s,
                fits=lambda n: n <= limit and (n <= SMALL_MESSAGE_BYTES or budget.fits(n)),
            )
        except _NotBuiltError as exc:
            out.Clear()
            size = exc.size
        else:
            size = out.ByteSize()
        if size > limit:  # a shared tier's entry from a larger limit
            await self._give_back_lease(req, out)
            raise _ReplyRefusedError(
                Refusal.TOO_LARGE.value,
                f"reply of {size} bytes exceeds the {limit}-byte message limit",
            )
        if size > SMALL_MESSAGE_BYTES:  # counted until the client has it (or left)
            if not budget.take(size):
                await self._give_back_lease(req, out)
                raise _ReplyRefusedError(
                    Refusal.BUDGET.value,
                    f"reply of {size} bytes not sent: {budget.pending} bytes of replies wait "
                    f"for clients to read them, max_pending_reply_bytes is {budget.limit}",
                )
            context.add_done_callback(lambda _: budget.give(size))
        return out

    def _undecodable(self, operation: str, request: Undecodable) -> InvalidRequestError:
        self._engine.note_rejected(operation, "undecodable")
        return InvalidRequestError(
            "request", f"not a valid {request.type_name} message: {request.error}", "undecodable"
        )

    def _too_many(self, operation: str, request: TooManyElements) -> InvalidRequestError:
        self._engine.note_rejected(operation, request.reason)
        return InvalidRequestError(request.excess.path, request.detail, request.reason)

    # -- stream ------------------------------------------------------------------------

    async def Exchange(  # noqa: N802
        self, requests: AsyncIterator[Any], context: grpc.aio.ServicerContext
    ) -> None:
        """Read a batch, answer it, read the next: one reply message at a time, so a client
        that does not read holds at most one (see `sidecar.rpc.bounds`). Messages are read
        with `context.read()`; `requests` (gRPC's iterator over them) is not used."""
        task = asyncio.current_task()
        assert task is not None
        if self._closing.is_set():
            return
        streams = self._streams
        if len(streams) - len(self._ending) >= self.limits.max_streams and not self._evict():
            message = (
                f"{len(streams)} Exchange streams are open and busy, the most max_streams "
                "allows; retry later"
            )
            self._refused(context, "exchange", "too_many_streams", message)
            return
        streams[task] = time.monotonic()  # idle: waiting for the client's next message
        intake = self.intake
        try:
            # context.read(), not `async for` over `requests`: its generator would keep the
            # last request alive while the reply waits on a slow reader.
            while (message := await context.read()) is not grpc.aio.EOF:
                streams[task] = None
                received = None
                if type(message) is Received:
                    received, message = message, message.take()
                room = self._room(message)
                try:
                    response = await self._exchange(message, room)
                    del message  # neither the request nor the reply object waits on the write
                    if received is not None:
                        intake.done(received)
                    raw = response.SerializeToString()
                    del response
                    await context.write(raw)
                finally:
                    room.release()
                    if received is not None:
                        intake.done(received)  # a no-op if given back already
                if self._closing.is_set():
                    return
                streams[task] = time.monotonic()
        except asyncio.CancelledError:
            if task not in self._ending:
                raise  # the client went away
            # Ended by `begin_shutdown` or `_evict`: returning makes gRPC send status OK at
            # once (a cancelled handler sends nothing, and the stream would hang until the
            # grace period ends, or its client gives up).
            task.uncancel()
        finally:
            del streams[task]
            self._ending.discard(task)

    def _evict(self) -> bool:
        """Make room for one more stream: end the one that has waited longest for its
        client's next message. False if every stream is busy."""
        idle = [(since, t) for t, since in self._streams.items() if since is not None]
        idle = [(since, t) for since, t in idle if t not in self._ending]
        if not idle:
            return False
        since, task = min(idle, key=lambda pair: pair[0])
        self._end_stream(task)
        self._refuse(
            "exchange",
            "stream_evicted",
            f"max_streams ({self.limits.max_streams}) Exchange streams are open: ended the "
            f"one idle for {time.monotonic() - since:.1f} s to let a new one in",
        )
        return True

    def _room(self, message: Any) -> ReplyRoom:
        """The room of the reply message to `message` (a refused one gets one reply)."""
        calls = len(message.calls) if isinstance(message, _pb.ExchangeRequest) else 1
        calls = min(calls, self.limits.max_batch_calls)  # a larger batch gets one reply
        return ReplyRoom(self.reply_budget, self.limits.max_message_bytes, calls)

    async def _exchange(self, message: Any, room: ReplyRoom) -> _pb.ExchangeResponse:
        response = _pb.ExchangeResponse()
        if isinstance(message, Undecodable):
            exc = self._undecodable("exchange", message)
            self._refusals.refused("exchange", exc.reason, str(exc))
            _set_error(response.replies.add(id=0), _INVALID_ARGUMENT, str(exc))
        elif isinstance(message, TooManyElements):
            exc = self._too_many("exchange", message)
            self._refusals.refused("exchange", exc.reason, str(exc))
            _set_error(response.replies.add(id=0), _INVALID_ARGUMENT, str(exc))
        elif isinstance(message, OverBudget):
            self._refuse("exchange", "request_bytes_budget", message.message)
            _set_error(response.replies.add(id=0), _RESOURCE_EXHAUSTED, message.message)
        elif (
            isinstance(message, OversizedBatch) or len(message.calls) > self.limits.max_batch_calls
        ):
            text = (
                f"batch of more than {self.limits.max_batch_calls} calls (max_batch_calls); "
                "none of its calls was run"
            )
            self._refuse("exchange", "batch_too_large", text)
            _set_error(response.replies.add(id=0), _RESOURCE_EXHAUSTED, text)
        elif len(message.calls) == 1 or not any(_may_wait(c) for c in message.calls):
            # One after the other: no call in the batch waits, so nothing is gained by
            # running them concurrently, and a task per call costs more than the lookup.
            for call in message.calls:
                await self._call(call, response.replies.add(), room)
        else:
            replies = [response.replies.add() for _ in message.calls]
            await asyncio.gather(
                *(self._call(c, r, room) for c, r in zip(message.calls, replies, strict=True))
            )
        return response

    async def _call(self, call: _pb.Call, reply: _pb.Reply, room: ReplyRoom) -> None:
        reply.id = call.id
        op = call.WhichOneof("op")
        try:
            if op == "lookup":
                await self._lookup_into(call.lookup, reply.lookup, fits=room.may_fit)
            elif op == "store":
                reply.store.CopyFrom(await self._store(call.store))
            elif op == "invalidate":
                reply.invalidate.CopyFrom(await self._invalidate(call.invalidate))
            elif op == "release":
                reply.release.CopyFrom(await self._release(call.release))
            else:
                self._engine.note_rejected("exchange", "no_operation")
                raise InvalidRequestError("call.op", "no operation set", "no_operation")
        except InvalidRequestError as exc:
            self._refusals.refused(op or "exchange", exc.reason, str(exc))
            _set_error(reply, _INVALID_ARGUMENT, str(exc))
        except _NotBuiltError as exc:  # the entry alone cannot fit: refused unbuilt
            refusal = room.refusal_for(exc.size) or Refusal.BUDGET
            self._refuse_reply(call, reply, room, refusal, exc.size)
            return
        except Exception as exc:  # a bug: this call fails, the stream and its other calls go on
            log.exception(
                "call failed", extra={"event.action": op or "exchange", "error.message": str(exc)}
            )
            _set_error(
                reply, grpc.StatusCode.INTERNAL.value[0], f"internal error: {type(exc).__name__}"
            )
        await self._fit(call, reply, room)

    async def _fit(self, call: _pb.Call, reply: _pb.Reply, room: ReplyRoom) -> None:
        """Keep `reply` in its message if it fits (`ReplyRoom.admit`); else replace it with
        a RESOURCE_EXHAUSTED error naming the sizes and the limit."""
        size = reply_size(reply.ByteSize())
        refusal = room.admit(size)
        if refusal is None:
            return
        if reply.WhichOneof("result") == "lookup":
            await self._give_back_lease(call.lookup, reply.lookup)
        self._refuse_reply(call, reply, room, refusal, size)

    def _refuse_reply(
        self, call: _pb.Call, reply: _pb.Reply, room: ReplyRoom, refusal: Refusal, size: int
    ) -> None:
        """Replace `reply` (of `size` bytes, built or not) with a RESOURCE_EXHAUSTED error
        naming the sizes and the limit; count and log the refusal."""
        if refusal is Refusal.TOO_LARGE:
            text = (
                f"reply of {size} bytes does not fit: {max(room.left, 0)} bytes are left of the "
                f"{room.limit}-byte message limit for this batch; send fewer calls per batch"
            )
        else:
            text = (
                f"reply of {size} bytes not sent: {self.reply_budget.pending} bytes of replies "
                f"wait for clients to read them, max_pending_reply_bytes is "
                f"{self.reply_budget.limit}"
            )
        self._refuse(call.WhichOneof("op") or "exchange", refusal.value, text)
        _set_error(reply, _RESOURCE_EXHAUSTED, text)
        room.admit(reply_size(reply.ByteSize()))  # small: always fits

    async def _give_back_lease(self, req: _pb.LookupRequest, out: _pb.LookupResponse) -> None:
        """A lookup answered with an error gives back the fill lease it was granted, so
        callers waiting on it are not left waiting for a fill that will not come."""
        if out.fill_lease:
            await self._engine.release(req.key)

    # -- operations --------------------------------------------------------------------

    async def _lookup_into(
        self,
        req: _pb.LookupRequest,
        out: _pb.LookupResponse,
        timeout_s: float | None = None,
        fits: Callable[[int], bool] | None = None,
    ) -> None:
        """`timeout_s`: what is left of the caller's deadline, when known (unary calls with
        a gRPC deadline; an Exchange stream carries none per call: the engine's lookup
        budget applies alone). Above `max_coalesce_waiters` lookups that may wait, this one
        does not ask to wait. `fits(n)`: whether a reply of at least `n` bytes may still be
        sent; if not, the reply is not built (a large entry copied only to be dropped leaves
        its size in the allocator's hands): its lease is given back and `_NotBuiltError`
        raised."""
        wait_ms = req.coalesce_wait_ms
        waiting = wait_ms > 0 and self._waiters.try_enter()
        if wait_ms > 0 and not waiting:
            self._refuse(
                "lookup",
                "too_many_waiters",
                f"{self._waiters.limit} lookups may already wait for a fill, the most "
                "max_coalesce_waiters allows; answered without waiting",
            )
            wait_ms = 0
        try:
            result = await self._engine.lookup(
                req.key,
                headers_from_proto(req.request_headers) if req.request_headers else (),
                wait_ms,
                timeout_s=timeout_s,
            )
        finally:
            if waiting:
                self._waiters.leave()
        if fits is not None and result.entry is not None:
            size = reply_size(len(result.entry.body))  # a lower bound of the reply's size
            if not fits(size):
                if result.fill_lease:
                    await self._engine.release(req.key)
                raise _NotBuiltError(size)
        lookup_to_proto(result, out)

    async def _store(self, req: _pb.StoreRequest) -> _pb.StoreResponse:
        if not req.HasField("entry"):
            self._engine.note_rejected("store", "missing_entry")
            raise InvalidRequestError("entry", "is required", "missing_entry")
        result = await self._engine.store(
            req.key, entry_from_proto(req.entry), headers_from_proto(req.request_headers)
        )
        return _pb.StoreResponse(
            result=_STORE_RESULT[result.status.value], waiters_released=result.waiters_released
        )

    async def _invalidate(self, req: _pb.InvalidateRequest) -> _pb.InvalidateResponse:
        target = req.WhichOneof("target")
        if target == "key":
            dropped = await self._engine.invalidate_key(req.key)
        elif target == "prefix":
            dropped = await self._engine.invalidate_prefix(req.prefix)
        elif target == "tag":
            dropped = await self._engine.invalidate_tag(req.tag)
        else:
            self._engine.note_rejected("invalidate", "no_target")
            raise InvalidRequestError("target", "set one of key, prefix or tag", "no_target")
        return _pb.InvalidateResponse(dropped=dropped)

    async def _release(self, req: _pb.ReleaseRequest) -> _pb.ReleaseResponse:
        return _pb.ReleaseResponse(waiters_released=await self._engine.release(req.key))

    def stats(self) -> _pb.StatsResponse:
        c = self._engine.counters
        out = _pb.StatsResponse(
            lookups=c.lookups,
            hits=c.hits,
            stale_hits=c.stale_hits,
            misses=c.misses,
            stores=c.stores,
            invalidations=c.invalidations,
            coalesced=c.coalesced,
            rejected_requests=c.rejected_requests,
            version=__version__,
        )
        for t in self._engine.snapshot():
            out.tiers.add(
                name=t.name,
                entries=t.entries,
                bytes=t.bytes,
                max_bytes=t.max_bytes,
                hits=t.hits,
                misses=t.misses,
                evictions=t.evictions,
                admission_rejections=t.admission_rejections,
            )
        return out


class _NotBuiltError(Exception):
    """A lookup's reply, of at least `size` bytes, was not built: it could not be sent."""

    def __init__(self, size: int) -> None:
        super().__init__(size)
        self.size = size


class _ReplyRefusedError(Exception):
    """A unary reply that cannot be sent (`reason` is a metric label)."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
