"""`strata.v1.CacheService` handlers over the engine.

One table maps error types to gRPC status codes. Requests that do not even decode are
refused as INVALID_ARGUMENT too (the deserializer hands over an `Undecodable`), counted and
logged like any other bad request; the server carries on.

Limits of the gRPC surface (`sidecar.rpc.bounds.RpcLimits`), each refusal counted in
`strata_rejected_requests_total{operation,reason}` and logged (`sidecar.rpc.refusals`, at
most one line per operation and reason every few seconds):

* An `Exchange` message of more than `max_batch_calls` calls runs none of them: it gets one
  reply, id 0, with a RESOURCE_EXHAUSTED error naming the limit (reason `batch_too_large`);
  the stream carries on.
* Above `max_streams` open `Exchange` streams, or `max_unary_in_flight` unary calls being
  handled, a new one ends at once with RESOURCE_EXHAUSTED naming the setting
  (`too_many_streams`, `too_many_unary`).
* Above `max_coalesce_waiters` lookups that may wait for a fill, a lookup asking to wait is
  answered as if it had not asked (no lease, no wait; `too_many_waiters`).
* In one reply message, a call whose reply does not fit in what is left of the message
  limit (`reply_too_large`), or whose reply would take the bytes written to clients and
  not yet read above `max_pending_reply_bytes` (`reply_budget`), gets a RESOURCE_EXHAUSTED
  error instead, naming the sizes and the limit; the other calls and the stream go on. A
  lookup refused so gives its fill lease back. Calls run concurrently (a batch with a
  coalescing lookup) are fitted in the order they finish, the others in batch order.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import grpc
from google.protobuf.message import DecodeError
from strata.v1 import cache_pb2 as _pb

from sidecar import __version__
from sidecar.engine import Engine
from sidecar.errors import InvalidRequestError
from sidecar.rpc.bounds import (
    Gate,
    Refusal,
    ReplyBudget,
    ReplyRoom,
    RpcLimits,
    more_than,
    reply_size,
)
from sidecar.rpc.convert import entry_from_proto, headers_from_proto, lookup_to_proto
from sidecar.rpc.refusals import RefusalLog

log = logging.getLogger("strata.sidecar.rpc")
_T = TypeVar("_T")
_RESOURCE_EXHAUSTED = grpc.StatusCode.RESOURCE_EXHAUSTED.value[0]
_INVALID_ARGUMENT = grpc.StatusCode.INVALID_ARGUMENT.value[0]
_CALLS_FIELD = _pb.ExchangeRequest.DESCRIPTOR.fields_by_name["calls"].number
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


@dataclass(frozen=True, slots=True)
class Undecodable:
    """A request whose bytes are not a valid message of the expected type."""

    type_name: str
    error: str


@dataclass(frozen=True, slots=True)
class OversizedBatch:
    """An `Exchange` message with more than `limit` calls, left unparsed."""

    limit: int


def safe_deserializer(cls: Any, max_calls: int | None = None) -> Callable[[bytes], Any]:
    """`cls.FromString` that returns `Undecodable` instead of raising. With `max_calls`
    (for `ExchangeRequest`): a message of more calls is not parsed at all, it becomes an
    `OversizedBatch`."""
    name = cls.DESCRIPTOR.full_name

    def deserialize(data: bytes) -> Any:
        if max_calls is not None and more_than(data, _CALLS_FIELD, max_calls):
            return OversizedBatch(max_calls)
        try:
            return cls.FromString(data)
        except (DecodeError, ValueError, TypeError) as exc:
            return Undecodable(name, str(exc) or exc.__class__.__name__)

    return deserialize


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
        # Exchange handlers in progress -> True while waiting for the client's next message.
        self._streams: dict[asyncio.Task[Any], bool] = {}
        self._unary = Gate(limits.max_unary_in_flight)
        self._waiters = Gate(limits.max_coalesce_waiters)
        self.reply_budget = ReplyBudget(limits.max_pending_reply_bytes)
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
        idle = [task for task, waiting in self._streams.items() if waiting]
        for task in idle:
            task.cancel()  # turned into a normal end of the stream in `Exchange`
        return len(idle)

    # -- unary -------------------------------------------------------------------------

    async def Lookup(self, request: Any, context: grpc.aio.ServicerContext) -> _pb.LookupResponse:  # noqa: N802
        # The client's gRPC deadline (if it set one) bounds the tier reads too.
        remaining = context.time_remaining()
        return await self._handle(
            "lookup", request, context, lambda r: self._unary_lookup(r, remaining)
        )

    async def Store(self, request: Any, context: grpc.aio.ServicerContext) -> _pb.StoreResponse:  # noqa: N802
        return await self._handle("store", request, context, self._store)

    async def Invalidate(  # noqa: N802
        self, request: Any, context: grpc.aio.ServicerContext
    ) -> _pb.InvalidateResponse:
        return await self._handle("invalidate", request, context, self._invalidate)

    async def Release(self, request: Any, context: grpc.aio.ServicerContext) -> _pb.ReleaseResponse:  # noqa: N802
        return await self._handle("release", request, context, self._release)

    async def Stats(self, request: Any, context: grpc.aio.ServicerContext) -> _pb.StatsResponse:  # noqa: N802
        return self.stats()

    async def _handle(
        self,
        operation: str,
        request: Any,
        context: grpc.aio.ServicerContext,
        handler: Callable[[Any], Awaitable[_T]],
    ) -> _T:
        if not self._unary.try_enter():
            message = (
                f"{self._unary.limit} unary calls are in progress, the most max_unary_in_flight "
                "allows; retry later or use an Exchange stream"
            )
            await self._abort_refused(context, operation, "too_many_unary", message)
        try:
            if isinstance(request, Undecodable):
                raise self._undecodable(operation, request)
            return await handler(request)
        except InvalidRequestError as exc:
            self._refusals.refused(operation, exc.reason, str(exc))
            await context.abort(STATUS_FOR_ERROR[InvalidRequestError], str(exc))
            raise  # unreachable: abort raises
        except _ReplyRefusedError as exc:
            await self._abort_refused(context, operation, exc.reason, exc.message)
            raise  # unreachable: abort raises
        finally:
            self._unary.leave()

    async def _abort_refused(
        self, context: grpc.aio.ServicerContext, operation: str, reason: str, message: str
    ) -> None:
        """Count, log and end the call with RESOURCE_EXHAUSTED (raises)."""
        self._refuse(operation, reason, message)
        await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, message)

    def _refuse(self, operation: str, reason: str, message: str) -> None:
        """Count a refusal over a limit and log it (rate-limited)."""
        self._engine.note_rejected(operation, reason)
        self._refusals.refused(operation, reason, message)

    async def _unary_lookup(
        self, req: _pb.LookupRequest, timeout_s: float | None
    ) -> _pb.LookupResponse:
        out = await self._lookup(req, timeout_s)
        size = out.ByteSize()
        if size > self.limits.max_message_bytes:  # a shared tier's entry from a larger limit
            await self._give_back_lease(req, out)
            raise _ReplyRefusedError(
                Refusal.TOO_LARGE.value,
                f"reply of {size} bytes exceeds the {self.limits.max_message_bytes}-byte "
                "message limit",
            )
        return out

    def _undecodable(self, operation: str, request: Undecodable) -> InvalidRequestError:
        self._engine.note_rejected(operation, "undecodable")
        return InvalidRequestError(
            "request", f"not a valid {request.type_name} message: {request.error}", "undecodable"
        )

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
        if len(streams) >= self.limits.max_streams:
            message = (
                f"{len(streams)} Exchange streams are open, the most max_streams allows; "
                "retry later"
            )
            await self._abort_refused(context, "exchange", "too_many_streams", message)
        streams[task] = True  # idle: waiting for the client's next message
        try:
            # context.read(), not `async for` over `requests`: its generator would keep the
            # last request alive while the reply waits on a slow reader.
            while (message := await context.read()) is not grpc.aio.EOF:
                streams[task] = False
                room = self._room(message)
                try:
                    response = await self._exchange(message, room)
                    del message  # neither the request nor the reply object waits on the write
                    raw = response.SerializeToString()
                    del response
                    await context.write(raw)
                finally:
                    room.release()
                if self._closing.is_set():
                    return
                streams[task] = True
        except asyncio.CancelledError:
            if not self._closing.is_set():
                raise  # the client went away
            # Ended by `begin_shutdown`: returning makes gRPC send status OK at once (a
            # cancelled handler sends nothing, and the stream would hang until the grace
            # period ends).
            task.uncancel()
        finally:
            del streams[task]

    def _room(self, message: Any) -> ReplyRoom:
        calls = len(message.calls) if isinstance(message, _pb.ExchangeRequest) else 1
        calls = min(calls, self.limits.max_batch_calls)  # a larger batch gets one reply
        return ReplyRoom(self.reply_budget, self.limits.max_message_bytes, calls)

    async def _exchange(self, message: Any, room: ReplyRoom) -> _pb.ExchangeResponse:
        response = _pb.ExchangeResponse()
        if isinstance(message, Undecodable):
            exc = self._undecodable("exchange", message)
            self._refusals.refused("exchange", exc.reason, str(exc))
            _set_error(response.replies.add(id=0), _INVALID_ARGUMENT, str(exc))
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
                await self._lookup_into(call.lookup, reply.lookup)
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
        if reply.WhichOneof("result") == "lookup":
            await self._give_back_lease(call.lookup, reply.lookup)
        self._refuse(call.WhichOneof("op") or "exchange", refusal.value, text)
        _set_error(reply, _RESOURCE_EXHAUSTED, text)
        room.admit(reply_size(reply.ByteSize()))  # small: always fits

    async def _give_back_lease(self, req: _pb.LookupRequest, out: _pb.LookupResponse) -> None:
        """A lookup answered with an error gives back the fill lease it was granted, so
        callers waiting on it are not left waiting for a fill that will not come."""
        if out.fill_lease:
            await self._engine.release(req.key)

    # -- operations --------------------------------------------------------------------

    async def _lookup(
        self, req: _pb.LookupRequest, timeout_s: float | None = None
    ) -> _pb.LookupResponse:
        out = _pb.LookupResponse()
        await self._lookup_into(req, out, timeout_s)
        return out

    async def _lookup_into(
        self, req: _pb.LookupRequest, out: _pb.LookupResponse, timeout_s: float | None = None
    ) -> None:
        """`timeout_s`: what is left of the caller's deadline, when known (unary calls with
        a gRPC deadline; an Exchange stream carries none per call: the engine's lookup
        budget applies alone). Above `max_coalesce_waiters` lookups that may wait, this one
        does not ask to wait."""
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


class _ReplyRefusedError(Exception):
    """A unary reply that cannot be sent (`reason` is a metric label)."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
