"""Fixtures of the cluster tests: the shared services must be up (`make services-up`; a
failure, not a skip, says so), and each test module starts the clusters it needs."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest
import pytest_asyncio

from tools.cluster import ServicesDownError, shared_settings


@pytest.fixture(scope="session")
def services_up() -> None:
    try:
        shared_settings()
    except ServicesDownError as exc:
        pytest.fail(str(exc))


@pytest_asyncio.fixture(loop_scope="module")
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    timeout = aiohttp.ClientTimeout(total=20)
    connector = aiohttp.TCPConnector(limit=64)
    async with aiohttp.ClientSession(timeout=timeout, connector=connector) as session:
        yield session
