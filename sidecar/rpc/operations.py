"""The operations of `strata.v1.CacheService` over the engine, shared by the unary handlers
and the `Exchange` stream: one request message in, one reply message out.

Refusals are counted (`Engine.note_rejected`, so `strata_rejected_requests_total`) and
logged at most once per operation and reason every few seconds (`sidecar.rpc.refusals`).
A store's `route` (the key prefix of its route) is handed to the engine as is: the engine
checks it and stamps the entry with the route's purge tag. A purge (``Invalidate``) is
checked as the engine checks it, then becomes an invalidation event submitted to
`sidecar.invalidation.Invalidations`: applied here, and published to every other sidecar
when Kafka is configured; its reply's ``dropped`` counts the entries dropped here.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import grpc
from strata.v1 import cache_pb2 as _pb

from sidecar import __version__
from sidecar.core.clock import SystemClock
from sidecar.core.errors import InvalidRequestError
from sidecar.engine.engine import Engine
from sidecar.invalidation import Invalidations, request_event
from sidecar.rpc.bounds import Gate, reply_size
from sidecar.rpc.convert import entry_from_proto, headers_from_proto, lookup_to_proto
from sidecar.rpc.intake import TooManyElements, Undecodable
from sidecar.rpc.refusals import RefusalLog

__all__ = ["STATUS_FOR_ERROR", "NotBuiltError", "Operations", "ReplyRefusedError"]

log = logging.getLogger("strata.sidecar.rpc")

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


class NotBuiltError(Exception):
    """A lookup's reply, of at least `size` bytes, was not built: it could not be sent."""

    def __init__(self, size: int) -> None:
        super().__init__(size)
        self.size = size


class ReplyRefusedError(Exception):
    """A unary reply that cannot be sent (`reason` is a metric label)."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


class Operations:
    """Lookup, Store, Invalidate, Release and Stats against one engine."""

    def __init__(
        self,
        engine: Engine,
        max_coalesce_waiters: int,
        invalidations: Invalidations | None = None,
    ) -> None:
        """`invalidations`: where purges go (default: applied to `engine` only)."""
        self.engine = engine
        self.invalidations = invalidations or Invalidations(engine, "local", SystemClock())
        self.waiters = Gate(max_coalesce_waiters)
        self.refusals = RefusalLog(log)

    def refuse(self, operation: str, reason: str, message: str) -> None:
        """Count a refusal over a limit and log it (rate-limited)."""
        self.engine.note_rejected(operation, reason)
        self.refusals.refused(operation, reason, message)

    def refuse_call(
        self, context: grpc.aio.ServicerContext, operation: str, reason: str, message: str
    ) -> None:
        """Count, log and set the call's status to RESOURCE_EXHAUSTED (the handler then
        returns None: no reply is sent)."""
        self.refuse(operation, reason, message)
        context.set_code(grpc.StatusCode.RESOURCE_EXHAUSTED)
        context.set_details(message)

    def undecodable(self, operation: str, request: Undecodable) -> InvalidRequestError:
        self.engine.note_rejected(operation, "undecodable")
        return InvalidRequestError(
            "request", f"not a valid {request.type_name} message: {request.error}", "undecodable"
        )

    def too_many(self, operation: str, request: TooManyElements) -> InvalidRequestError:
        self.engine.note_rejected(operation, request.reason)
        return InvalidRequestError(request.excess.path, request.detail, request.reason)

    async def give_back_lease(self, req: _pb.LookupRequest, out: _pb.LookupResponse) -> None:
        """A lookup answered with an error gives back the fill lease it was granted, so
        callers waiting on it are not left waiting for a fill that will not come."""
        if out.fill_lease:
            await self.engine.release(req.key)

    async def lookup_into(
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
        its size in the allocator's hands): its lease is given back and `NotBuiltError`
        raised."""
        wait_ms = req.coalesce_wait_ms
        waiting = wait_ms > 0 and self.waiters.try_enter()
        if wait_ms > 0 and not waiting:
            self.refuse(
                "lookup",
                "too_many_waiters",
                f"{self.waiters.limit} lookups may already wait for a fill, the most "
                "max_coalesce_waiters allows; answered without waiting",
            )
            wait_ms = 0
        try:
            result = await self.engine.lookup(
                req.key,
                headers_from_proto(req.request_headers) if req.request_headers else (),
                wait_ms,
                timeout_s=timeout_s,
            )
        finally:
            if waiting:
                self.waiters.leave()
        if fits is not None and result.entry is not None:
            size = reply_size(len(result.entry.body))  # a lower bound of the reply's size
            if not fits(size):
                if result.fill_lease:
                    await self.engine.release(req.key)
                raise NotBuiltError(size)
        lookup_to_proto(result, out)

    async def store(self, req: _pb.StoreRequest) -> _pb.StoreResponse:
        if not req.HasField("entry"):
            self.engine.note_rejected("store", "missing_entry")
            raise InvalidRequestError("entry", "is required", "missing_entry")
        result = await self.engine.store(
            req.key,
            entry_from_proto(req.entry),
            headers_from_proto(req.request_headers),
            route=req.route,
        )
        return _pb.StoreResponse(
            result=_STORE_RESULT[result.status.value], waiters_released=result.waiters_released
        )

    async def invalidate(self, req: _pb.InvalidateRequest) -> _pb.InvalidateResponse:
        target = req.WhichOneof("target")
        if target is None:
            self.engine.note_rejected("invalidate", "no_target")
            raise InvalidRequestError("target", "set one of key, prefix, tag or route", "no_target")
        try:
            event = request_event(target, getattr(req, target), self.engine.limits)
        except InvalidRequestError as exc:
            self.engine.note_rejected("invalidate", exc.reason)
            raise
        submitted = await self.invalidations.submit(event)
        return _pb.InvalidateResponse(dropped=submitted.dropped)

    async def release(self, req: _pb.ReleaseRequest) -> _pb.ReleaseResponse:
        return _pb.ReleaseResponse(waiters_released=await self.engine.release(req.key))

    def stats(self) -> _pb.StatsResponse:
        c = self.engine.counters
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
        for t in self.engine.snapshot():
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
