"""Byte ranges answered from stored responses, end to end (RFC 9110 §14, §13.1.5,
§13.2.2, §15.3.7, §15.5.17): kongsim, the real plugin server and a real sidecar."""

from __future__ import annotations

import asyncio
import uuid

import aiohttp
import pytest

from tests.e2e.http_semantics.conftest import fetch
from tests.support.scripted_origin import Reply, ScriptedOrigin
from tools.stack import Stack

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="module")]

BODY = b"0123456789abcdefghij"  # 20 bytes
LAST_MODIFIED = "Tue, 01 Jan 2030 00:00:00 GMT"
ETAG = '"r1"'


def product() -> str:
    return f"/products/range-{uuid.uuid4().hex[:10]}"


def storable(max_age: int = 60, *extra: tuple[str, str]) -> Reply:
    return Reply(
        200,
        [
            ("Content-Type", "text/plain"),
            ("Cache-Control", f"max-age={max_age}"),
            ("ETag", ETAG),
            ("X-Origin", "yes"),
            *extra,
        ],
        BODY,
    )


async def stored(http: aiohttp.ClientSession, stack: Stack, origin: ScriptedOrigin) -> str:
    """A path whose 200 is now stored (a Miss, then a Hit)."""
    path = product()
    origin.script(path, storable())
    assert (await fetch(http, stack, path)).cache == "Miss"
    assert (await fetch(http, stack, path)).cache == "Hit"
    return path


@pytest.mark.parametrize(
    ("value", "body", "content_range"),
    [
        ("bytes=0-3", BODY[:4], "bytes 0-3/20"),
        ("bytes=15-", BODY[15:], "bytes 15-19/20"),
        ("bytes=-5", BODY[-5:], "bytes 15-19/20"),
        ("bytes=18-99", BODY[18:], "bytes 18-19/20"),  # clamped to the end
    ],
)
async def test_a_single_range_is_a_206_hit(
    stack: Stack,
    origin: ScriptedOrigin,
    http: aiohttp.ClientSession,
    value: str,
    body: bytes,
    content_range: str,
) -> None:
    path = await stored(http, stack, origin)
    answer = await fetch(http, stack, path, headers={"Range": value})
    assert (answer.status, answer.body) == (206, body)
    h = answer.headers
    assert h["content-range"] == content_range
    assert h["content-length"] == str(len(body))
    assert h["accept-ranges"] == "bytes"
    assert answer.cache == "Hit"
    assert h["cache-status"].startswith("strata; hit")
    # the fields the 200 has (RFC 9110 §15.3.7)
    assert (h["content-type"], h["etag"], h["x-origin"]) == ("text/plain", ETAG, "yes")
    assert h["cache-control"] == "max-age=60"
    assert origin.hits(path) == 1


async def test_an_unsatisfiable_range_is_a_416_with_the_length(
    stack: Stack, origin: ScriptedOrigin, http: aiohttp.ClientSession
) -> None:
    path = await stored(http, stack, origin)
    answer = await fetch(http, stack, path, headers={"Range": "bytes=20-"})
    assert (answer.status, answer.body) == (416, b"")
    assert answer.headers["content-range"] == "bytes */20"
    assert answer.headers["content-length"] == "0"
    assert answer.cache == "Hit"
    assert "cache-control" not in answer.headers  # no downstream cache keeps a 416 for it
    assert origin.hits(path) == 1


@pytest.mark.parametrize(
    "headers",
    [
        {"Range": "bytes=0-1,5-6"},  # several ranges: the whole 200 (no multipart)
        {"Range": "bytes=9-3"},  # invalid
        {"Range": "pages=1-2"},  # another unit
        {"Range": "bytes=0-1", "If-Range": '"other"'},
        {"Range": "bytes=0-1", "If-Range": 'W/"r1"'},  # weak: never matches
    ],
)
async def test_a_range_to_ignore_gets_the_whole_stored_200(
    stack: Stack, origin: ScriptedOrigin, http: aiohttp.ClientSession, headers: dict[str, str]
) -> None:
    path = await stored(http, stack, origin)
    answer = await fetch(http, stack, path, headers=headers)
    assert (answer.status, answer.body, answer.cache) == (200, BODY, "Hit")
    assert "content-range" not in answer.headers
    assert origin.hits(path) == 1


async def test_if_range_with_the_stored_etag_or_last_modified_applies_the_range(
    stack: Stack, origin: ScriptedOrigin, http: aiohttp.ClientSession
) -> None:
    path = product()
    origin.script(path, storable(60, ("Last-Modified", "Mon, 01 Jan 2024 00:00:00 GMT")))
    assert (await fetch(http, stack, path)).cache == "Miss"
    for validator in (ETAG, "Mon, 01 Jan 2024 00:00:00 GMT"):
        answer = await fetch(
            http, stack, path, headers={"Range": "bytes=1-2", "If-Range": validator}
        )
        assert (answer.status, answer.body) == (206, BODY[1:3])
    changed = await fetch(
        http, stack, path, headers={"Range": "bytes=1-2", "If-Range": LAST_MODIFIED}
    )
    assert (changed.status, changed.body) == (200, BODY)
    assert origin.hits(path) == 1


async def test_a_matching_conditional_wins_over_the_range(
    stack: Stack, origin: ScriptedOrigin, http: aiohttp.ClientSession
) -> None:
    path = await stored(http, stack, origin)
    answer = await fetch(http, stack, path, headers={"Range": "bytes=0-1", "If-None-Match": ETAG})
    assert (answer.status, answer.body, answer.cache) == (304, b"", "Hit")
    assert "content-range" not in answer.headers


async def test_a_head_ignores_the_range(
    stack: Stack, origin: ScriptedOrigin, http: aiohttp.ClientSession
) -> None:
    path = await stored(http, stack, origin)
    answer = await fetch(http, stack, path, "HEAD", headers={"Range": "bytes=0-1"})
    assert (answer.status, answer.cache) == (200, "Hit")
    assert answer.headers["content-length"] == str(len(BODY))


async def test_a_range_miss_passes_through_and_stores_nothing(
    stack: Stack, origin: ScriptedOrigin, http: aiohttp.ClientSession
) -> None:
    """The origin's 206 reaches the client and is never stored; the next plain GET is a
    miss that stores the complete 200."""
    path = product()
    partial = Reply(
        206,
        [
            ("Content-Type", "text/plain"),
            ("Cache-Control", "max-age=60"),
            ("Content-Range", "bytes 0-3/20"),
        ],
        BODY[:4],
        when=lambda request: "Range" in request.headers,
    )
    origin.script(path, partial, storable())
    first = await fetch(http, stack, path, headers={"Range": "bytes=0-3"})
    assert (first.status, first.body, first.cache) == (206, BODY[:4], "Bypass")
    assert first.headers["cache-status"] == "strata; fwd=bypass; detail=range"
    assert origin.requests(path)[0].header("Range") == "bytes=0-3"  # sent unchanged
    await asyncio.sleep(0.2)
    plain = await fetch(http, stack, path)
    assert (plain.status, plain.body, plain.cache) == (200, BODY, "Miss")
    after = await fetch(http, stack, path, headers={"Range": "bytes=0-3"})
    assert (after.status, after.body, after.cache) == (206, BODY[:4], "Hit")
    assert origin.hits(path) == 2


async def test_after_a_304_revalidation_a_range_is_answered_from_the_refreshed_entry(
    stack: Stack, origin: ScriptedOrigin, http: aiohttp.ClientSession
) -> None:
    path = product()
    not_modified = Reply(
        304,
        [("Cache-Control", "max-age=60"), ("ETag", ETAG)],
        when=lambda request: request.headers.get("If-None-Match") == ETAG,
    )
    origin.script(path, not_modified, storable(max_age=1))
    assert (await fetch(http, stack, path)).cache == "Miss"
    await asyncio.sleep(1.6)
    answer = await fetch(http, stack, path, headers={"Range": "bytes=2-4"})
    assert (answer.status, answer.body) == (206, BODY[2:5])
    assert answer.headers["content-range"] == "bytes 2-4/20"
    assert answer.cache == "Refresh"
    assert "detail=revalidated" in answer.headers["cache-status"]
    seen = origin.requests(path)[-1]
    assert seen.header("If-None-Match") == ETAG and seen.header("Range") == "bytes=2-4"
    assert answer.headers["cache-control"] == "max-age=60"  # the refreshed entry's
    again = await fetch(http, stack, path, headers={"Range": "bytes=0-0"})
    assert (again.status, again.body, again.cache) == (206, BODY[:1], "Hit")
    assert origin.hits(path) == 2
