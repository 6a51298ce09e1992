"""PostgreSQL's ``pgoutput`` logical decoding messages, protocol version 1: bytes in,
typed messages out. Pure: no database, no clock.

Each row of ``pg_logical_slot_peek_binary_changes(..., 'proto_version', '1', ...)`` carries
one message; `decode` reads one. Decoded: Begin (``B``), Commit (``C``), Relation (``R``),
Insert (``I``), Update (``U``), Delete (``D``), Truncate (``T``); Origin (``O``), Type
(``Y``) and logical decoding messages (``M``) are returned as `Ignored`. Anything else, or a
message cut short or with bytes left over, raises `PgOutputError` (the caller stops: it must
never advance the slot past a change it could not read).

Column values are kept as PostgreSQL sent them: text (the type's output function, decoded
as UTF-8; bytes that are not UTF-8 kept as surrogate escapes), ``None`` for SQL NULL, or
`UNCHANGED` for a TOASTed value an UPDATE did not change (its value is not in the message).
Binary values (``b``, only with the ``binary`` option, which this reader never asks for)
are kept as bytes.

Not guaranteed: protocol versions 2-4 (streamed transactions, two-phase commit) -- their
extra message types raise `PgOutputError`; the text of values in another server encoding
than UTF-8.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from enum import Enum

__all__ = [
    "PG_EPOCH_MS",
    "UNCHANGED",
    "Begin",
    "Column",
    "Commit",
    "Delete",
    "Ignored",
    "Insert",
    "Message",
    "PgOutputError",
    "Relation",
    "Truncate",
    "Unchanged",
    "Update",
    "Value",
    "decode",
    "pg_time_ms",
]

#: Milliseconds from the Unix epoch to PostgreSQL's (2000-01-01 00:00 UTC).
PG_EPOCH_MS = 946_684_800_000


class Unchanged(Enum):
    """The value of a TOASTed column an UPDATE did not touch: not in the message."""

    TOKEN = "unchanged"

    def __repr__(self) -> str:
        return "UNCHANGED"


UNCHANGED = Unchanged.TOKEN
Value = str | bytes | None | Unchanged


class PgOutputError(ValueError):
    """A message this reader cannot decode (unknown type, truncated, trailing bytes)."""


def pg_time_ms(micros: int) -> int:
    """A pgoutput timestamp (microseconds since 2000-01-01 UTC) as Unix milliseconds."""
    return PG_EPOCH_MS + micros // 1000


@dataclass(frozen=True, slots=True)
class Begin:
    final_lsn: int
    commit_time_us: int
    xid: int


@dataclass(frozen=True, slots=True)
class Commit:
    flags: int
    commit_lsn: int
    #: The end of the commit record: where the slot may be advanced once this transaction's
    #: events were delivered.
    end_lsn: int
    commit_time_us: int


@dataclass(frozen=True, slots=True)
class Column:
    name: str
    type_oid: int
    type_modifier: int
    #: Part of the replica identity (the primary key unless REPLICA IDENTITY says otherwise).
    key: bool


@dataclass(frozen=True, slots=True)
class Relation:
    oid: int
    schema: str
    name: str
    #: ``d`` default (primary key), ``n`` nothing, ``f`` full, ``i`` index.
    replica_identity: str
    columns: tuple[Column, ...]


@dataclass(frozen=True, slots=True)
class Insert:
    relation_oid: int
    new: tuple[Value, ...]


@dataclass(frozen=True, slots=True)
class Update:
    relation_oid: int
    #: ``K``: the old key (the key changed); ``O``: the old row (REPLICA IDENTITY FULL);
    #: ``""``: no old tuple (the key did not change).
    old_kind: str
    old: tuple[Value, ...] | None
    new: tuple[Value, ...]


@dataclass(frozen=True, slots=True)
class Delete:
    relation_oid: int
    #: ``K``: `old` holds the key columns only (others None); ``O``: the whole old row.
    old_kind: str
    old: tuple[Value, ...]


@dataclass(frozen=True, slots=True)
class Truncate:
    #: Bit 1: CASCADE, bit 2: RESTART IDENTITY.
    options: int
    relation_oids: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class Ignored:
    """A message that carries nothing for invalidation (Origin, Type, logical message)."""

    kind: str


Message = Begin | Commit | Relation | Insert | Update | Delete | Truncate | Ignored


class _Reader:
    __slots__ = ("_data", "_pos")

    def __init__(self, data: bytes) -> None:
        self._data = data
        self._pos = 0

    def _take(self, n: int) -> bytes:
        end = self._pos + n
        if end > len(self._data):
            raise PgOutputError(
                f"message cut short: wanted {n} bytes at offset {self._pos}, "
                f"{len(self._data) - self._pos} left"
            )
        piece = self._data[self._pos : end]
        self._pos = end
        return piece

    def byte(self) -> str:
        return chr(self._take(1)[0])

    def int8(self) -> int:
        return int(self._take(1)[0])

    def int16(self) -> int:
        value: int = struct.unpack(">h", self._take(2))[0]
        return value

    def int32(self) -> int:
        value: int = struct.unpack(">i", self._take(4))[0]
        return value

    def uint32(self) -> int:
        value: int = struct.unpack(">I", self._take(4))[0]
        return value

    def int64(self) -> int:
        value: int = struct.unpack(">q", self._take(8))[0]
        return value

    def uint64(self) -> int:
        value: int = struct.unpack(">Q", self._take(8))[0]
        return value

    def string(self) -> str:
        end = self._data.find(b"\0", self._pos)
        if end < 0:
            raise PgOutputError(f"unterminated string at offset {self._pos}")
        raw = self._data[self._pos : end]
        self._pos = end + 1
        return raw.decode("utf-8", "surrogateescape")

    def tuple_data(self) -> tuple[Value, ...]:
        count = self.int16()
        if count < 0:
            raise PgOutputError(f"negative column count {count}")
        values: list[Value] = []
        for i in range(count):
            kind = self.byte()
            if kind == "n":
                values.append(None)
            elif kind == "u":
                values.append(UNCHANGED)
            elif kind in "tb":
                size = self.int32()
                if size < 0:
                    raise PgOutputError(f"column {i}: negative length {size}")
                raw = self._take(size)
                values.append(raw.decode("utf-8", "surrogateescape") if kind == "t" else raw)
            else:
                raise PgOutputError(f"column {i}: unknown value kind {kind!r}")
        return tuple(values)

    def skip_rest(self) -> None:
        self._pos = len(self._data)

    def done(self, kind: str) -> None:
        if self._pos != len(self._data):
            raise PgOutputError(
                f"{kind!r} message has {len(self._data) - self._pos} bytes left over"
            )


def _relation(r: _Reader) -> Relation:
    oid = r.uint32()
    schema = r.string() or "pg_catalog"
    name = r.string()
    identity = r.byte()
    count = r.int16()
    columns = []
    for _ in range(count):
        flags = r.int8()
        columns.append(Column(r.string(), r.uint32(), r.int32(), key=bool(flags & 1)))
    return Relation(oid, schema, name, identity, tuple(columns))


def _update(r: _Reader) -> Update:
    oid = r.uint32()
    kind = r.byte()
    old: tuple[Value, ...] | None = None
    old_kind = ""
    if kind in "KO":
        old_kind, old = kind, r.tuple_data()
        kind = r.byte()
    if kind != "N":
        raise PgOutputError(f"update: expected 'N' before the new row, got {kind!r}")
    return Update(oid, old_kind, old, r.tuple_data())


def _delete(r: _Reader) -> Delete:
    oid = r.uint32()
    kind = r.byte()
    if kind not in "KO":
        raise PgOutputError(f"delete: expected 'K' or 'O' before the old row, got {kind!r}")
    return Delete(oid, kind, r.tuple_data())


def _insert(r: _Reader) -> Insert:
    oid = r.uint32()
    kind = r.byte()
    if kind != "N":
        raise PgOutputError(f"insert: expected 'N' before the new row, got {kind!r}")
    return Insert(oid, r.tuple_data())


def _truncate(r: _Reader) -> Truncate:
    count = r.int32()
    options = r.int8()
    if count < 0:
        raise PgOutputError(f"truncate: negative relation count {count}")
    return Truncate(options, tuple(r.uint32() for _ in range(count)))


def _skip(r: _Reader, kind: str) -> Ignored:
    r.skip_rest()  # nothing of these is needed; their layout is not checked
    return Ignored(kind)


def decode(data: bytes) -> Message:
    """The message in `data` (one row of the slot); `PgOutputError` if it cannot be read."""
    if not data:
        raise PgOutputError("empty message")
    r = _Reader(bytes(data))
    kind = r.byte()
    message: Message
    if kind == "B":
        message = Begin(r.uint64(), r.int64(), r.uint32())
    elif kind == "C":
        message = Commit(r.int8(), r.uint64(), r.uint64(), r.int64())
    elif kind == "R":
        message = _relation(r)
    elif kind == "I":
        message = _insert(r)
    elif kind == "U":
        message = _update(r)
    elif kind == "D":
        message = _delete(r)
    elif kind == "T":
        message = _truncate(r)
    elif kind in "OYM":
        message = _skip(r, kind)
    else:
        raise PgOutputError(f"unknown message type {kind!r} (protocol version 1 expected)")
    r.done(kind)
    return message
