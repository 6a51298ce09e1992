"""What only the PostgreSQL tier does: versioned migrations (also from sidecars starting
together), namespace isolation, prefix ranges over 0xff bytes, batched sweeps by the tier's
clock, purge of corrupt values, statement deadlines, and recovery from connections killed
by the server and from a server that stops and starts again.

Most tests use the services' PostgreSQL with a namespace of their own; the migration test
uses a fresh database it creates and drops; the stop/start test runs a private cluster
(`initdb` in a temp dir, as the postgres OS user when root) on a free port.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from functools import partial
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import make_conninfo

from sidecar.core.clock import ManualClock, SystemClock
from sidecar.core.errors import TierError
from sidecar.core.observer import RecordingObserver
from sidecar.tiers import pg_schema
from sidecar.tiers.base import SetStatus
from sidecar.tiers.postgres import MAX_INDEXED_BYTES, PostgresTier, prefix_successor
from tests.support import entries
from tools import services
from tools.stack import free_port

pytestmark = pytest.mark.integration

TIMEOUT_S = 0.2
#: A call may take timeout_s + grace (0.05 s) plus scheduling noise.
CALL_BOUND_S = TIMEOUT_S + 0.05 + 0.25
RECOVERY_BOUND_S = 10.0

Admin = psycopg.AsyncConnection[tuple[Any, ...]]
MakeTier = Callable[..., Awaitable[PostgresTier]]


def _dsn() -> str:
    env = services.load_env()
    if "STRATA_TEST_POSTGRES_DSN" not in env:
        pytest.fail("STRATA_TEST_POSTGRES_DSN missing: run `python -m tools.services up` first")
    return env["STRATA_TEST_POSTGRES_DSN"]


entry = partial(entries.entry, body=b"x" * 100, headers=())


@pytest.fixture
def namespace() -> str:
    return "p" + uuid.uuid4().hex[:12]


@pytest.fixture
async def admin() -> AsyncIterator[Admin]:
    conn = await psycopg.AsyncConnection.connect(_dsn(), autocommit=True)
    try:
        yield conn
    finally:
        await conn.close()


@pytest.fixture
async def make_tier(namespace: str) -> AsyncIterator[MakeTier]:
    """Builds and opens tiers (services DSN, the test's namespace unless given); closes them."""
    made: list[PostgresTier] = []

    async def make(dsn: str | None = None, *, open_it: bool = True, **kw: Any) -> PostgresTier:
        kw.setdefault("namespace", namespace)
        kw.setdefault("timeout_s", TIMEOUT_S)
        tier = PostgresTier(dsn or _dsn(), kw.pop("clock", None) or SystemClock(), **kw)
        made.append(tier)
        if open_it:
            await tier.open()
        return tier

    try:
        yield make
    finally:
        for tier in made:
            with contextlib.suppress(TierError):  # leave no rows in the shared database
                await tier.delete_prefix(b"")
            await tier.close()


async def _rows(admin: Admin, namespace: str) -> list[bytes]:
    cur = await admin.execute(
        "SELECT key FROM strata_entries WHERE namespace = %s ORDER BY key", (namespace,)
    )
    return [bytes(r[0]) for r in await cur.fetchall()]


async def _backend_pids(admin: Admin, app: str) -> list[int]:
    cur = await admin.execute(
        "SELECT pid FROM pg_stat_activity WHERE application_name = %s AND pid <> pg_backend_pid()",
        (app,),
    )
    return [int(r[0]) for r in await cur.fetchall()]


async def _eventually(call: Callable[[], Awaitable[bool]], bound_s: float) -> float:
    """Seconds until `call()` returns True without raising TierError (fails past bound_s)."""
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    while True:
        with contextlib.suppress(TierError):
            if await call():
                return loop.time() - t0
        assert loop.time() - t0 < bound_s, f"not recovered within {bound_s} s"
        await asyncio.sleep(0.05)


# -- schema ----------------------------------------------------------------------------------


@pytest.fixture
async def fresh_db(admin: Admin) -> AsyncIterator[str]:
    """The DSN of a new empty database on the services' server (dropped afterwards)."""
    dbname = "strata_t_" + uuid.uuid4().hex[:10]
    await admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(dbname)))
    try:
        yield make_conninfo(_dsn(), dbname=dbname)
    finally:
        await admin.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(dbname))
        )


async def test_migrations_are_recorded_and_idempotent_under_concurrency(
    make_tier: MakeTier, fresh_db: str
) -> None:
    """Four sidecars open against an empty database at once: one migrates, the others wait
    on the advisory lock and find the work done; opening again changes nothing."""
    tiers = await asyncio.gather(
        *(make_tier(fresh_db, namespace=f"n{i}", timeout_s=1.0) for i in range(4))
    )
    await tiers[0].open()  # already open: a no-op
    tiers.append(await make_tier(fresh_db, namespace="late"))  # finds everything recorded
    async with await psycopg.AsyncConnection.connect(fresh_db, autocommit=True) as conn:
        assert await pg_schema.migrate(conn, 5.0) == []  # nothing left to do
        cur = await conn.execute("SELECT version, applied_at FROM strata_schema_migrations")
        rows = await cur.fetchall()
        assert [r[0] for r in rows] == [pg_schema.LATEST_VERSION] and rows[0][1] is not None
        cur = await conn.execute(
            "SELECT indexname FROM pg_indexes WHERE tablename = 'strata_entries' ORDER BY indexname"
        )
        assert [r[0] for r in await cur.fetchall()] == [
            "strata_entries_expiry",
            "strata_entries_pkey",
            "strata_entries_tags",
        ]
    for i, tier in enumerate(tiers):
        assert await tier.set(b"k", entry(body=str(i).encode())) is SetStatus.STORED


async def test_a_schema_that_disappears_is_migrated_again(
    make_tier: MakeTier, fresh_db: str
) -> None:
    tier = await make_tier(fresh_db)
    await tier.set(b"k", entry())
    async with await psycopg.AsyncConnection.connect(fresh_db, autocommit=True) as conn:
        await conn.execute("DROP TABLE strata_entries, strata_schema_migrations")
    with pytest.raises(TierError, match="UndefinedTable"):
        await tier.get(b"k")
    assert await tier.get(b"k") is None  # the next call migrated again: an empty table
    assert await tier.set(b"k", entry()) is SetStatus.STORED


# -- data ------------------------------------------------------------------------------------


async def test_namespaces_are_isolated(make_tier: MakeTier, admin: Admin) -> None:
    ns_b = "b" + uuid.uuid4().hex[:8]
    a = await make_tier(namespace="a" + uuid.uuid4().hex[:8])
    b = await make_tier(namespace=ns_b)
    clock = SystemClock()
    await a.set(b"k:1", entry(tags=("t",)))
    await b.set(b"k:1", entry(tags=("t",), body=b"from b"))
    # Expires soon (but not before it is stored, even on a loaded machine).
    assert await b.set(b"k:2", entry(clock, ttl_ms=300)) is SetStatus.STORED
    assert (await a.get(b"k:1")) != (await b.get(b"k:1"))
    assert await a.delete_tag("t") == 1
    assert await a.delete_prefix(b"k:") == 0
    assert await a.delete(b"k:2") is False
    await asyncio.sleep(0.35)  # b's k:2 has expired; a's sweep must still leave it alone
    assert await a.sweep() == 0
    got = await b.get(b"k:1")
    assert got is not None and got.body == b"from b"
    assert await _rows(admin, ns_b) == [b"k:1", b"k:2"]


def test_prefix_successor() -> None:
    assert prefix_successor(b"ab") == b"ac"
    assert prefix_successor(b"a\xff") == b"b"
    assert prefix_successor(b"a\xfe\xff\xff") == b"a\xff"
    assert prefix_successor(b"\xff\xff") is None
    assert prefix_successor(b"") is None


async def test_prefix_delete_is_a_bytewise_range(
    make_tier: MakeTier, admin: Admin, namespace: str
) -> None:
    tier = await make_tier()
    keys = [b"a", b"a\xfe", b"a\xff", b"a\xff\x00", b"a\xff\xff\x01", b"b", b"b\x00",
            b"\xff", b"\xff\xff", b"\xff\xff\xff", b"%_\\"]  # fmt: skip
    for k in keys:
        await tier.set(k, entry())
    assert await tier.delete_prefix(b"a\xff") == 3
    assert await tier.delete_prefix(b"\xff\xff") == 2
    assert await tier.delete_prefix(b"%") == 1  # LIKE metacharacters mean nothing here
    assert await _rows(admin, namespace) == [b"a", b"a\xfe", b"b", b"b\x00", b"\xff"]
    assert await tier.delete_prefix(b"") == 5  # the empty prefix matches every key


async def test_prefix_and_tag_deletes_run_in_batches(make_tier: MakeTier) -> None:
    observer = RecordingObserver()
    tier = await make_tier(observer=observer)
    tier.batch_rows = 3
    for i in range(10):
        await tier.set(f"p:{i}".encode(), entry(tags=("big",) if i % 2 else ("big", "odd")))
    assert await tier.delete_tag("odd") == 5
    assert await tier.delete_prefix(b"p:") == 5
    assert ("evicted", "postgres", "explicit", 5) in observer.events


async def test_sweep_uses_the_tier_clock_and_deletes_only_expired_rows_in_batches(
    make_tier: MakeTier, admin: Admin, namespace: str
) -> None:
    clock = ManualClock()  # 2023: the database's now() would call everything expired
    observer = RecordingObserver()
    tier = await make_tier(clock=clock, observer=observer)
    tier.batch_rows = 3
    for i in range(10):
        await tier.set(f"short:{i}".encode(), entry(clock, ttl_ms=1_000))
    for i in range(4):
        await tier.set(f"long:{i}".encode(), entry(clock, ttl_ms=60_000))
    assert await tier.get(b"short:0") is not None  # by the tier's clock: still fresh
    clock.advance(1_000)  # expires_at reached: expired (expires_at > now is required)
    assert await tier.get(b"short:0") is None
    assert len(await _rows(admin, namespace)) == 14  # get does not delete

    tier.sweep_budget_s = 0.0  # one batch, then out of time: best effort
    assert await tier.sweep() == 3
    tier.sweep_budget_s = 1.0
    assert await tier.sweep() == 7  # three more batches, the last one short
    assert await tier.sweep() == 0
    assert await _rows(admin, namespace) == [f"long:{i}".encode() for i in range(4)]
    assert ("evicted", "postgres", "expired", 7) in observer.events
    snap = tier.snapshot()
    assert snap.entries == 4 and snap.bytes > 4 * 100
    assert await tier.set(b"late", entry(clock, ttl_ms=-1)) is SetStatus.NOT_ADMITTED
    assert tier.snapshot().admission_rejections == 1


async def test_keys_too_long_for_the_index_are_refused_without_io(
    make_tier: MakeTier, namespace: str
) -> None:
    tier = await make_tier()
    longest = os.urandom(MAX_INDEXED_BYTES - len(namespace))  # incompressible
    assert await tier.set(longest, entry()) is SetStatus.STORED
    assert await tier.get(longest) is not None
    too_long = longest + b"k"
    assert await tier.set(too_long, entry()) is SetStatus.TOO_LARGE
    assert await tier.get(too_long) is None
    assert await tier.delete(too_long) is False


async def test_corrupt_value_is_a_miss_purged_and_counted(
    make_tier: MakeTier, admin: Admin, namespace: str
) -> None:
    observer = RecordingObserver()
    tier = await make_tier(observer=observer)
    await tier.set(b"bad", entry())
    await admin.execute(
        "UPDATE strata_entries SET value = %s WHERE namespace = %s AND key = %s",
        (b"S1\x09garbage", namespace, b"bad"),
    )
    assert await tier.get(b"bad") is None
    assert await _rows(admin, namespace) == []
    assert observer.events.count(("evicted", "postgres", "corrupt", 1)) == 1
    assert tier.snapshot().misses == 1


# -- deadlines and failures ---------------------------------------------------------------------


async def test_statement_blocked_by_a_row_lock_fails_within_the_timeout(
    make_tier: MakeTier, admin: Admin, namespace: str
) -> None:
    tier = await make_tier()
    await tier.set(b"locked", entry())
    loop = asyncio.get_running_loop()
    async with admin.transaction():
        await admin.execute(
            "SELECT 1 FROM strata_entries WHERE namespace = %s AND key = %s FOR UPDATE",
            (namespace, b"locked"),
        )
        for op in (lambda: tier.set(b"locked", entry()), lambda: tier.delete(b"locked")):
            t0 = loop.time()
            with pytest.raises(TierError, match="QueryCanceled"):
                await op()
            assert TIMEOUT_S * 0.9 <= loop.time() - t0 < CALL_BOUND_S
        assert await tier.get(b"locked") is not None  # readers never wait on row locks
        assert await tier.set(b"free", entry()) is SetStatus.STORED


async def test_a_hung_backend_costs_one_deadline_then_the_tier_recovers(
    make_tier: MakeTier, admin: Admin
) -> None:
    """SIGSTOP the tier's only backend: no error, no answer (like a silent network). The call
    is abandoned at its deadline; once the backend runs again the tier answers again."""
    app = "strata-test-" + uuid.uuid4().hex[:8]
    tier = await make_tier(make_conninfo(_dsn(), application_name=app), min_size=1, max_size=1)
    await tier.set(b"k", entry())
    pids = await _backend_pids(admin, app)
    assert len(pids) == 1
    try:
        os.kill(pids[0], signal.SIGSTOP)
    except PermissionError:
        pytest.skip("cannot signal the server's processes (not root nor the postgres user)")
    loop = asyncio.get_running_loop()
    try:
        t0 = loop.time()
        with pytest.raises(TierError, match="no answer"):
            await tier.get(b"k")
        assert loop.time() - t0 < CALL_BOUND_S
        t0 = loop.time()
        with pytest.raises(TierError):  # the only connection is still busy being cancelled
            await tier.get(b"k")
        assert loop.time() - t0 < CALL_BOUND_S
    finally:
        os.kill(pids[0], signal.SIGCONT)

    async def answers() -> bool:
        return await tier.get(b"k") is not None

    await _eventually(answers, RECOVERY_BOUND_S)


async def test_terminated_backends_are_replaced_without_a_new_tier(
    make_tier: MakeTier, admin: Admin
) -> None:
    app = "strata-test-" + uuid.uuid4().hex[:8]
    tier = await make_tier(make_conninfo(_dsn(), application_name=app), max_size=4)
    await tier.set(b"k", entry())
    await asyncio.gather(*(tier.get(b"k") for _ in range(16)))  # grow the pool
    loop = asyncio.get_running_loop()
    outcomes: list[tuple[float, str]] = []
    stop = asyncio.Event()

    async def traffic() -> None:
        while not stop.is_set():
            try:
                got = await tier.get(b"k")
                outcomes.append((loop.time(), "hit" if got is not None else "miss"))
            except TierError:
                outcomes.append((loop.time(), "error"))
            await asyncio.sleep(0.01)

    runners = [asyncio.create_task(traffic()) for _ in range(3)]
    try:
        await asyncio.sleep(0.2)
        pids = await _backend_pids(admin, app)
        assert pids
        cur = await admin.execute(
            "SELECT pg_terminate_backend(pid) FROM unnest(%s::int[]) AS pid", (pids,)
        )
        assert [r[0] for r in await cur.fetchall()] == [True] * len(pids)
        killed_at = loop.time()

        async def recovered() -> bool:
            return any(t > killed_at + 0.05 and o == "hit" for t, o in outcomes)

        await _eventually(recovered, RECOVERY_BOUND_S)
        await asyncio.sleep(0.3)
    finally:
        stop.set()
        await asyncio.gather(*runners)
    tail = [o for t, o in outcomes if t > outcomes[-1][0] - 0.2]
    assert tail and set(tail) == {"hit"}
    assert not set(await _backend_pids(admin, app)) & set(pids)  # all replaced


async def test_unreachable_server_keeps_the_password_out_of_errors_and_logs(
    caplog: pytest.LogCaptureFixture,
) -> None:
    tier = PostgresTier(
        f"postgresql://postgres:s3cr3t-pw@127.0.0.1:{free_port()}/strata",
        SystemClock(),
        timeout_s=TIMEOUT_S,
    )
    try:
        with pytest.raises(TierError) as info:
            await tier.open()
        assert "s3cr3t" not in str(info.value)
        with pytest.raises(TierError, match="unavailable"):  # within the retry interval
            await tier.get(b"k")
    finally:
        await tier.close()
    assert caplog.records and not any("s3cr3t" in r.getMessage() for r in caplog.records)


# -- a private cluster that stops and starts ----------------------------------------------------


class Cluster:
    """A throwaway PostgreSQL cluster in a temp dir, run as the postgres user when root."""

    def __init__(self, root: Path, port: int) -> None:
        self.root, self.port = root, port
        self.dsn = f"postgresql://postgres@127.0.0.1:{port}/postgres"

    def _pg(self, *argv: str) -> None:
        log = self.root / "postgres.log"
        rc = services.pg_run([*argv], self.root, log, timeout=60)
        assert rc == 0, f"{argv[0]} failed:\n{services.log_tail(log)}"

    def initdb(self) -> None:
        sock = self.root / "sock"
        sock.mkdir()
        if os.geteuid() == 0:
            shutil.chown(self.root, "postgres", "postgres")
            shutil.chown(sock, "postgres", "postgres")
        self._pg(str(services.pg_bin() / "initdb"), "-D", str(self.root / "data"),
                 "-U", "postgres", "--auth=trust", "-E", "UTF8", "--locale=C.UTF-8")  # fmt: skip

    async def start(self) -> None:
        opts = (f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.root / 'sock'}"
                " -c fsync=off -c full_page_writes=off")  # fmt: skip
        pg_ctl = str(services.pg_bin() / "pg_ctl")
        await asyncio.to_thread(self._pg, pg_ctl, "-D", str(self.root / "data"), "-w", "-o", opts,
                                "start")  # fmt: skip

    async def stop(self, mode: str = "immediate") -> None:
        pg_ctl = str(services.pg_bin() / "pg_ctl")
        await asyncio.to_thread(self._pg, pg_ctl, "-D", str(self.root / "data"), "-m", mode,
                                "-w", "stop")  # fmt: skip

    def running(self) -> bool:
        return (self.root / "data" / "postmaster.pid").exists()


@pytest.fixture
async def cluster() -> AsyncIterator[Cluster]:
    try:
        services.pg_bin()
    except services.ServiceError as exc:
        pytest.skip(str(exc))
    root = Path(tempfile.mkdtemp(prefix="strata-pgtier-", dir="/tmp"))
    c = Cluster(root, free_port())
    try:
        await asyncio.to_thread(c.initdb)
        yield c
    finally:
        if c.running():
            with contextlib.suppress(AssertionError, OSError, subprocess.SubprocessError):
                await c.stop()
        shutil.rmtree(root, ignore_errors=True)


async def test_server_absent_at_open_then_stopping_and_starting(
    make_tier: MakeTier, cluster: Cluster
) -> None:
    """Absent at open: TierError, then the tier connects and migrates by itself once the
    server is up. Stopped (-m immediate) mid-run: calls fail fast; started again: calls work
    again with the same tier, and the data survived."""
    tier = await make_tier(cluster.dsn, open_it=False)
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    with pytest.raises(TierError):
        await tier.open()
    with pytest.raises(TierError):
        await tier.get(b"k")
    assert loop.time() - t0 < 2 * CALL_BOUND_S

    await cluster.start()
    stored = entry()

    async def stores() -> bool:
        return await tier.set(b"k", stored) is SetStatus.STORED

    await _eventually(stores, RECOVERY_BOUND_S)
    async with await psycopg.AsyncConnection.connect(cluster.dsn) as conn:
        cur = await conn.execute("SELECT max(version) FROM strata_schema_migrations")
        assert (await cur.fetchone()) == (pg_schema.LATEST_VERSION,)

    await cluster.stop("immediate")
    for _ in range(5):
        t0 = loop.time()
        with pytest.raises(TierError):
            await tier.get(b"k")
        assert loop.time() - t0 < CALL_BOUND_S

    await cluster.start()

    async def answers() -> bool:
        return await tier.get(b"k") == stored

    await _eventually(answers, RECOVERY_BOUND_S)
