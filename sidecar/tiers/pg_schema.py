"""The PostgreSQL tier's schema, created and migrated by the sidecar itself, and the
statements the tier runs over it.

Every migration has a version; `strata_schema_migrations` records the versions applied. All
pending migrations run in ONE transaction that first takes a transaction-scoped advisory
lock (`pg_advisory_xact_lock`), so sidecars starting together serialise: the first applies
the migrations, the others then find them recorded and do nothing. A failure rolls the
whole set back and the next `open` tries again.

Version 1:

* ``strata_entries`` keyed by ``(namespace, key)``; ``value`` is `sidecar.tiers.codec` output
  (already zstd-compressed where that helps, so its storage is EXTERNAL: TOAST does not
  try to compress it again); ``size`` is ``len(key) + len(value)``.
* a btree on ``(namespace, expires_at)`` for the sweep, a GIN on ``tags`` for tag deletes;
  prefix deletes use the primary key as a range (bytea orders bytewise).

What this does NOT guarantee: downgrades. A database migrated by a newer build is used as
is (versions this build does not know are left alone, never undone), so new migrations
must stay readable by the previous release (add columns with defaults; never drop or
rename in the same release).
"""

from __future__ import annotations

from typing import Any

from psycopg import AsyncConnection

#: Argument of pg_advisory_xact_lock: b"Strata\x00\x01" as a signed 64-bit integer.
MIGRATION_LOCK_KEY = int.from_bytes(b"Strata\x00\x01", "big", signed=True)

CREATE_MIGRATIONS_TABLE = """
CREATE TABLE IF NOT EXISTS strata_schema_migrations (
    version    int PRIMARY KEY,
    applied_at timestamptz NOT NULL DEFAULT now()
)"""

#: (version, statements), in order. Append only; never edit a released migration.
MIGRATIONS: tuple[tuple[int, tuple[str, ...]], ...] = (
    (
        1,
        (
            """
            CREATE TABLE strata_entries (
                namespace  text        NOT NULL,
                key        bytea       NOT NULL,
                value      bytea       NOT NULL,
                expires_at timestamptz NOT NULL,
                tags       text[]      NOT NULL DEFAULT '{}',
                size       int         NOT NULL,
                updated_at timestamptz NOT NULL DEFAULT now(),
                PRIMARY KEY (namespace, key)
            )""",
            "ALTER TABLE strata_entries ALTER COLUMN value SET STORAGE EXTERNAL",
            "CREATE INDEX strata_entries_expiry ON strata_entries (namespace, expires_at)",
            "CREATE INDEX strata_entries_tags ON strata_entries USING gin (tags)",
        ),
    ),
)

LATEST_VERSION = MIGRATIONS[-1][0]

# -- the statements the tier runs (parameters only; keys and values in binary, %b) ------------

GET_SQL = "SELECT value FROM strata_entries WHERE namespace = %s AND key = %b AND expires_at > %s"
UPSERT_SQL = """
INSERT INTO strata_entries (namespace, key, value, expires_at, tags, size, updated_at)
VALUES (%s, %b, %b, %s, %s::text[], %s, now())
ON CONFLICT (namespace, key) DO UPDATE SET
    value = EXCLUDED.value, expires_at = EXCLUDED.expires_at, tags = EXCLUDED.tags,
    size = EXCLUDED.size, updated_at = EXCLUDED.updated_at"""
DELETE_SQL = "DELETE FROM strata_entries WHERE namespace = %s AND key = %b"
PURGE_SQL = "DELETE FROM strata_entries WHERE namespace = %s AND key = %b AND value = %b"
USAGE_SQL = "SELECT pg_total_relation_size('strata_entries')"
STATS_SQL = "SELECT count(*), coalesce(sum(size), 0) FROM strata_entries WHERE namespace = %s"
# Batched deletes: (namespace, *condition params, batch size). ctid = ANY(ARRAY(...)) plans
# as a TID scan over the rows the inner (indexed) query found.
_BATCH = (
    "DELETE FROM strata_entries WHERE ctid = ANY(ARRAY("
    "SELECT ctid FROM strata_entries WHERE namespace = %s AND {} LIMIT %s))"
)
SWEEP_BATCH_SQL = _BATCH.format("expires_at <= %s")
PREFIX_BATCH_SQL = _BATCH.format("key >= %b AND key < %b")
PREFIX_TAIL_BATCH_SQL = _BATCH.format("key >= %b")
TAG_BATCH_SQL = _BATCH.format("tags @> ARRAY[%s]::text[]")


async def migrate(conn: AsyncConnection[Any], timeout_s: float) -> list[int]:
    """Apply the migrations `conn`'s database lacks; the versions applied (often none).

    `conn` must be in autocommit mode (the migrations bring their own transaction).
    `timeout_s` bounds each statement, the wait for the advisory lock included.
    """
    applied_now: list[int] = []
    async with conn.transaction():
        await conn.execute(
            "SELECT set_config('statement_timeout', %s, true)", (f"{int(timeout_s * 1000)}ms",)
        )
        await conn.execute("SELECT pg_advisory_xact_lock(%s::bigint)", (MIGRATION_LOCK_KEY,))
        await conn.execute(CREATE_MIGRATIONS_TABLE)
        cur = await conn.execute("SELECT version FROM strata_schema_migrations")
        done = {int(row[0]) for row in await cur.fetchall()}
        for version, statements in MIGRATIONS:
            if version in done:
                continue
            for statement in statements:
                await conn.execute(statement)
            await conn.execute(
                "INSERT INTO strata_schema_migrations (version, applied_at) VALUES (%s, now())",
                (version,),
            )
            applied_now.append(version)
    return applied_now
