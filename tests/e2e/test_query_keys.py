"""Issue 9's lossy keys, through kongsim, the real plugin server and a real sidecar.

Requests are written as raw request lines, so the query reaches the gateway exactly as
given. The ``/counter`` route ignores ``utm_*``; its upstream counts the requests it
answers, so a request served from another query's entry shows up as a Hit with that
query's count.

kongsim (aiohttp) answers 400 to raw non-ASCII bytes in the request line, which nginx
accepts; that case is covered at the handler level in tests/unit/plugin.
"""

from __future__ import annotations

import asyncio
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import pytest_asyncio

from tests.support.sidecar import example_stack
from tools.stack import Stack

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="module")]


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def stack() -> AsyncIterator[Stack]:
    with tempfile.TemporaryDirectory(prefix="strata-e2e-", dir="/tmp") as d:
        async with example_stack(Path(d)) as s:
            yield s


async def send(stack: Stack, target: str) -> tuple[int, str | None, str | None]:
    """(status, X-Cache-Status, X-Upstream-Hits) of ``GET <target>`` sent byte for byte."""
    url = urlsplit(stack.base_url)
    assert url.hostname is not None and url.port is not None
    reader, writer = await asyncio.open_connection(url.hostname, url.port)
    try:
        writer.write(
            f"GET {target} HTTP/1.1\r\nHost: {url.netloc}\r\nConnection: close\r\n\r\n".encode()
        )
        await writer.drain()
        data = await asyncio.wait_for(reader.read(), 10)
    finally:
        writer.close()
    head = data.split(b"\r\n\r\n", 1)[0].decode("latin-1").split("\r\n")
    fields = dict(line.split(":", 1) for line in head[1:])
    headers = {k.strip().lower(): v.strip() for k, v in fields.items()}
    cache = headers.get("x-cache-status")
    if cache in ("Miss", "Refresh"):
        await asyncio.sleep(0.05)  # the store runs after the response went out
    return int(head[0].split()[1]), cache, headers.get("x-upstream-hits")


async def statuses(stack: Stack, test: str, *queries: str) -> list[str | None]:
    out = []
    for query in queries:
        status, cache, _ = await send(stack, f"/counter?t={test}&{query}")
        assert status == 200, query
        out.append(cache)
    return out


async def test_invalid_utf8_escapes_get_their_own_entries(stack: Stack) -> None:
    """Issue 9: ?q=%ff was served ?q=%fe's entry (both decoded to U+FFFD)."""
    assert await statuses(stack, "utf8", "q=%ff", "q=%fe", "q=%ff") == ["Miss", "Miss", "Hit"]


async def test_repeated_parameters_are_not_reordered(stack: Stack) -> None:
    """Issue 9: ?q=evil&q=good was served ?q=good&q=evil's entry."""
    _, first, hits = await send(stack, "/counter?t=order&q=evil&q=good")
    _, second, other = await send(stack, "/counter?t=order&q=good&q=evil")
    assert (first, second) == ("Miss", "Miss") and hits != other
    assert await statuses(stack, "order", "q=evil&q=good") == ["Hit"]


async def test_a_parameter_hidden_behind_an_ignored_one_is_keyed(stack: Stack) -> None:
    """Issue 9: ``utm_source=x;admin=1`` was served the plain URL's entry."""
    got = await statuses(
        stack,
        "semi",
        "",
        "utm_source=x;admin=1",
        "utm_source=y;admin=1",  # the ignored part still does not matter
        "utm_source=y",  # nor does a plain ignored parameter
    )
    assert got == ["Miss", "Miss", "Hit", "Hit"]


async def test_lossless_normalisation(stack: Stack) -> None:
    assert await statuses(stack, "norm", "a=%2f", "a=%2F", "a=%7E", "a=~") == [
        "Miss",
        "Hit",
        "Miss",
        "Hit",
    ]
    assert await statuses(stack, "plus", "a=x+y", "a=x%20y", "a", "a=") == ["Miss"] * 4
    assert await statuses(stack, "empty", "a=1&b=2", "a=1&&b=2", "b=2&a=1") == [
        "Miss",
        "Hit",
        "Hit",
    ]
