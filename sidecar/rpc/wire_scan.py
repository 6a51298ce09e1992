"""Count the repeated fields of a serialized message before it is parsed.

Why: parsing costs far more than the bytes it reads when the message is made of tiny
elements (measured with protobuf 7 (upb): a 16 MB `LookupRequest` of 3.2 million one-byte
request headers took about 450 MiB and 1.2 s of the event loop to parse, only to be
refused afterwards for having more than `max_headers` of them). `RepeatedScan` walks the
wire format along the message's descriptors and stops at the first field that has more
elements than its limit, so it costs O(limits), never O(size): a length-delimited field it
does not need to look into (bytes, strings, messages without repeated fields) is skipped
in one step.

What is counted, per message instance (the elements of a singular sub-message sent in
several pieces are added up, as the parser merges them):
* each capped repeated field (`limits`, by field name) against its own limit;
* every other field occurrence, known or unknown, against `other_limit` together (a
  well-formed message has one per singular field; millions of them would cost the scan
  its O(limits) bound).

Not guaranteed: this is a bound, not a validation. Malformed bytes (a truncated varint, a
length past the end, groups, which this contract does not use) end the scan with no
verdict: the parser then says what is wrong. Packed repeated scalars count as one element
(the contract's requests have none). A oneof whose members are both sent counts both.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

#: Default cap on field occurrences other than the capped repeated fields, per message
#: instance (the contract's largest message, `Entry`, has 11 fields).
OTHER_FIELDS_LIMIT = 64
_LENGTH_DELIMITED = 2


@dataclass(frozen=True, slots=True)
class Excess:
    """A field over its limit: `path` names it from the top (`calls.lookup.request_headers`,
    or `calls.lookup.<other fields>`), `name` is the field's own name (`request_headers`;
    empty for other fields)."""

    path: str
    name: str
    limit: int


@dataclass(slots=True)
class _Field:
    name: str
    #: Limit of a capped repeated field; None: counted with the other fields.
    limit: int | None
    #: The plan of a message-typed field whose type has repeated fields somewhere below.
    plan: _Plan | None = None
    repeated: bool = False


@dataclass(slots=True)
class _Plan:
    path: str
    fields: dict[int, _Field] = field(default_factory=dict)


class _MalformedError(Exception):
    """The bytes are not well-formed wire format (the parser will say why)."""


def _has_repeated(descriptor: Any, seen: set[str]) -> bool:
    if descriptor.full_name in seen:
        return True  # recursive types: assume so
    seen.add(descriptor.full_name)
    for f in descriptor.fields:
        if f.is_repeated:
            return True
        if f.message_type is not None and _has_repeated(f.message_type, seen):
            return True
    return False


class RepeatedScan:
    """`excess(data)`: the first field of serialized `descriptor` message `data` that has
    more elements than its limit, or None. `limits` maps a repeated field's name (in any
    message below) to its limit; other repeated fields count with the other fields."""

    def __init__(
        self, descriptor: Any, limits: Mapping[str, int], other_limit: int = OTHER_FIELDS_LIMIT
    ) -> None:
        self._limits = dict(limits)
        self.other_limit = other_limit
        self._plan = self._build(descriptor, "", 0)

    def _build(self, descriptor: Any, path: str, depth: int) -> _Plan:
        plan = _Plan(path)
        for f in descriptor.fields:
            repeated = bool(f.is_repeated)
            limit = self._limits.get(f.name) if repeated else None
            sub = None
            if f.message_type is not None and depth < 8 and _has_repeated(f.message_type, set()):
                sub = self._build(f.message_type, f"{path}{f.name}.", depth + 1)
            plan.fields[f.number] = _Field(f.name, limit, sub, repeated)
        return plan

    def excess(self, data: bytes) -> Excess | None:
        """None when every count is within its limit, or the bytes are malformed."""
        try:
            return self._walk(memoryview(data), 0, len(data), self._plan, {})
        except _MalformedError:
            return None

    def _walk(
        self, data: memoryview, pos: int, end: int, plan: _Plan, merged: dict[int, Any]
    ) -> Excess | None:
        """Scan one message instance in data[pos:end]. `merged` holds the counts of this
        instance (shared by the pieces of a singular sub-message)."""
        counts: dict[int, int] = merged.setdefault(-1, {})
        fields = plan.fields
        other_limit = self.other_limit
        while pos < end:
            tag, pos = _varint(data, pos, end)
            number = tag >> 3
            wire = tag & 7
            length = 0
            if wire == 0:
                _, pos = _varint(data, pos, end)
            elif wire == 1:
                pos += 8
            elif wire == 5:
                pos += 4
            elif wire == _LENGTH_DELIMITED:
                length, pos = _varint(data, pos, end)
            else:
                raise _MalformedError  # groups, or not a wire type at all
            f = fields.get(number)
            key = number if f is not None and f.limit is not None else 0
            count = counts.get(key, 0) + 1
            limit = f.limit if f is not None and f.limit is not None else other_limit
            if count > limit:
                if key:
                    assert f is not None
                    return Excess(plan.path + f.name, f.name, limit)
                return Excess(plan.path + "<other fields>", "", limit)
            counts[key] = count
            if wire == _LENGTH_DELIMITED:
                if pos + length > end:
                    raise _MalformedError
                if f is not None and f.plan is not None:
                    # each element of a repeated message is an instance of its own; the
                    # pieces of a singular one are merged by the parser, so counted together
                    sub: dict[int, Any] = {} if f.repeated else merged.setdefault(number, {})
                    found = self._walk(data, pos, pos + length, f.plan, sub)
                    if found is not None:
                        return found
                pos += length
        if pos > end:
            raise _MalformedError
        return None


def _varint(data: memoryview, pos: int, end: int) -> tuple[int, int]:
    """The varint at `pos` and the position after it."""
    value = shift = 0
    while True:
        if pos >= end or shift > 63:
            raise _MalformedError
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7
