"""Fixtures shared by the integration tests."""

from __future__ import annotations

import subprocess
from collections.abc import AsyncIterator, Iterator

import pytest
import redis.asyncio

from tests.integration.servers import service


@pytest.fixture
def processes() -> Iterator[list[subprocess.Popen[bytes]]]:
    """Servers a test started; each is killed (by its own handle) at the end."""
    procs: list[subprocess.Popen[bytes]] = []
    try:
        yield procs
    finally:
        for p in procs:
            p.kill()
            p.wait(10)


@pytest.fixture
async def raw() -> AsyncIterator[redis.asyncio.Redis]:
    """A plain client of the services Redis, to look behind the sidecar's back."""
    client = redis.asyncio.Redis.from_url(service("STRATA_TEST_REDIS_URL"))
    try:
        yield client
    finally:
        await client.aclose()
