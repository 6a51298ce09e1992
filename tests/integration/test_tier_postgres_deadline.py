"""A caller that gives up on the PostgreSQL tier before the tier's own deadline (a lookup
budget, a cancelled request) leaves its statement to finish in the background, on the same
pooled connection. Before, the cancellation reached psycopg, which sent the server a cancel
request (one more connection, and a forked backend, per late answer: a storm when many
lookups miss their budget at once) and the statement never finished."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import psycopg
import pytest

from sidecar.core.clock import SystemClock
from sidecar.tiers.postgres import PostgresTier
from tools import services

pytestmark = pytest.mark.integration

Conn = psycopg.AsyncConnection[tuple[Any, ...]]


async def backend_pid(conn: Conn) -> int:
    cur = await conn.execute("SELECT pg_backend_pid()")
    row = await cur.fetchone()
    assert row is not None
    return int(row[0])


async def slow_then_mark(conn: Conn) -> None:
    await conn.execute("SELECT pg_sleep(0.05)")
    await conn.execute("SELECT set_config('strata.test_mark', 'finished', false)")


async def mark(conn: Conn) -> tuple[int, str]:
    cur = await conn.execute("SELECT current_setting('strata.test_mark', true)")
    row = await cur.fetchone()
    return await backend_pid(conn), str(row[0] if row else "")


@pytest.mark.timeout(30)
async def test_a_caller_that_gives_up_early_leaves_the_connection_in_the_pool() -> None:
    dsn = services.load_env().get("STRATA_TEST_POSTGRES_DSN")
    if not dsn:
        pytest.fail("STRATA_TEST_POSTGRES_DSN missing: run `python -m tools.services up` first")
    tier = PostgresTier(
        dsn, SystemClock(), namespace="d" + uuid.uuid4().hex[:8], timeout_s=1.0, max_size=1
    )
    try:
        await tier.open()
        before = await tier._call("pid", backend_pid)
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(tier._call("slow", slow_then_mark), 0.01)  # the caller leaves
        # the one pooled connection comes back once the statement has finished
        assert await asyncio.wait_for(tier._call("mark", mark), 5) == (before, "finished")
    finally:
        await tier.close()
