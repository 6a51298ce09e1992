"""The logical replication slot, through PostgreSQL's SQL interface (psycopg 3 speaks no
streaming replication protocol).

* `ensure` creates the publication (``FOR TABLE`` the mapped tables; an existing one is set
  to exactly those tables) and then the slot (``pgoutput``) when missing: the publication
  must exist before the slot, since pgoutput looks it up as of each change's time.
* `peek` reads whole transactions without consuming them
  (``pg_logical_slot_peek_binary_changes``, protocol version 1, at most about `limit` rows:
  PostgreSQL checks the limit only after each transaction), up to the WAL flushed when it
  was called (`Peek.upto`).
* `advance` moves the slot (``pg_replication_slot_advance``) once the caller delivered the
  events of what it read: until then the server keeps those changes, across crashes and
  restarts (at-least-once).
* `drop` removes the slot and the publication.

A slot that is never advanced keeps WAL on the server. The caller advances it past WAL that
held no change of the mapped tables too (`Peek.upto` when a peek found nothing), so an idle
slot does not pin WAL nor make every peek decode more.

Needs the REPLICATION attribute or superuser, and ``wal_level=logical``. Not guaranteed:
that another process is not using the slot (PostgreSQL refuses a second reader of one slot:
`SlotError`); a publication dropped by someone else after the slot was created (decoding then
fails until both are dropped and made again, losing what happened in between).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence

import psycopg
from psycopg import sql

from sidecar.cdc.mapping import TableRule
from sidecar.cdc.outgoing import format_lsn

__all__ = ["Peek", "SlotError", "SlotReader", "parse_lsn"]

log = logging.getLogger("strata.cdc.slot")


class SlotError(RuntimeError):
    """The slot or publication cannot be used as configured (message says why)."""


class TableNotFoundError(SlotError):
    """A mapped table does not exist in the database."""


def parse_lsn(text: str) -> int:
    """``16/B374D848`` -> an integer."""
    high, slash, low = text.partition("/")
    if not slash:
        raise ValueError(f"not an LSN: {text!r}")
    return (int(high, 16) << 32) | int(low, 16)


@dataclasses.dataclass(frozen=True, slots=True)
class Peek:
    """Rows read (LSN, message bytes) and the flushed WAL position they were read up to."""

    rows: list[tuple[int, bytes]]
    upto: int


class SlotReader:
    """One connection (autocommit) to the application database."""

    def __init__(self, dsn: str, slot: str, publication: str) -> None:
        self._dsn = dsn
        self.slot = slot
        self.publication = publication
        self._conn: psycopg.Connection[tuple[object, ...]] | None = None
        self.confirmed = 0

    def _db(self) -> psycopg.Connection[tuple[object, ...]]:
        if self._conn is None or self._conn.closed:
            self._conn = psycopg.connect(self._dsn, autocommit=True, connect_timeout=5)
        return self._conn

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _one(self, query: sql.Composable | str, *args: object) -> tuple[object, ...] | None:
        return self._db().execute(query, args).fetchone()  # type: ignore[arg-type]

    def resolve(self, rules: Sequence[TableRule]) -> list[tuple[str, str]]:
        """(schema, table) of each rule's table: a qualified name as given, an unqualified
        one through the connection's search_path. `TableNotFoundError` for a missing one."""
        found = []
        for rule in rules:
            if rule.schema is None:
                row = self._one(
                    "SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n"
                    " ON n.oid = c.relnamespace WHERE c.oid = to_regclass(format('%%I', %s::text))",
                    rule.table,
                )
            else:
                row = self._one(
                    "SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n"
                    " ON n.oid = c.relnamespace"
                    " WHERE c.oid = to_regclass(format('%%I.%%I', %s::text, %s::text))",
                    rule.schema,
                    rule.table,
                )
            if row is None:
                raise TableNotFoundError(f"table {rule.name} not found in the database")
            found.append((str(row[0]), str(row[1])))
        return found

    def ensure(self, rules: Sequence[TableRule]) -> None:
        """The publication (for exactly the mapped tables) and the slot, made when missing."""
        tables = sorted(set(self.resolve(rules)))
        names = sql.SQL(", ").join(sql.Identifier(s, t) for s, t in tables)
        pub = sql.Identifier(self.publication)
        conn = self._db()
        current = conn.execute(
            "SELECT schemaname, tablename FROM pg_publication_tables WHERE pubname = %s",
            (self.publication,),
        ).fetchall()
        exists = self._one("SELECT 1 FROM pg_publication WHERE pubname = %s", self.publication)
        if exists is None:
            conn.execute(sql.SQL("CREATE PUBLICATION {} FOR TABLE {}").format(pub, names))
            log.info(
                f"publication {self.publication} created for {len(tables)} tables",
                extra={"event.action": "cdc-publication-created"},
            )
        elif sorted((str(s), str(t)) for s, t in current) != tables:
            conn.execute(sql.SQL("ALTER PUBLICATION {} SET TABLE {}").format(pub, names))
            log.info(
                f"publication {self.publication} set to the {len(tables)} mapped tables",
                extra={"event.action": "cdc-publication-altered"},
            )
        row = self._one(
            "SELECT plugin, confirmed_flush_lsn::text FROM pg_replication_slots"
            " WHERE slot_name = %s",
            self.slot,
        )
        if row is None:
            created = self._one(
                "SELECT lsn::text FROM pg_create_logical_replication_slot(%s, 'pgoutput')",
                self.slot,
            )
            assert created is not None
            self.confirmed = parse_lsn(str(created[0]))
            log.info(
                f"replication slot {self.slot} created at {created[0]}",
                extra={"event.action": "cdc-slot-created"},
            )
            return
        if row[0] != "pgoutput":
            raise SlotError(f"slot {self.slot} exists with plugin {row[0]}, not pgoutput")
        self.confirmed = parse_lsn(str(row[1]))
        log.info(
            f"replication slot {self.slot} resumes at {row[1]}",
            extra={"event.action": "cdc-slot-resumed"},
        )

    def peek(self, limit: int) -> Peek:
        upto_row = self._one("SELECT pg_current_wal_flush_lsn()::text")
        assert upto_row is not None
        upto = str(upto_row[0])
        rows = (
            self._db()
            .execute(
                "SELECT lsn::text, data FROM pg_logical_slot_peek_binary_changes("
                "%s, %s::pg_lsn, %s, 'proto_version', '1', 'publication_names', %s)",
                (self.slot, upto, limit, self.publication),
            )
            .fetchall()
        )
        return Peek([(parse_lsn(str(lsn)), bytes(data)) for lsn, data in rows], parse_lsn(upto))  # type: ignore[call-overload]

    def advance(self, lsn: int) -> None:
        """Move the slot to `lsn` (nothing when it is not past the confirmed position)."""
        if lsn <= self.confirmed:
            return
        self._one("SELECT pg_replication_slot_advance(%s, %s::pg_lsn)", self.slot, format_lsn(lsn))
        self.confirmed = lsn

    def drop(self) -> tuple[bool, bool]:
        """Drop the slot and the publication; whether each existed."""
        slot = self._one("SELECT 1 FROM pg_replication_slots WHERE slot_name = %s", self.slot)
        if slot is not None:
            self._one("SELECT pg_drop_replication_slot(%s)", self.slot)
        pub = self._one("SELECT 1 FROM pg_publication WHERE pubname = %s", self.publication)
        if pub is not None:
            self._db().execute(
                sql.SQL("DROP PUBLICATION {}").format(sql.Identifier(self.publication))
            )
        return slot is not None, pub is not None
