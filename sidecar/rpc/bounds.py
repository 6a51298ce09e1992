"""Bounds on what gRPC clients can make the sidecar hold: calls in one `Exchange` batch,
streams and unary calls at once, coalesced waits, and bytes of replies that were written
but not read yet. Pure bookkeeping on the event loop (no locks, no I/O).

Why a byte budget for replies: grpc.aio's write of a stream reply returns only once HTTP/2
flow control lets the message out, and the stream's handler reads no new request meanwhile
(measured with grpcio 1.85: a client that never reads stalls its stream on the third 1 MiB
reply). So one stream holds at most one reply it cannot send; but that reply stays in
memory, in gRPC's buffers at about twice its serialized size, until the client reads it or
goes away, and the server has no way to take it back. The reply budget (a `ByteBudget`)
caps the sum over all streams and unary calls; a reply that does not fit is not built into
the message (its call gets an error). A unary reply is counted from the time it is built
until gRPC reports the call done (the reply was taken by the client's transport, or the
call ended).

Not guaranteed: a reply message whose replies total at most `SMALL_MESSAGE_BYTES` (a unary
reply of at most that size) is always sent, so the pending bytes may exceed the budget by
that much per stream or unary call; memory briefly held while a reply is being built (at
most one call's reply beyond what fits, per stream) is not counted.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

MIB = 1024 * 1024
#: A reply message whose replies total at most this is sent whatever the budget says, so
#: that slow readers filling the budget do not stop small answers (misses, small hits).
SMALL_MESSAGE_BYTES = 64 * 1024
#: Room kept in a reply message for each call's small reply (a miss, a store result, an
#: error); replies larger than this (lookups with an entry) must fit in what is left.
SMALL_REPLY_BYTES = 1024
#: Bytes of a message's own framing kept free (tags and lengths of repeated replies are
#: counted per reply).
MESSAGE_OVERHEAD_BYTES = 64


@dataclass(frozen=True, slots=True)
class RpcLimits:
    """The gRPC surface's limits (settings of the same names; see the README)."""

    max_batch_calls: int = 128
    max_streams: int = 256
    #: `Watch` streams open at once (each holds a bounded queue, `sidecar.rpc.watch`).
    max_watch_streams: int = 256
    max_unary_in_flight: int = 1024
    max_coalesce_waiters: int = 1024
    max_pending_reply_bytes: int = 8 * MIB
    max_request_bytes_in_flight: int = 64 * MIB
    #: Element limits of repeated request fields, checked on the wire for large requests
    #: (the engine's `max_headers`; tags: `sidecar.core.limits.Limits.max_tags`).
    max_headers: int = 256
    max_tags: int = 256
    #: Most events in one ``ReportAccess`` batch (the plugin sends at most 500).
    max_report_events: int = 1024
    #: ``ReportAccess`` calls handled at once; more are refused (RESOURCE_EXHAUSTED,
    #: ``too_many_reports``) so that analytics never crowds lookups off the event loop.
    #: The plugin sends one batch at a time per worker.
    max_reports_in_flight: int = 4
    #: The gRPC message limit both ways (derived from the body and header limits).
    max_message_bytes: int = 4 * MIB


class Gate:
    """How many of something are in progress, with a ceiling (streams, calls, waits)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.active = 0

    def try_enter(self) -> bool:
        """Count one more in progress; False (and nothing counted) at the ceiling."""
        if self.active >= self.limit:
            return False
        self.active += 1
        return True

    def leave(self) -> None:
        self.active -= 1


class ByteBudget:
    """Bytes of something held server-wide (replies handed to gRPC and not yet drained,
    requests being parsed and handled), with a ceiling."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.pending = 0

    def take(self, size: int, *, force: bool = False) -> bool:
        """Count `size` more bytes pending if they fit (or `force`, or nothing is pending:
        one larger than the whole budget still goes alone). False: not counted."""
        if force or self.pending == 0 or self.pending + size <= self.limit:
            self.pending += size
            return True
        return False

    def fits(self, size: int) -> bool:
        """Whether `take(size)` would count it now (nothing is counted)."""
        return self.pending == 0 or self.pending + size <= self.limit

    def give(self, size: int) -> None:
        self.pending -= size


class Refusal(Enum):
    """Why a call's reply was left out of its message (values are metric reasons)."""

    TOO_LARGE = "reply_too_large"
    BUDGET = "reply_budget"


class ReplyRoom:
    """What one `Exchange` reply message may still carry: its share of the message limit
    and of the server's reply budget. Every call has `SMALL_REPLY_BYTES` kept for it;
    a larger reply must fit in the rest. Call `release` once the message is written (or
    the write failed)."""

    def __init__(self, budget: ByteBudget, message_limit: int, calls: int) -> None:
        self._budget = budget
        self.limit = message_limit
        self.left = message_limit - MESSAGE_OVERHEAD_BYTES - calls * SMALL_REPLY_BYTES
        self.taken = 0

    def admit(self, size: int) -> Refusal | None:
        """Take `size` bytes for one call's reply (tags and length included), or say why
        not. A small reply always fits (it has its kept room)."""
        refusal = self.refusal_for(size)
        if refusal is not None:
            return refusal
        self._budget.take(size, force=True)
        if size > SMALL_REPLY_BYTES:
            self.left -= size
        self.taken += size
        return None

    def refusal_for(self, size: int) -> Refusal | None:
        """What `admit(size)` would say, without taking anything."""
        small = size <= SMALL_REPLY_BYTES
        if not small and size > self.left:
            return Refusal.TOO_LARGE
        if small or self.taken + size <= SMALL_MESSAGE_BYTES or self._budget.fits(size):
            return None
        return Refusal.BUDGET

    def may_fit(self, size: int) -> bool:
        """Whether a reply of `size` bytes would be admitted now."""
        return self.refusal_for(size) is None

    def release(self) -> None:
        """The message is out of gRPC's hands (sent, or its stream ended)."""
        self._budget.give(self.taken)
        self.taken = 0


def reply_size(payload_bytes: int) -> int:
    """Bytes a reply of `payload_bytes` takes in its message: the field tag and the
    length prefix of a repeated message field."""
    length = 1
    while payload_bytes >= 1 << (7 * length):
        length += 1
    return 1 + length + payload_bytes
