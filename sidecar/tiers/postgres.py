"""L3 on PostgreSQL: the durable fallback for the long tail and for RAM-tier outages.

One row per entry in ``strata_entries``, keyed by ``(namespace, key)``; ``value`` is
`sidecar.tiers.codec` output. Schema, migrations and SQL live in `sidecar.tiers.pg_schema`;
statements are always parameterised; keys and values travel in binary (``%b``), so no
escaping is ever needed.
Expiry is judged by the tier's `Clock` (passed as a parameter), never by the database's
``now()``: a manual clock in tests and a server with a skewed clock behave alike.

Connections. A `psycopg_pool.AsyncConnectionPool` of autocommit connections, each with
``statement_timeout = timeout_s``. `open` connects once outside the pool, runs the
migrations, then opens the pool and waits (bounded) for its first connection. If that
fails, `open` raises `TierError` and the tier stays usable: the next call after
`RETRY_INTERVAL_S` tries again (migrations included) in the background and waits for it at
most ``timeout_s``; calls in between fail at once. Once open, the pool replaces broken
connections itself; a call that finds its connection dead also has the pool check its idle
ones, so a restarted server costs one failed call rather than one per pooled connection. A
call that finds the table missing (a database restored or replaced by an empty one) makes
the next call migrate again, the same way.

Deadlines. Getting a connection waits at most ``timeout_s`` (pool timeout) and the server
cancels a statement after ``timeout_s`` (``statement_timeout``). On top of that every
statement runs in its own task, abandoned after ``timeout_s + grace`` (grace: max(50 ms,
timeout_s / 4), so the server's cancellation normally comes first): even a silent network
(no RST, no answer) costs a caller at most that. The abandoned task cancels its query in
the background and then returns or discards its connection. A caller that gives up
sooner (its own deadline, `sidecar.tiers.deadline`, or a cancelled request) leaves the
statement running in the background until that same limit: a healthy server's answer a
few milliseconds late then returns its connection to the pool, instead of the
cancellation closing it (and the next calls paying for a new one).

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
* Bounded time for `open`: the first connection and the migrations are bounded by
  `open_timeout_s` and `MIGRATION_TIMEOUT_S` plus psycopg's own query cancellation (up to a
  few seconds on a silent network); a slow DNS lookup is not covered (give an address).
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
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import psycopg
from psycopg import AsyncConnection
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg.errors import UndefinedTable
from psycopg_pool import AsyncConnectionPool

from sidecar.core.clock import Clock
from sidecar.core.errors import ConfigError, TierError
from sidecar.core.model import CachedResponse, TierSnapshot
from sidecar.core.observer import NullObserver, Observer
from sidecar.core.redact import Scrubber, redact
from sidecar.tiers import codec, pg_schema
from sidecar.tiers.base import PREFIX_DELETE, TAG_DELETE, SetStatus
from sidecar.tiers.codec import CorruptEntryError

T = TypeVar("T")
Conn = AsyncConnection[tuple[Any, ...]]

log = logging.getLogger(__name__)

#: Rows per statement of the sweep and of prefix / tag deletes.
BATCH_ROWS = 5000
#: Time after which `sweep` stops (best effort) ...
SWEEP_BUDGET_S = 1.0
#: ... and after which a prefix / tag delete gives up with `TierError`.
INVALIDATE_BUDGET_S = 5.0
#: After a failed open, calls fail at once for this long before the next attempt.
RETRY_INTERVAL_S = 1.0
#: statement_timeout of the migrations (the wait for another sidecar's lock included).
MIGRATION_TIMEOUT_S = 5.0
#: The pool's reconnection attempts (1 s, 2 s, ... apart) restart from 1 s after this.
RECONNECT_TIMEOUT_S = 5.0
#: A btree entry holds at most ~2700 bytes: longer keys (minus the namespace) are not stored.
MAX_INDEXED_BYTES = 2600
#: Added to the DSN unless it sets them.
CONNECTION_DEFAULTS = {"application_name": "strata-sidecar", "connect_timeout": "2"}

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


def _describe(dsn: str) -> str:
    """The DSN with its secrets masked, for logs and errors."""
    return redact(dsn)


def _consume(task: asyncio.Task[Any]) -> None:
    """Done callback: mark a background task's outcome as seen (no 'never retrieved')."""
    if not task.cancelled():
        task.exception()


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
        try:
            params = conninfo_to_dict(dsn)
        except psycopg.ProgrammingError:
            raise ConfigError("postgres_dsn", "not a valid PostgreSQL DSN") from None
        extra = {k: v for k, v in CONNECTION_DEFAULTS.items() if k not in params}
        self._dsn = make_conninfo(dsn, **extra)
        self._scrubber = Scrubber.of_settings([dsn])
        self._where = _describe(dsn)
        self._clock = clock
        self._namespace = namespace
        self._max_key_bytes = MAX_INDEXED_BYTES - len(namespace.encode())
        self._timeout_s = timeout_s
        self._grace_s = max(0.05, timeout_s / 4)
        self.open_timeout_s = max(1.0, 5 * timeout_s)
        self._min_size, self._max_size = min_size, max_size
        self._observer = observer or NullObserver()
        #: Batch size and sweep budget; attributes so tests can shrink them.
        self.batch_rows = BATCH_ROWS
        self.sweep_budget_s = SWEEP_BUDGET_S
        self._pool: AsyncConnectionPool[Conn] | None = None
        self._opening: asyncio.Task[None] | None = None
        self._checking: asyncio.Task[None] | None = None
        self._abandoned: set[asyncio.Task[Any]] = set()
        self._retry_at = 0.0
        self._last_error = "not opened yet"
        self._schema_ok = False  # cleared again when a table turns out to be missing
        self._closed = False
        self._hits = self._misses = self._rejections = 0
        self._entries = self._bytes = 0

    @property
    def name(self) -> str:
        return "postgres"

    @property
    def capabilities(self) -> frozenset[str]:
        return frozenset({PREFIX_DELETE, TAG_DELETE})

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

    # -- life cycle --------------------------------------------------------------------

    async def open(self) -> None:
        """Connect, migrate the schema and open the pool (see the module docstring)."""
        if self._pool is not None and self._schema_ok:
            return
        if self._closed:
            raise TierError("postgres tier is closed")
        task = self._opening or self._start_opening()
        await asyncio.wait((task,))
        self._raise_if_failed(task)

    async def close(self) -> None:
        self._closed = True
        tasks = {t for t in (self._opening, self._checking) if t is not None}
        tasks |= self._abandoned
        for task in tasks:
            task.cancel()  # an abandoned query cancelled twice drops its connection at once
        if tasks:
            await asyncio.wait(tasks, timeout=max(1.0, 2 * self._timeout_s))
        pool, self._pool = self._pool, None
        if pool is not None:
            await pool.close()

    # -- connections and errors ---------------------------------------------------------

    def _start_opening(self) -> asyncio.Task[None]:
        task = asyncio.create_task(self._connect_and_migrate(), name="strata-postgres-open")
        task.add_done_callback(_consume)
        self._opening = task
        return task

    async def _connect_and_migrate(self) -> None:
        """The body of an opening: migrate (on a connection of its own the first time, on a
        pooled one when the schema went missing later), then open the pool if need be."""
        loop = asyncio.get_running_loop()
        pool: AsyncConnectionPool[Conn] | None = None
        try:
            if self._pool is None:
                async with asyncio.timeout(self.open_timeout_s):
                    conn = await AsyncConnection.connect(self._dsn, autocommit=True)
                try:
                    await self._migrate(conn)
                finally:
                    await conn.close()
                pool = self._new_pool()
                await pool.open(wait=True, timeout=self.open_timeout_s)
                if self._closed:
                    raise TierError("postgres tier is closed")
                self._pool, pool = pool, None
            else:
                async with self._pool.connection(timeout=self.open_timeout_s) as conn:
                    await self._migrate(conn)
            self._schema_ok = True
        except (psycopg.Error, OSError, TimeoutError) as exc:
            self._retry_at = loop.time() + RETRY_INTERVAL_S
            error = self._error("open", exc)
            self._last_error = str(error)
            log.warning("postgres tier unavailable at %s: %s", self._where, self._last_error)
            raise error from exc
        finally:
            self._opening = None
            if pool is not None:
                await pool.close()

    async def _migrate(self, conn: Conn) -> None:
        async with asyncio.timeout(MIGRATION_TIMEOUT_S + self.open_timeout_s):
            applied = await pg_schema.migrate(conn, MIGRATION_TIMEOUT_S)
        if applied:
            log.info("postgres tier: schema migrated to version %s", applied[-1])

    def _new_pool(self) -> AsyncConnectionPool[Conn]:
        statement_timeout = f"{max(1, round(self._timeout_s * 1000))}ms"

        async def configure(conn: Conn) -> None:
            await conn.execute(
                "SELECT set_config('statement_timeout', %s, false)", (statement_timeout,)
            )

        return AsyncConnectionPool(
            self._dsn,
            kwargs={"autocommit": True},
            min_size=self._min_size,
            max_size=self._max_size,
            open=False,
            configure=configure,
            name="strata-postgres",
            timeout=self._timeout_s,
            reconnect_timeout=RECONNECT_TIMEOUT_S,
        )

    async def _ready_pool(self) -> AsyncConnectionPool[Conn]:
        """The open pool; else (re)open in the background and wait at most timeout_s."""
        if self._pool is not None and self._schema_ok:
            return self._pool
        if self._closed:
            raise TierError("postgres tier is closed")
        task = self._opening
        if task is None:
            if asyncio.get_running_loop().time() < self._retry_at:
                raise TierError(f"postgres unavailable: {self._last_error}")
            task = self._start_opening()
        done, _ = await asyncio.wait((task,), timeout=self._timeout_s)
        if not done:
            raise TierError("postgres: still connecting")
        self._raise_if_failed(task)
        return self._open_pool()

    def _open_pool(self) -> AsyncConnectionPool[Conn]:
        if self._pool is None:  # closed while it was opening
            raise TierError("postgres tier is closed")
        return self._pool

    def _raise_if_failed(self, task: asyncio.Task[None]) -> None:
        if task.cancelled():
            raise TierError("postgres: opening was cancelled")
        exc = task.exception()
        if exc is not None:
            raise TierError(str(exc)) from exc

    async def _call(self, op: str, fn: Callable[[Conn], Awaitable[T]]) -> T:
        """Run `fn` on a pooled connection within the deadline; driver errors -> TierError."""
        pool = await self._ready_pool()
        task = asyncio.create_task(self._on_connection(pool, fn))
        limit = self._timeout_s + self._grace_s
        loop = asyncio.get_running_loop()
        started = loop.time()
        try:
            done, _ = await asyncio.wait((task,), timeout=limit)
        except asyncio.CancelledError:
            self._finish_later(task, started + limit)
            raise
        if not done:
            self._abandon(task)
            deadline = self._timeout_s + self._grace_s
            raise TierError(f"postgres {op}: no answer within {deadline:.3f} s")
        try:
            return task.result()
        except (psycopg.Error, OSError) as exc:
            if isinstance(exc, UndefinedTable):
                self._schema_ok = False  # dropped, or a new empty database: migrate again
            raise self._error(op, exc) from exc

    async def _on_connection(
        self, pool: AsyncConnectionPool[Conn], fn: Callable[[Conn], Awaitable[T]]
    ) -> T:
        # getconn/putconn rather than pool.connection(): the connection is in autocommit, so
        # the transaction handling of the context manager is not needed (~15 us per call).
        conn = await pool.getconn()
        try:
            return await fn(conn)
        except psycopg.Error:
            if conn.broken:
                self._check_idle_connections(pool)
            raise
        finally:
            await pool.putconn(conn)

    def _check_idle_connections(self, pool: AsyncConnectionPool[Conn]) -> None:
        """One connection was found dead: have the pool test (and replace) the idle ones."""
        if self._checking is None or self._checking.done():
            self._checking = asyncio.create_task(pool.check(), name="strata-postgres-check")
            self._checking.add_done_callback(_consume)

    def _abandon(self, task: asyncio.Task[Any]) -> None:
        task.cancel()
        self._abandoned.add(task)
        task.add_done_callback(self._abandoned.discard)
        task.add_done_callback(_consume)

    def _finish_later(self, task: asyncio.Task[Any], at: float) -> None:
        """Let a statement whose caller left run on until `at` (loop time), then abandon it:
        its result is dropped, its connection kept if it ends in time."""
        cutoff = asyncio.get_running_loop().call_at(at, self._abandon, task)
        self._abandoned.add(task)
        task.add_done_callback(lambda _: cutoff.cancel())
        task.add_done_callback(self._abandoned.discard)
        task.add_done_callback(_consume)

    def _error(self, op: str, exc: BaseException) -> TierError:
        detail = self._scrubber.scrub((str(exc).strip().splitlines() or [""])[0])
        return TierError(f"postgres {op} failed: {type(exc).__name__}: {detail}".rstrip(": "))

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
