"""What a request must pass before it is parsed: the request deserializers.

A deserializer never raises; instead of a parsed message it may hand the handler a refusal
(`Undecodable`, `OversizedBatch`, `TooManyElements`, `OverBudget`), which the handler
answers (INVALID_ARGUMENT or RESOURCE_EXHAUSTED), counts and logs. In order:

1. Requests of at most `SCAN_THRESHOLD_BYTES` are parsed at once and handed over as they
   are: small messages cannot cost much to parse, and the hit path stays free of Python
   scanning and bookkeeping (an `Exchange` message of more than `max_batch_calls` calls
   among them is refused by the handler, after parsing).
2. Larger ones are counted in a server-wide budget of request bytes in flight
   (`max_request_bytes_in_flight`; one is always let in when nothing else is counted);
   over it the request is refused unparsed (`OverBudget`).
3. Then their repeated fields are counted on the wire (`sidecar.rpc.wire_scan`): a field
   over its limit refuses the request unparsed (`TooManyElements`, or `OversizedBatch`
   for `Exchange` calls over `max_batch_calls`); only then is it
   parsed, and handed over as `Received`, which says how many bytes to give back to the
   budget (`Intake.done`) once the call has finished with it.

Not guaranteed: the raw bytes are already in memory when the deserializer runs (the gRPC
message limit bounds one, nothing here bounds how many connections send them at once);
requests of at most `SCAN_THRESHOLD_BYTES` are not counted in the budget.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from google.protobuf.message import DecodeError

from sidecar.rpc.bounds import ByteBudget, RpcLimits
from sidecar.rpc.wire_scan import Excess, RepeatedScan

#: Requests larger than this are counted in the budget and scanned before they are parsed
#: (one of this size parses into at most a few MiB whatever it holds).
SCAN_THRESHOLD_BYTES = 64 * 1024
#: Field name -> the reason a refusal for it is counted under.
_REASONS = {
    "request_headers": "too_many_headers",
    "headers": "too_many_headers",
    "tags": "too_many_tags",
    "vary": "too_many_vary",
    "events": "too_many_events",
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


@dataclass(frozen=True, slots=True)
class TooManyElements:
    """A request with a repeated field over its limit, left unparsed."""

    excess: Excess

    @property
    def reason(self) -> str:
        return _REASONS.get(self.excess.name, "too_many_fields")

    @property
    def detail(self) -> str:
        """What is wrong, without the field's path (`excess.path` names it)."""
        if self.excess.name:
            what = f"{self.excess.limit} elements"
        else:
            what = f"{self.excess.limit} fields other than the repeated ones"
        return f"more than {what}; the request was not parsed"


@dataclass(frozen=True, slots=True)
class OverBudget:
    """A large request refused unparsed: the bytes of requests in flight are at the limit."""

    size: int
    in_flight: int
    limit: int

    @property
    def message(self) -> str:
        return (
            f"request of {self.size} bytes refused: {self.in_flight} bytes of requests are in "
            f"flight, max_request_bytes_in_flight is {self.limit}; retry later"
        )


class Received:
    """A parsed request counted in the budget: `take()` hands the message over once (the
    caller then holds the only reference, so it goes as soon as the caller is done with
    it); `size` is what to give back."""

    __slots__ = ("_message", "size")

    def __init__(self, message: Any, size: int) -> None:
        self._message = message
        self.size = size

    def take(self) -> Any:
        message, self._message = self._message, None
        return message


class Intake:
    """The deserializers of one server, sharing its budget of request bytes in flight."""

    def __init__(self, limits: RpcLimits) -> None:
        self.limits = limits
        self.budget = ByteBudget(limits.max_request_bytes_in_flight)
        self._counted = {
            "request_headers": limits.max_headers,
            "headers": limits.max_headers,
            "tags": limits.max_tags,
            "vary": limits.max_headers,
            "calls": limits.max_batch_calls,
            "events": limits.max_report_events,
        }

    def done(self, received: Received) -> None:
        """The call is finished with a `Received` request: give its bytes back."""
        self.budget.give(received.size)
        received.size = 0

    def deserializer(self, cls: Any) -> Callable[[bytes], Any]:
        """`cls.FromString` behind the checks above; never raises."""
        name = cls.DESCRIPTOR.full_name
        max_calls = self.limits.max_batch_calls
        scan = RepeatedScan(cls.DESCRIPTOR, self._counted)
        budget = self.budget

        def parse(data: bytes) -> Any:
            try:
                return cls.FromString(data)
            except (DecodeError, ValueError, TypeError) as exc:
                return Undecodable(name, str(exc) or exc.__class__.__name__)

        def deserialize(data: bytes) -> Any:
            size = len(data)
            if size <= SCAN_THRESHOLD_BYTES:
                return parse(data)
            if not budget.take(size):
                return OverBudget(size, budget.pending, budget.limit)
            excess = scan.excess(data)
            if excess is None:
                message = parse(data)
                if not isinstance(message, Undecodable):
                    return Received(message, size)
                budget.give(size)
                return message
            budget.give(size)
            if excess.name == "calls":
                return OversizedBatch(max_calls)
            return TooManyElements(excess)

        return deserialize
