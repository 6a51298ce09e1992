"""Row changes: what a committed transaction did to which rows, whatever read it (the
pgoutput slot, or a Debezium envelope). `Transactions` turns a stream of pgoutput messages
into `Transaction`s. Pure: no database, no clock.

A `RowChange` holds the images of the row that the change makes known, as column name ->
text (``None`` for SQL NULL): an INSERT the new row; an UPDATE the new row, plus the old key
when the key changed (or the whole old row with REPLICA IDENTITY FULL); a DELETE the old key
(or the whole old row with REPLICA IDENTITY FULL). Every image is purged: an UPDATE that
changed the key purges the old key's tags and the new key's.

Not guaranteed: columns an UPDATE did not change and that PostgreSQL stored out of line
(TOAST) are absent from the new image unless the old row was sent (REPLICA IDENTITY FULL);
the values of other columns of a deleted row are known only with REPLICA IDENTITY FULL.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum

from sidecar.cdc.pgoutput import (
    UNCHANGED,
    Begin,
    Commit,
    Delete,
    Ignored,
    Insert,
    Message,
    PgOutputError,
    Relation,
    Truncate,
    Update,
    Value,
    pg_time_ms,
)

__all__ = ["Image", "Op", "RowChange", "Transaction", "Transactions"]

#: One image of a row: column name -> text value (None: SQL NULL).
Image = Mapping[str, str | None]


class Op(StrEnum):
    INSERT = "insert"
    UPDATE = "update"
    DELETE = "delete"
    TRUNCATE = "truncate"


@dataclass(frozen=True, slots=True)
class RowChange:
    """One change to one table (`images` empty for TRUNCATE)."""

    op: Op
    schema: str
    table: str
    #: The key columns, in the order their values join into the default tag.
    key_columns: tuple[str, ...]
    images: tuple[Image, ...]


@dataclass(frozen=True, slots=True)
class Transaction:
    """A committed transaction's changes; `end_lsn` is where the slot may move after it."""

    xid: int
    end_lsn: int
    commit_time_ms: int
    changes: tuple[RowChange, ...]


def _text(value: Value) -> str | None:
    if isinstance(value, bytes):
        return value.decode("utf-8", "surrogateescape")
    if value is UNCHANGED:  # callers drop these before
        raise PgOutputError("unchanged TOAST value where a value is needed")
    return value


class Transactions:
    """Feeds pgoutput messages in slot order; `feed` returns each transaction at its Commit.

    Relations are remembered across calls (and across peeks: the server sends a Relation
    again in every new decoding session, before the first change to it).
    """

    def __init__(self) -> None:
        self._relations: dict[int, Relation] = {}
        self._begin: Begin | None = None
        self._changes: list[RowChange] = []

    @property
    def open(self) -> bool:
        """Whether a transaction began and has not committed yet."""
        return self._begin is not None

    def reset(self) -> None:
        """Forget a transaction in progress (a new peek starts again at a Begin)."""
        self._begin = None
        self._changes = []

    def feed(self, message: Message) -> Transaction | None:
        if isinstance(message, Relation):
            self._relations[message.oid] = message
            return None
        if isinstance(message, Ignored):
            return None
        if isinstance(message, Begin):
            if self._begin is not None:
                raise PgOutputError(f"Begin of xid {message.xid} inside xid {self._begin.xid}")
            self._begin = message
            return None
        begin = self._begin
        if begin is None:
            raise PgOutputError(f"{type(message).__name__} outside a transaction")
        if isinstance(message, Commit):
            done = Transaction(
                begin.xid,
                message.end_lsn,
                pg_time_ms(message.commit_time_us),
                tuple(self._changes),
            )
            self.reset()
            return done
        self._changes.extend(self._row_changes(message))
        return None

    def _relation(self, oid: int) -> Relation:
        relation = self._relations.get(oid)
        if relation is None:
            raise PgOutputError(f"a change to relation {oid} before its Relation message")
        return relation

    def _row_changes(self, message: Insert | Update | Delete | Truncate) -> list[RowChange]:
        if isinstance(message, Truncate):
            out = []
            for oid in message.relation_oids:
                rel = self._relation(oid)
                out.append(RowChange(Op.TRUNCATE, rel.schema, rel.name, _keys(rel), ()))
            return out
        rel = self._relation(message.relation_oid)
        if isinstance(message, Insert):
            images = [_image(rel, message.new, key_only=False)]
            op = Op.INSERT
        elif isinstance(message, Update):
            old = None
            if message.old is not None:
                old = _image(rel, message.old, key_only=message.old_kind == "K")
            new = dict(_image(rel, message.new, key_only=False))
            if old is not None:  # TOASTed columns left unchanged: their old value is current
                for name in _unchanged(rel, message.new):
                    if name in old:
                        new[name] = old[name]
            images = [new] if old is None or old == new else [old, new]
            op = Op.UPDATE
        else:
            images = [_image(rel, message.old, key_only=message.old_kind == "K")]
            op = Op.DELETE
        return [RowChange(op, rel.schema, rel.name, _keys(rel), tuple(images))]


def _keys(rel: Relation) -> tuple[str, ...]:
    return tuple(c.name for c in rel.columns if c.key)


def _unchanged(rel: Relation, values: tuple[Value, ...]) -> list[str]:
    return [c.name for c, v in zip(rel.columns, values, strict=False) if v is UNCHANGED]


def _image(rel: Relation, values: tuple[Value, ...], *, key_only: bool) -> dict[str, str | None]:
    if len(values) != len(rel.columns):
        raise PgOutputError(
            f"{rel.schema}.{rel.name}: {len(values)} values for {len(rel.columns)} columns"
        )
    return {
        c.name: _text(v)
        for c, v in zip(rel.columns, values, strict=True)
        if v is not UNCHANGED and (c.key or not key_only)
    }
