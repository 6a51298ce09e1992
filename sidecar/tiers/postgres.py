"""L3 on PostgreSQL: the durable fallback for the long tail and for RAM-tier outages.

One row per entry in ``strata_entries``, keyed by ``(namespace, key)``; ``value`` is
`sidecar.tiers.codec` output. Schema, migrations and SQL live in `sidecar.tiers.pg_schema`;
statements are always parameterised; keys and values travel in binary (``%b``), so no
escaping is ever needed.
Expiry is judged by the tier's `Clock` (passed as a parameter), never by the database's
``now()``: a manual clock in tests and a server with a skewed clock behave alike.

Connections and deadlines (`sidecar.tiers.pg_connections`): a pool of autocommit
connections with ``statement_timeout = timeout_s``; a failed `open` leaves the tier usable
(it retries, migrations included, at most once per second, calls failing at once
meanwhile); every statement is abandoned after ``timeout_s`` plus a grace. A DSN libpq
cannot read raises ValueError at construction (`pg_connections.connection_string`, the
parser the configuration checks ``postgres_dsn`` with at start-up).

`sweep` and the prefix and tag deletes work in batches of `BATCH_ROWS` rows (one short
statement each, by ``ctid``); `snapshot` reports counters seen by this process and the
entry and byte counts sampled (``count(*)``, ``sum(size)`` for the namespace) at the end of
the last successful `sweep` (0 before the first).

What this tier does NOT guarantee:

* Atomicity across keys: a prefix or tag delete commits batch by batch, so a concurrent
  reader may see some of the matching entries gone and others not yet; an entry written or
  replaced while the delete runs may survive it. A delete that cannot finish within
  `INVALIDATE_BUDGET_S` raises `TierError` after having dropped part of the entries.
* A complete sweep: `sweep` stops after `SWEEP_BUDGET_S` and is best effort (expired rows
  are never returned by `get` anyway). Concurrent sweeps from several sidecars may each
  report fewer rows than they visited.
* Exact occupancy: `snapshot` entry and byte counts are as old as the last sweep.
* Bounded time for `open` (see `sidecar.tiers.pg_connections`; give an address, not a
  name that needs a slow DNS lookup).
* Durability beyond the server's: a set is acknowledged when PostgreSQL commits, with
  whatever ``synchronous_commit`` the server or role uses.
* Keys of any length: a key longer than ``MAX_INDEXED_BYTES`` minus the namespace's length
  does not fit a btree entry; `set` answers TOO_LARGE and `get` a miss, without I/O.
* Use from several event loops or threads: the pool belongs to the loop that opened it.
* That a set of an already expired entry removes an older value: it is answered
  NOT_ADMITTED without I/O, and the older value lives out its own lifetime.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from sidecar.core.clock import Clock
from sidecar.core.errors import TierError
from sidecar.core.model import CachedResponse, TierSnapshot, Written, logical_bytes
from sidecar.core.observer import NullObserver, Observer
from sidecar.tiers import codec, pg_schema
from sidecar.tiers.base import DURABLE, MEASURABLE, PREFIX_DELETE, TAG_DELETE, SetStatus
from sidecar.tiers.codec import CorruptEntryError
from sidecar.tiers.pg_connections import Conn, PgConnections

T = TypeVar("T")

#: Rows per statement of the sweep and of prefix / tag deletes.
BATCH_ROWS = 5000
#: Time after which `sweep` stops (best effort) ...
SWEEP_BUDGET_S = 1.0
#: ... and after which a prefix / tag delete gives up with `TierError`.
INVALIDATE_BUDGET_S = 5.0
#: A btree entry holds at most ~2700 bytes: longer keys (minus the namespace) are not stored.
MAX_INDEXED_BYTES = 2600

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_FAR_FUTURE = datetime(9999, 12, 31, tzinfo=UTC)


def prefix_successor(prefix: bytes) -> bytes | None:
    """The least byte string above every string that starts with `prefix`; None if there is
    none (an empty prefix, or one made only of 0xff bytes)."""
    stripped = prefix.rstrip(b"\xff")
    if not stripped:
        return None
    return stripped[:-1] + bytes([stripped[-1] + 1])


def _timestamp(ms: int) -> datetime:
    try:
        return _EPOCH + timedelta(milliseconds=ms)
    except OverflowError:
        return _FAR_FUTURE if ms > 0 else _EPOCH


class PostgresTier:
    """The PostgreSQL tier. See the module docstring for what it does not guarantee."""

    def __init__(
        self,
        dsn: str,
        clock: Clock,
        *,
        namespace: str = "strata",
        timeout_s: float = 0.2,
        min_size: int = 1,
        max_size: int = 8,
        observer: Observer | None = None,
    ) -> None:
        self._connections = PgConnections(
            dsn, timeout_s=timeout_s, min_size=min_size, max_size=max_size
        )
        self._clock = clock
        self._namespace = namespace
        self._max_key_bytes = MAX_INDEXED_BYTES - len(namespace.encode())
        self._observer = observer or NullObserver()
        #: Batch size and sweep budget; attributes so tests can shrink them.
        self.batch_rows = BATCH_ROWS
        self.sweep_budget_s = SWEEP_BUDGET_S
        self._hits = self._misses = self._rejections = 0
        self._entries = self._bytes = 0

    @property
    def name(self) -> str:
        return "postgres"

    @property
    def capabilities(self) -> frozenset[str]:
        return frozenset({PREFIX_DELETE, TAG_DELETE, DURABLE, MEASURABLE})

    # -- operations --------------------------------------------------------------------

    async def get(self, key: bytes) -> CachedResponse | None:
        if len(key) > self._max_key_bytes:
            self._misses += 1
            return None  # never stored (see `set`)
        now_ms = self._clock.now_ms()
        params = (self._namespace, key, _timestamp(now_ms))

        async def fetch(conn: Conn) -> bytes | None:
            cur = await conn.execute(pg_schema.GET_SQL, params, binary=True)
            row = await cur.fetchone()
            return None if row is None else bytes(row[0])

        value = await self._call("get", fetch)
        if value is None:
            self._misses += 1
            return None
        try:
            entry = codec.decode(value)
        except CorruptEntryError:
            self._misses += 1
            await self._purge_corrupt(key, value)
            return None
        self._hits += 1
        return entry

    async def set(self, key: bytes, entry: CachedResponse) -> SetStatus:
        if entry.expires_at_ms <= self._clock.now_ms():
            self._rejections += 1
            return SetStatus.NOT_ADMITTED
        if len(key) > self._max_key_bytes:
            self._rejections += 1
            return SetStatus.TOO_LARGE
        value = codec.encode(entry)
        expires_at = _timestamp(entry.expires_at_ms)
        params = (self._namespace, key, value, expires_at, list(entry.tags), len(key) + len(value))

        async def upsert(conn: Conn) -> None:
            await conn.execute(pg_schema.UPSERT_SQL, params)

        await self._call("set", upsert)
        raw, stored = len(entry.body), codec.stored_body_len(value)
        logical, row = logical_bytes(key, entry), len(key) + len(value)
        self._observer.written(self.name, Written(logical, raw, raw, stored, row))
        return SetStatus.STORED

    async def delete(self, key: bytes) -> bool:
        if len(key) > self._max_key_bytes:
            return False
        dropped = await self._call(
            "delete", self._rowcount(pg_schema.DELETE_SQL, (self._namespace, key))
        )
        if dropped:
            self._observer.evicted(self.name, "explicit", dropped)
        return dropped > 0

    async def delete_prefix(self, prefix: bytes) -> int:
        upper = prefix_successor(prefix)
        if upper is None:
            return await self._delete_batches(
                "delete_prefix", pg_schema.PREFIX_TAIL_BATCH_SQL, (prefix,)
            )
        return await self._delete_batches(
            "delete_prefix", pg_schema.PREFIX_BATCH_SQL, (prefix, upper)
        )

    async def delete_tag(self, tag: str) -> int:
        return await self._delete_batches("delete_tag", pg_schema.TAG_BATCH_SQL, (tag,))

    async def sweep(self) -> int:
        """Drop expired rows of this namespace (best effort, see the module docstring),
        then sample the namespace's entry and byte counts for `snapshot`."""
        now = _timestamp(self._clock.now_ms())
        dropped = await self._delete_batches(
            "sweep",
            pg_schema.SWEEP_BATCH_SQL,
            (now,),
            budget_s=self.sweep_budget_s,
            cause="expired",
        )

        async def stats(conn: Conn) -> tuple[int, int]:
            cur = await conn.execute(pg_schema.STATS_SQL, (self._namespace,))
            row = await cur.fetchone()
            return (int(row[0]), int(row[1])) if row else (0, 0)

        with contextlib.suppress(TierError):  # keep the previous sample
            self._entries, self._bytes = await self._call("stats", stats)
        return dropped

    async def usage(self) -> int:
        """Bytes of the ``strata_entries`` table now: ``pg_total_relation_size`` (table,
        indexes and TOAST, every namespace, dead rows until vacuumed) — O(1), unlike a
        ``sum(size)`` over the namespace. For byte budgets (`sidecar.engine.budgets`)."""

        async def size(conn: Conn) -> int:
            cur = await conn.execute(pg_schema.USAGE_SQL)
            row = await cur.fetchone()
            return int(row[0]) if row and row[0] is not None else 0

        return await self._call("usage", size)

    def snapshot(self) -> TierSnapshot:
        """Counters of this process; entries and bytes as of the last sweep; max_bytes 0
        (no byte budget: the database's disk is the limit)."""
        return TierSnapshot(
            name=self.name,
            entries=self._entries,
            bytes=self._bytes,
            max_bytes=0,
            hits=self._hits,
            misses=self._misses,
            admission_rejections=self._rejections,
        )

    # -- life cycle -------------------------------------------------------------------

    async def open(self) -> None:
        """Connect, migrate the schema and open the pool (`sidecar.tiers.pg_connections`)."""
        await self._connections.open()

    async def close(self) -> None:
        await self._connections.close()

    async def _call(self, op: str, fn: Callable[[Conn], Awaitable[T]]) -> T:
        """Run `fn` on a pooled connection within the deadline; driver errors -> TierError."""
        return await self._connections.call(op, fn)

    # -- helpers -------------------------------------------------------------------------

    def _rowcount(
        self, sql: str, params: tuple[Any, ...], *, prepare: bool | None = None
    ) -> Callable[[Conn], Awaitable[int]]:
        async def run(conn: Conn) -> int:
            cur = await conn.execute(sql, params, prepare=prepare)
            return max(0, cur.rowcount)

        return run

    async def _delete_batches(
        self,
        op: str,
        sql: str,
        params: tuple[Any, ...],
        *,
        budget_s: float | None = None,
        cause: str = "explicit",
    ) -> int:
        """Delete in batches until one comes back short. Past the budget: stop (a budget
        was given: best effort) or raise TierError (none given: an invalidation)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + (INVALIDATE_BUDGET_S if budget_s is None else budget_s)
        total = 0
        try:
            while True:
                batch = self.batch_rows
                # Never a prepared (generic) plan: it may scan the whole table for a LIMIT.
                run = self._rowcount(sql, (self._namespace, *params, batch), prepare=False)
                n = await self._call(op, run)
                total += n
                if n < batch:
                    return total
                if loop.time() >= deadline:
                    if budget_s is not None:
                        return total
                    raise TierError(f"postgres {op}: out of time after {total} rows; more remain")
        finally:
            if total:
                self._observer.evicted(self.name, cause, total)

    async def _purge_corrupt(self, key: bytes, value: bytes) -> None:
        """Drop an unreadable value (unless a new one replaced it meanwhile)."""
        try:
            purged = await self._call(
                "purge", self._rowcount(pg_schema.PURGE_SQL, (self._namespace, key, value))
            )
        except TierError:
            return  # still a miss; the next reader tries again
        if purged:
            self._observer.evicted(self.name, "corrupt", purged)
