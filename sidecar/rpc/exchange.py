"""The `Exchange` stream of `strata.v1.CacheService`: batches of calls, one reply message
per request message (see `sidecar.rpc.service` for the limits that apply).

A stream reads a batch, answers it, reads the next, so a client that does not read holds
at most one reply message (`sidecar.rpc.bounds`). A call's own failure is its reply's
error (the stream and the batch's other calls go on); a refused message gets one reply,
id 0, with the error.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

import grpc
from strata.v1 import cache_pb2 as _pb

from sidecar.core.errors import InvalidRequestError
from sidecar.rpc.bounds import ByteBudget, Refusal, ReplyRoom, RpcLimits, reply_size
from sidecar.rpc.intake import (
    Intake,
    OverBudget,
    OversizedBatch,
    Received,
    TooManyElements,
    Undecodable,
)
from sidecar.rpc.operations import NotBuiltError, Operations

__all__ = ["ExchangeStreams", "serialized"]

log = logging.getLogger("strata.sidecar.rpc")
_RESOURCE_EXHAUSTED = grpc.StatusCode.RESOURCE_EXHAUSTED.value[0]
_INVALID_ARGUMENT = grpc.StatusCode.INVALID_ARGUMENT.value[0]
#: Longest error message put in a reply (a call's reply must stay small, see `bounds`).
_MAX_ERROR_CHARS = 200


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


class ExchangeStreams:
    """The open `Exchange` streams and how each one is served."""

    def __init__(
        self,
        ops: Operations,
        limits: RpcLimits,
        reply_budget: ByteBudget,
        intake: Intake,
        closing: asyncio.Event,
    ) -> None:
        self._ops = ops
        self._engine = ops.engine
        self.limits = limits
        self.reply_budget = reply_budget
        self.intake = intake
        self._closing = closing  # set once: the server is shutting down
        # Exchange handlers in progress -> since when (monotonic) each has been waiting for
        # its client's next message; None while it handles one.
        self._streams: dict[asyncio.Task[Any], float | None] = {}
        # Streams told to end (shut down or evicted) and not finished yet.
        self._ending: set[asyncio.Task[Any]] = set()

    def end_idle(self) -> int:
        """End every stream waiting for its client's next message (the server shuts
        down); busy ones end after their current message. Returns how many ended now."""
        idle = [task for task, since in self._streams.items() if since is not None]
        for task in idle:
            self._end_stream(task)
        return len(idle)

    def _end_stream(self, task: asyncio.Task[Any]) -> None:
        """End an idle stream with status OK (`serve` turns the cancel into a return)."""
        self._ending.add(task)
        task.cancel()

    async def serve(self, requests: AsyncIterator[Any], context: grpc.aio.ServicerContext) -> None:
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
            self._ops.refuse_call(context, "exchange", "too_many_streams", message)
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
            # Ended by `end_idle` or `_evict`: returning makes gRPC send status OK at
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
        self._ops.refuse(
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
            exc = self._ops.undecodable("exchange", message)
            self._ops.refusals.refused("exchange", exc.reason, str(exc))
            _set_error(response.replies.add(id=0), _INVALID_ARGUMENT, str(exc))
        elif isinstance(message, TooManyElements):
            exc = self._ops.too_many("exchange", message)
            self._ops.refusals.refused("exchange", exc.reason, str(exc))
            _set_error(response.replies.add(id=0), _INVALID_ARGUMENT, str(exc))
        elif isinstance(message, OverBudget):
            self._ops.refuse("exchange", "request_bytes_budget", message.message)
            _set_error(response.replies.add(id=0), _RESOURCE_EXHAUSTED, message.message)
        elif (
            isinstance(message, OversizedBatch) or len(message.calls) > self.limits.max_batch_calls
        ):
            text = (
                f"batch of more than {self.limits.max_batch_calls} calls (max_batch_calls); "
                "none of its calls was run"
            )
            self._ops.refuse("exchange", "batch_too_large", text)
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
                await self._ops.lookup_into(call.lookup, reply.lookup, fits=room.may_fit)
            elif op == "store":
                reply.store.CopyFrom(await self._ops.store(call.store))
            elif op == "invalidate":
                reply.invalidate.CopyFrom(await self._ops.invalidate(call.invalidate))
            elif op == "release":
                reply.release.CopyFrom(await self._ops.release(call.release))
            else:
                self._engine.note_rejected("exchange", "no_operation")
                raise InvalidRequestError("call.op", "no operation set", "no_operation")
        except InvalidRequestError as exc:
            self._ops.refusals.refused(op or "exchange", exc.reason, str(exc))
            _set_error(reply, _INVALID_ARGUMENT, str(exc))
        except NotBuiltError as exc:  # the entry alone cannot fit: refused unbuilt
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
            await self._ops.give_back_lease(call.lookup, reply.lookup)
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
        self._ops.refuse(call.WhichOneof("op") or "exchange", refusal.value, text)
        _set_error(reply, _RESOURCE_EXHAUSTED, text)
        room.admit(reply_size(reply.ByteSize()))  # small: always fits
