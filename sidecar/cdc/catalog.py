"""The mapped tables checked against the database's catalog, at start (the slot path).

`inspect` resolves each rule's table (a qualified name as given, an unqualified one through
the connection's search_path) and refuses, with `SetupError` (exit 2, naming the option and
the table), what would go wrong later:

* a table that does not exist;
* a ``{column}`` of a template, or a ``key`` column, that the table does not have (every
  change would then make no tag: purges silently lost);
* a table whose UPDATE and DELETE have **no replica identity** -- no primary key with
  ``REPLICA IDENTITY DEFAULT``, ``REPLICA IDENTITY NOTHING``, or ``USING INDEX`` of an index
  that is gone: publishing its updates would make PostgreSQL refuse the application's
  UPDATE and DELETE ("cannot update table ... because it does not have a replica
  identity"). The operator may list such a table in ``--inserts-only``: it is then
  published for INSERT and TRUNCATE only (its updates and deletes purge nothing);
* the default tag (``<table>:<key>``) of a table with no key to make it from (no primary
  key nor identity index, and no ``key`` in the mapping).

A rule with the default tag and no ``key`` gets the key of the catalog (the primary key, or
the identity index's columns) so that ``REPLICA IDENTITY FULL`` -- where pgoutput flags
every column as a key column -- still tags ``products:42``.

Not guaranteed: the checks hold at start only (an ``ALTER TABLE`` later that drops the key
or sets ``REPLICA IDENTITY NOTHING`` makes the application's UPDATEs fail again).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Collection, Sequence

import psycopg

from sidecar.cdc.mapping import TableRule

__all__ = ["SetupError", "TableInfo", "inspect"]

_IDENTITY = {"d": "DEFAULT", "n": "NOTHING", "f": "FULL", "i": "USING INDEX"}

_LOOKUP_PLAIN = (
    "SELECT c.oid::int8 FROM pg_class c WHERE c.oid = to_regclass(format('%%I', %s::text))"
)
_LOOKUP_QUALIFIED = (
    "SELECT c.oid::int8 FROM pg_class c"
    " WHERE c.oid = to_regclass(format('%%I.%%I', %s::text, %s::text))"
)
_DESCRIBE = """
SELECT n.nspname::text, c.relname::text, c.relreplident::text,
  ARRAY(SELECT a.attname::text FROM pg_attribute a
        WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum),
  ARRAY(SELECT a.attname::text FROM pg_index i
        JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, pos) ON true
        JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = k.attnum
        WHERE i.indrelid = c.oid AND i.indisprimary ORDER BY k.pos),
  ARRAY(SELECT a.attname::text FROM pg_index i
        JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, pos) ON true
        JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = k.attnum
        WHERE i.indrelid = c.oid AND i.indisreplident AND i.indisvalid ORDER BY k.pos)
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = %s
"""


class SetupError(ValueError):
    """A configuration the database refuses or that would lose purges; `option` names the
    flag to change (the command exits 2)."""

    def __init__(self, option: str, message: str) -> None:
        super().__init__(f"{option}: {message}")
        self.option = option


@dataclasses.dataclass(frozen=True, slots=True)
class TableInfo:
    """One mapped table as the catalog has it."""

    rule: TableRule
    schema: str
    table: str
    columns: tuple[str, ...]
    identity: str  # DEFAULT, NOTHING, FULL or USING INDEX
    key: tuple[str, ...]  # the primary key, else the identity index's columns
    identity_columns: tuple[str, ...]  # what UPDATE/DELETE are identified by (none: refused)
    inserts_only: bool

    @property
    def qualified(self) -> str:
        return f"{self.schema}.{self.table}"

    @property
    def has_identity(self) -> bool:
        """Whether UPDATE and DELETE of the table can be published."""
        return bool(self.identity_columns)


def _describe(conn: psycopg.Connection[tuple[object, ...]], rule: TableRule) -> tuple[object, ...]:
    if rule.schema is None:
        found = conn.execute(_LOOKUP_PLAIN, (rule.table,)).fetchone()
    else:
        found = conn.execute(_LOOKUP_QUALIFIED, (rule.schema, rule.table)).fetchone()
    if found is None:
        raise SetupError("--tables", f"table {rule.name} not found in the database")
    row = conn.execute(_DESCRIBE, (found[0],)).fetchone()
    assert row is not None
    return row


def _info(row: tuple[object, ...], rule: TableRule, inserts_only: bool) -> TableInfo:
    schema, table, ident, columns, primary, index = row
    assert isinstance(columns, list) and isinstance(primary, list) and isinstance(index, list)
    identity = _IDENTITY.get(str(ident), str(ident))
    by_identity = {"DEFAULT": primary, "USING INDEX": index, "FULL": columns}
    return TableInfo(
        rule,
        str(schema),
        str(table),
        tuple(map(str, columns)),
        identity,
        tuple(map(str, primary or index)),
        tuple(map(str, by_identity.get(identity, []))),
        inserts_only,
    )


def _check(info: TableInfo) -> TableRule:
    rule = info.rule
    name = info.qualified
    for column in rule.key:
        if column not in info.columns:
            raise SetupError("--map", f"table {name} has no column {column!r} (its key)")
    for template in rule.templates:
        for column in template.columns:
            if column not in info.columns:
                raise SetupError(
                    "--map", f"table {name} has no column {column!r} (template {template.text!r})"
                )
    if not info.has_identity and not info.inserts_only:
        why = "NOTHING" if info.identity == "NOTHING" else f"{info.identity} without a key"
        raise SetupError(
            "--tables",
            f"table {name} has no replica identity for UPDATE/DELETE (REPLICA IDENTITY {why}):"
            " publishing it would make the application's UPDATE and DELETE fail; add a primary"
            " key or REPLICA IDENTITY FULL, or list it in --inserts-only",
        )
    if not rule.templates and not rule.key:
        if not info.key:
            raise SetupError(
                "--tables",
                f"table {name} has no primary key for its default tag {rule.name}:<key>:"
                " give key or tag templates in the mapping",
            )
        return dataclasses.replace(rule, key=info.key)
    return rule


def inspect(
    conn: psycopg.Connection[tuple[object, ...]],
    rules: Sequence[TableRule],
    inserts_only: Collection[str] = (),
) -> list[TableInfo]:
    """Every rule's table, checked (`SetupError` otherwise); `TableInfo.rule` is the rule to
    map with (the key filled in for the default tag). `inserts_only` holds rule names."""
    out = []
    for rule in rules:
        info = _info(_describe(conn, rule), rule, rule.name in inserts_only)
        out.append(dataclasses.replace(info, rule=_check(info)))
    return out
