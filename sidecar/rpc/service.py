"""`strata.v1.CacheService` handlers over the engine.

One table maps error types to gRPC status codes. Requests that do not even decode are
refused as INVALID_ARGUMENT too (the deserializer hands over an `Undecodable`), counted and
logged like any other bad request; the server carries on.
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
from sidecar.rpc.convert import entry_from_proto, headers_from_proto, lookup_to_proto

log = logging.getLogger("strata.sidecar.rpc")
_T = TypeVar("_T")

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


def safe_deserializer(cls: Any) -> Callable[[bytes], Any]:
    """`cls.FromString` that returns `Undecodable` instead of raising."""
    name = cls.DESCRIPTOR.full_name

    def deserialize(data: bytes) -> Any:
        try:
            return cls.FromString(data)
        except (DecodeError, ValueError, TypeError) as exc:
            return Undecodable(name, str(exc) or exc.__class__.__name__)

    return deserialize


def _may_wait(call: _pb.Call) -> bool:
    """A call that can wait on something other than the CPU (a coalesced lookup)."""
    return call.WhichOneof("op") == "lookup" and call.lookup.coalesce_wait_ms > 0


class CacheService:
    """The handlers. `grpc` only appears here and in `sidecar.rpc.server`."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._closing = asyncio.Event()  # set once: the server is shutting down
        # Exchange handlers in progress -> True while waiting for the client's next message.
        self._streams: dict[asyncio.Task[Any], bool] = {}

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
        return await self._unary("lookup", request, context, lambda r: self._lookup(r, remaining))

    async def Store(self, request: Any, context: grpc.aio.ServicerContext) -> _pb.StoreResponse:  # noqa: N802
        return await self._unary("store", request, context, self._store)

    async def Invalidate(  # noqa: N802
        self, request: Any, context: grpc.aio.ServicerContext
    ) -> _pb.InvalidateResponse:
        return await self._unary("invalidate", request, context, self._invalidate)

    async def Release(self, request: Any, context: grpc.aio.ServicerContext) -> _pb.ReleaseResponse:  # noqa: N802
        return await self._unary("release", request, context, self._release)

    async def Stats(self, request: Any, context: grpc.aio.ServicerContext) -> _pb.StatsResponse:  # noqa: N802
        return self.stats()

    async def _unary(
        self,
        operation: str,
        request: Any,
        context: grpc.aio.ServicerContext,
        handler: Callable[[Any], Awaitable[_T]],
    ) -> _T:
        try:
            if isinstance(request, Undecodable):
                raise self._undecodable(operation, request)
            return await handler(request)
        except InvalidRequestError as exc:
            log.info(
                "request refused",
                extra={
                    "event.action": operation,
                    "event.reason": exc.reason,
                    "error.message": str(exc),
                },
            )
            await context.abort(STATUS_FOR_ERROR[InvalidRequestError], str(exc))
            raise  # unreachable: abort raises

    def _undecodable(self, operation: str, request: Undecodable) -> InvalidRequestError:
        self._engine.note_rejected(operation, "undecodable")
        return InvalidRequestError(
            "request", f"not a valid {request.type_name} message: {request.error}", "undecodable"
        )

    # -- stream ------------------------------------------------------------------------

    async def Exchange(  # noqa: N802
        self, requests: AsyncIterator[Any], context: grpc.aio.ServicerContext
    ) -> AsyncIterator[_pb.ExchangeResponse]:
        task = asyncio.current_task()
        assert task is not None
        if self._closing.is_set():
            return
        streams = self._streams
        streams[task] = True  # idle: waiting for the client's next message
        try:
            async for message in requests:
                streams[task] = False
                yield await self._exchange(message)
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

    async def _exchange(self, message: Any) -> _pb.ExchangeResponse:
        response = _pb.ExchangeResponse()
        if isinstance(message, Undecodable):
            reply = response.replies.add(id=0)
            exc = self._undecodable("exchange", message)
            reply.error.code = grpc.StatusCode.INVALID_ARGUMENT.value[0]
            reply.error.message = str(exc)
        elif len(message.calls) == 1 or not any(_may_wait(c) for c in message.calls):
            # One after the other: no call in the batch waits, so nothing is gained by
            # running them concurrently, and a task per call costs more than the lookup.
            for call in message.calls:
                await self._call(call, response.replies.add())
        else:
            replies = [response.replies.add() for _ in message.calls]
            await asyncio.gather(
                *(self._call(c, r) for c, r in zip(message.calls, replies, strict=True))
            )
        return response

    async def _call(self, call: _pb.Call, reply: _pb.Reply) -> None:
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
            reply.error.code = grpc.StatusCode.INVALID_ARGUMENT.value[0]
            reply.error.message = str(exc)
        except Exception as exc:  # a bug: this call fails, the stream and its other calls go on
            log.exception(
                "call failed", extra={"event.action": op or "exchange", "error.message": str(exc)}
            )
            reply.ClearField("result")
            reply.error.code = grpc.StatusCode.INTERNAL.value[0]
            reply.error.message = f"internal error: {type(exc).__name__}"

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
        budget applies alone)."""
        result = await self._engine.lookup(
            req.key,
            headers_from_proto(req.request_headers) if req.request_headers else (),
            req.coalesce_wait_ms,
            timeout_s=timeout_s,
        )
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
