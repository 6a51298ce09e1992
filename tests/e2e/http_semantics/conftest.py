"""Fixtures for the HTTP-semantics end-to-end tests: one scripted origin, sidecar and
kongsim per test module (`stack`, `origin`), and `fetch`, a GET that returns what the
client saw.

The stack runs the repository's kong.yml with the route windows set to 0 (so that only the
response's own directives count) unless a module overrides `plugin_overrides`. Every test
scripts its own path under ``/products/`` (a route with ``cache_control: true``) so that
tests sharing a module's stack do not see each other's entries.
"""

from __future__ import annotations

import asyncio
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio

from tests.support.scripted_origin import ScriptedOrigin, scripted_stack
from tools.stack import Stack

#: The plugin settings every module starts from (a module may define its own fixture).
BASE_OVERRIDES: dict[str, Any] = {"stale_while_revalidate": 0, "stale_if_error": 0}


@dataclass
class Answer:
    """What the client got: status, headers (last value per lower-cased name), every header
    line in order, body."""

    status: int
    headers: dict[str, str]
    lines: list[tuple[str, str]]
    body: bytes

    @property
    def cache(self) -> str:
        return self.headers.get("x-cache-status", "")

    def all(self, name: str) -> list[str]:
        return [v for k, v in self.lines if k == name.lower()]


@pytest.fixture(scope="module")
def plugin_overrides() -> dict[str, Any]:
    return dict(BASE_OVERRIDES)


@pytest.fixture(scope="module")
def origin() -> ScriptedOrigin:
    return ScriptedOrigin()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def stack(origin: ScriptedOrigin, plugin_overrides: dict[str, Any]) -> AsyncIterator[Stack]:
    with tempfile.TemporaryDirectory(prefix="strata-http-", dir="/tmp") as d:
        async with scripted_stack(Path(d), origin, **plugin_overrides) as s:
            yield s


@pytest_asyncio.fixture(loop_scope="module")
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=15)) as session:
        yield session


async def fetch(
    http: aiohttp.ClientSession, stack: Stack, path: str, method: str = "GET", **kw: Any
) -> Answer:
    """Send one request through kongsim; after a response that may have been stored (Miss,
    Refresh, Stale) give the plugin's background store a moment."""
    async with http.request(method, stack.base_url + path, **kw) as resp:
        body = await resp.read()
        lines = [(k.decode("latin-1").lower(), v.decode("latin-1")) for k, v in resp.raw_headers]
        answer = Answer(resp.status, dict(lines), lines, body)
    if answer.cache in ("Miss", "Refresh", "Stale", "Revalidated"):
        await asyncio.sleep(0.1)
    return answer
