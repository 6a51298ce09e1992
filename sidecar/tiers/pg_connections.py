"""The PostgreSQL tier's connections: the pool, its (re)opening with migrations, the
deadline of each statement, driver errors turned into `TierError`.

Connections. A `psycopg_pool.AsyncConnectionPool` of autocommit connections, each with
``statement_timeout = timeout_s``. `open` connects once outside the pool, runs the
migrations (`sidecar.tiers.pg_schema`), then opens the pool and waits (bounded) for its
first connection. If that fails, `open` raises `TierError` and the connections stay
usable: the next call after `RETRY_INTERVAL_S` (a `sidecar.core.backoff.Backoff` on the
event loop's clock) tries again (migrations included) in the background and waits for it
at most ``timeout_s``; calls in between fail at once. Once open, the pool replaces broken
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

What is NOT guaranteed: bounded time for `open` (the first connection and the migrations
are bounded by `open_timeout_s` and `MIGRATION_TIMEOUT_S` plus psycopg's own query
cancellation, up to a few seconds on a silent network; a slow DNS lookup is not covered),
or use from several event loops or threads (the pool belongs to the loop that opened it).
Error messages never quote the DSN's secrets (`sidecar.core.redact`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import psycopg
from psycopg import AsyncConnection
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg.errors import UndefinedTable
from psycopg_pool import AsyncConnectionPool

from sidecar.core.backoff import Backoff
from sidecar.core.errors import TierError
from sidecar.core.redact import Scrubber, quotes_masked, redact
from sidecar.tiers import pg_schema

T = TypeVar("T")
Conn = AsyncConnection[tuple[Any, ...]]

log = logging.getLogger("sidecar.tiers.postgres")  # the tier's logger: one name to filter

#: After a failed open, calls fail at once for this long before the next attempt.
RETRY_INTERVAL_S = 1.0
#: statement_timeout of the migrations (the wait for another sidecar's lock included).
MIGRATION_TIMEOUT_S = 5.0
#: The pool's reconnection attempts (1 s, 2 s, ... apart) restart from 1 s after this.
RECONNECT_TIMEOUT_S = 5.0
#: Added to the DSN unless it sets them.
CONNECTION_DEFAULTS = {"application_name": "strata-sidecar", "connect_timeout": "2"}


def connection_string(dsn: str) -> str:
    """`dsn` (a libpq ``key=value`` string or a ``postgresql://`` URL) with
    `CONNECTION_DEFAULTS` added where it sets none: the one parser of the ``postgres_dsn``
    setting (the configuration calls it too). ValueError if libpq cannot read it; the
    message masks every quoted piece of libpq's reason (it may be a piece of a password)."""
    try:
        params = conninfo_to_dict(dsn)
    except psycopg.ProgrammingError as exc:
        reason = quotes_masked(str(exc))
        raise ValueError(f"not a valid PostgreSQL connection string: {reason}") from None
    extra = {k: v for k, v in CONNECTION_DEFAULTS.items() if k not in params}
    return make_conninfo(dsn, **extra)


def _consume(task: asyncio.Task[Any]) -> None:
    """Done callback: mark a background task's outcome as seen (no 'never retrieved')."""
    if not task.cancelled():
        task.exception()


class PgConnections:
    """The pool of one PostgreSQL tier. See the module docstring."""

    def __init__(self, dsn: str, *, timeout_s: float, min_size: int, max_size: int) -> None:
        self._dsn = connection_string(dsn)
        self._scrubber = Scrubber.of_settings([dsn])
        self._where = redact(dsn)
        self._timeout_s = timeout_s
        self._grace_s = max(0.05, timeout_s / 4)
        self.open_timeout_s = max(1.0, 5 * timeout_s)
        self._min_size, self._max_size = min_size, max_size
        self._pool: AsyncConnectionPool[Conn] | None = None
        self._opening: asyncio.Task[None] | None = None
        self._checking: asyncio.Task[None] | None = None
        self._abandoned: set[asyncio.Task[Any]] = set()
        self._reopen = Backoff(RETRY_INTERVAL_S)  # on the event loop's clock
        self._last_error = "not opened yet"
        self._schema_ok = False  # cleared again when a table turns out to be missing
        self._closed = False

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

    async def call(self, op: str, fn: Callable[[Conn], Awaitable[T]]) -> T:
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
            raise TierError(f"postgres {op}: no answer within {limit:.3f} s")
        try:
            return task.result()
        except (psycopg.Error, OSError) as exc:
            if isinstance(exc, UndefinedTable):
                self._schema_ok = False  # dropped, or a new empty database: migrate again
            raise self._error(op, exc) from exc

    # -- opening -------------------------------------------------------------------------

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
            self._reopen.failed(loop.time())
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
            if self._reopen.is_down(asyncio.get_running_loop().time()):
                raise TierError(f"postgres unavailable: {self._last_error}")
            task = self._start_opening()
        done, _ = await asyncio.wait((task,), timeout=self._timeout_s)
        if not done:
            raise TierError("postgres: still connecting")
        self._raise_if_failed(task)
        if self._pool is None:  # closed while it was opening
            raise TierError("postgres tier is closed")
        return self._pool

    def _raise_if_failed(self, task: asyncio.Task[None]) -> None:
        if task.cancelled():
            raise TierError("postgres: opening was cancelled")
        exc = task.exception()
        if exc is not None:
            raise TierError(str(exc)) from exc

    # -- calls -----------------------------------------------------------------------------

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
