"""Opt-ins end to end: ``cache_set_cookie: true`` (a response that sets a cookie may be
stored; its ``Set-Cookie`` lines never are) and ``content_type: ["*/*"]`` (RFC 9110
§12.5.1: the whole media range, whatever the response's ``Content-Type`` looks like)."""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest

from tests.e2e.http_semantics.conftest import BASE_OVERRIDES, Answer, fetch
from tests.support.scripted_origin import Reply, ScriptedOrigin
from tools.stack import Stack

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="module")]


@pytest.fixture(scope="module")
def plugin_overrides() -> dict[str, Any]:
    return {**BASE_OVERRIDES, "cache_set_cookie": True, "content_type": ["*/*"]}


async def twice(
    http: aiohttp.ClientSession, stack: Stack, origin: ScriptedOrigin, path: str, *reply: Reply
) -> tuple[Answer, Answer]:
    origin.script(path, *reply)
    return await fetch(http, stack, path), await fetch(http, stack, path)


async def test_a_response_with_set_cookie_is_stored_without_its_cookies(
    stack: Stack, origin: ScriptedOrigin, http: aiohttp.ClientSession
) -> None:
    path = "/products/opt-in-set-cookie"
    headers = [
        ("Content-Type", "application/json"),
        ("Cache-Control", "max-age=600"),
        ("Set-Cookie", "sid=1; Path=/"),
        ("Set-Cookie", "theme=dark"),
        ("X-Kept", "yes"),
    ]
    first, second = await twice(http, stack, origin, path, Reply(200, headers, b'{"a":1}'))
    assert (first.cache, second.cache) == ("Miss", "Hit")
    assert origin.hits(path) == 1
    # the client whose request went to the origin gets its cookies; nobody else does
    assert first.all("set-cookie") == ["sid=1; Path=/", "theme=dark"]
    assert second.all("set-cookie") == []
    assert second.all("x-kept") == ["yes"] and second.body == b'{"a":1}'


async def test_set_cookie_opt_in_keeps_the_other_rules(
    stack: Stack, origin: ScriptedOrigin, http: aiohttp.ClientSession
) -> None:
    path = "/products/opt-in-set-cookie-private"
    headers = [("Cache-Control", "private, max-age=600"), ("Set-Cookie", "sid=1")]
    _, second = await twice(http, stack, origin, path, Reply(200, headers, b"{}"))
    assert second.cache == "Bypass" and "private" in second.headers["cache-status"]
    assert origin.hits(path) == 2


@pytest.mark.parametrize(
    ("name", "content_type", "body"),
    [
        ("png", [("Content-Type", "image/png")], b"\x89PNG"),
        ("malformed", [("Content-Type", "this is not a media type")], b"x"),
        ("repeated", [("Content-Type", "text/plain"), ("Content-Type", "text/html")], b"x"),
        ("missing", [], b""),
    ],
)
async def test_the_whole_media_range_matches_any_content_type(
    stack: Stack,
    origin: ScriptedOrigin,
    http: aiohttp.ClientSession,
    name: str,
    content_type: list[tuple[str, str]],
    body: bytes,
) -> None:
    path = f"/products/opt-in-any-type-{name}"
    headers = [*content_type, ("Cache-Control", "max-age=600")]
    first, second = await twice(http, stack, origin, path, Reply(200, headers, body))
    assert (first.cache, second.cache) == ("Miss", "Hit")
    assert origin.hits(path) == 1
    assert second.body == body
    assert second.all("content-type") == first.all("content-type")
