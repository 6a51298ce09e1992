"""The logical replication slot, through PostgreSQL's SQL interface (psycopg 3 speaks no
streaming replication protocol).

* `ensure` checks the mapped tables (`sidecar.cdc.catalog`), then creates the publication
  (``FOR TABLE`` the mapped tables) and the slot (``pgoutput``) when missing: the
  publication must exist before the slot, since pgoutput looks it up as of each change's
  time. Tables listed in ``--inserts-only`` go to a second publication
  (`companion_name`, ``WITH (publish = 'insert, truncate')``), made and dropped likewise.
* **Ownership.** A publication this tool creates carries the comment ``strata cdc <slot>``
  (`marker`). An existing publication of that name without exactly that comment is never
  altered, used nor dropped (`SetupError`, exit 2). An existing slot is used (and dropped by
  `drop`) only when it is a logical, non-temporary slot of this database using
  ``pgoutput`` AND the publication marked for it already existed when it was found: the
  tool always creates the publication first, so a slot without its marked publication was
  made by someone else. Not guaranteed: a slot someone else created under this name after
  the tool's publication (nothing in PostgreSQL records who made a slot).
* `peek` reads whole transactions without consuming them
  (``pg_logical_slot_peek_binary_changes``, protocol version 1, at most about `limit` rows:
  PostgreSQL checks the limit only after each transaction), up to the WAL flushed when it
  was called (`Peek.upto`).
* `advance` moves the slot (``pg_replication_slot_advance``) once the caller delivered the
  events of what it read: until then the server keeps those changes, across crashes and
  restarts (at-least-once).
* `drop` removes the slot and the tool's publications (ownership checked first: nothing is
  dropped when one of them is not the tool's).

A slot that is never advanced keeps WAL on the server. The caller advances it past WAL that
held no change of the mapped tables too (`Peek.upto` when a peek found nothing), so an idle
slot does not pin WAL nor make every peek decode more.

Needs the REPLICATION attribute or superuser, and ``wal_level=logical``. Not guaranteed:
that another process is not using the slot (PostgreSQL refuses a second reader of one slot:
a database error); a publication dropped by someone else after the slot was created
(decoding then fails until both are dropped and made again, losing what happened in
between).
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
from collections.abc import Collection, Sequence
from typing import NoReturn

import psycopg
from psycopg import sql

from sidecar.cdc.catalog import SetupError, inspect
from sidecar.cdc.mapping import TableRule
from sidecar.cdc.outgoing import format_lsn

__all__ = ["Peek", "SlotError", "SlotReader", "companion_name", "marker", "parse_lsn"]

log = logging.getLogger("strata.cdc.slot")


class SlotError(RuntimeError):
    """The slot or publication cannot be used as configured (message says why)."""


def marker(slot: str) -> str:
    """The comment of a publication the tool created for `slot`."""
    return f"strata cdc {slot}"


def companion_name(publication: str) -> str:
    """The publication of the ``--inserts-only`` tables (at most 63 characters)."""
    name = f"{publication}_ins"
    if len(name) <= 63:
        return name
    return f"{publication[:50]}_{hashlib.sha256(publication.encode()).hexdigest()[:8]}_ins"


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
        #: The publications `peek` decodes with (set by `ensure`).
        self.publications: tuple[str, ...] = (publication,)

    @property
    def marker(self) -> str:
        return marker(self.slot)

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

    def _comment(self, publication: str) -> tuple[bool, str | None]:
        """Whether `publication` exists, and its comment."""
        row = self._one(
            "SELECT obj_description(oid, 'pg_publication') FROM pg_publication WHERE pubname = %s",
            publication,
        )
        return row is not None, None if row is None else (None if row[0] is None else str(row[0]))

    def _refuse_foreign(self, option: str, publication: str, comment: str | None) -> NoReturn:
        raise SetupError(
            option,
            f"publication {publication} exists and was not created by strata cdc for slot "
            f"{self.slot} (its comment is {comment!r}, not {self.marker!r}): it is left alone;"
            " choose another --publication (or --slot)",
        )

    def _slot_row(self) -> tuple[object, ...] | None:
        return self._one(
            "SELECT plugin, slot_type, database = current_database(), temporary,"
            " confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = %s",
            self.slot,
        )

    def _slot_owned(self, row: tuple[object, ...], publication_marked: bool) -> str | None:
        """Why the existing slot `row` is not the tool's (None: it is)."""
        plugin, kind, same_db, temporary, _lsn = row
        if kind != "logical" or plugin != "pgoutput":
            return f"it is a {kind} slot with plugin {plugin}, not a logical pgoutput slot"
        if not same_db:
            return "it belongs to another database"
        if temporary:
            return "it is a temporary slot of another session"
        if not publication_marked:
            return (
                f"publication {self.publication} with the comment {self.marker!r} did not "
                "exist before it (strata cdc creates its publication first)"
            )
        return None

    def _set_publication(
        self, name: str, tables: list[tuple[str, str]], exists: bool, publish: str | None
    ) -> None:
        conn = self._db()
        ident = sql.Identifier(name)
        names = sql.SQL(", ").join(sql.Identifier(s, t) for s, t in tables)
        if not exists:
            create = sql.SQL("CREATE PUBLICATION {}").format(ident)
            if tables:
                create += sql.SQL(" FOR TABLE {}").format(names)
            if publish:
                create += sql.SQL(" WITH (publish = {})").format(sql.Literal(publish))
            with conn.transaction():
                conn.execute(create)
                conn.execute(
                    sql.SQL("COMMENT ON PUBLICATION {} IS {}").format(
                        ident, sql.Literal(self.marker)
                    )
                )
            log.info(
                f"publication {name} created for {len(tables)} tables",
                extra={"event.action": "cdc-publication-created"},
            )
            return
        rows = conn.execute(
            "SELECT schemaname::text, tablename::text FROM pg_publication_tables"
            " WHERE pubname = %s",
            (name,),
        ).fetchall()
        current = sorted((str(s), str(t)) for s, t in rows)
        if current == tables:
            return
        if tables:
            conn.execute(sql.SQL("ALTER PUBLICATION {} SET TABLE {}").format(ident, names))
        else:
            old = sql.SQL(", ").join(sql.Identifier(s, t) for s, t in current)
            conn.execute(sql.SQL("ALTER PUBLICATION {} DROP TABLE {}").format(ident, old))
        log.info(
            f"publication {name} set to the {len(tables)} mapped tables",
            extra={"event.action": "cdc-publication-altered"},
        )

    def ensure(
        self, rules: Sequence[TableRule], inserts_only: Collection[str] = ()
    ) -> list[TableRule]:
        """Check the tables and the ownership of what exists (`SetupError`), then make or
        set the publications and the slot. The rules to map with (`catalog.inspect`)."""
        infos = inspect(self._db(), rules, inserts_only)
        full = sorted({(i.schema, i.table) for i in infos if not i.inserts_only})
        ins = sorted({(i.schema, i.table) for i in infos if i.inserts_only})
        companion = companion_name(self.publication)
        main_exists, main_comment = self._comment(self.publication)
        if main_exists and main_comment != self.marker:
            self._refuse_foreign("--publication", self.publication, main_comment)
        comp_exists, comp_comment = self._comment(companion)
        if ins and comp_exists and comp_comment != self.marker:
            self._refuse_foreign("--inserts-only", companion, comp_comment)
        row = self._slot_row()
        if row is not None:
            why = self._slot_owned(row, main_exists)
            if why is not None:
                raise SetupError("--slot", f"slot {self.slot} is not one strata cdc created: {why}")
        self._set_publication(self.publication, full, main_exists, None)
        self.publications = (self.publication,)
        if ins:
            self._set_publication(companion, ins, comp_exists, "insert, truncate")
            self.publications = (self.publication, companion)
        elif comp_exists and comp_comment == self.marker:
            self._db().execute(sql.SQL("DROP PUBLICATION {}").format(sql.Identifier(companion)))
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
        else:
            self.confirmed = parse_lsn(str(row[4]))
            log.info(
                f"replication slot {self.slot} resumes at {row[4]}",
                extra={"event.action": "cdc-slot-resumed"},
            )
        return [i.rule for i in infos]

    def peek(self, limit: int) -> Peek:
        upto_row = self._one("SELECT pg_current_wal_flush_lsn()::text")
        assert upto_row is not None
        upto = str(upto_row[0])
        names = ",".join('"' + p.replace('"', '""') + '"' for p in self.publications)
        rows = (
            self._db()
            .execute(
                "SELECT lsn::text, data FROM pg_logical_slot_peek_binary_changes("
                "%s, %s::pg_lsn, %s, 'proto_version', '1', 'publication_names', %s)",
                (self.slot, upto, limit, names),
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
        """Drop the slot and the tool's publications; whether the slot and the publication
        existed. `SetupError` (nothing dropped) when one of them is not the tool's."""
        main_exists, main_comment = self._comment(self.publication)
        marked = main_exists and main_comment == self.marker
        row = self._slot_row()
        if row is not None:
            why = self._slot_owned(row, marked)
            if why is not None:
                raise SetupError(
                    "--slot", f"slot {self.slot} is not one strata cdc created ({why}): not dropped"
                )
        if main_exists and not marked:
            self._refuse_foreign("--publication", self.publication, main_comment)
        if row is not None:
            self._one("SELECT pg_drop_replication_slot(%s)", self.slot)
        companion = companion_name(self.publication)
        for name in (self.publication, companion):
            exists, comment = self._comment(name)
            if exists and comment == self.marker:
                self._db().execute(sql.SQL("DROP PUBLICATION {}").format(sql.Identifier(name)))
        return row is not None, main_exists
