"""Revalidation end to end (RFC 9111 §4.3, §3.2, §4.2.4, §5.2.2): the keep window, the
conditional request the cache sends, the 304 merge, responses that may never be served
stale, and a client's own If-Modified-Since answered from the cache.

The route's stale windows are 1 s each here (`plugin_overrides`), so that "served stale
under the route's window" is something a response could wrongly get; entries with
``max-age=1`` are past their freshness and windows after ~2 s. Each test scripts its own
path; a 304 is scripted to answer only the conditional request the test expects, so a
wrong (or missing) validator gets a full 200 instead and the test fails.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from kong_plugin.http_date import format_http_date
from tests.e2e.http_semantics.conftest import BASE_OVERRIDES, Answer, fetch
from tests.support.scripted_origin import Reply, ScriptedOrigin
from tools.stack import Stack

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="module")]

TEXT = ("Content-Type", "text/plain")
#: Past freshness (1 s) and both route windows (1 s): only revalidation may use the entry.
PAST_WINDOWS_S = 2.3
#: Past freshness (1 s) but within the route windows (1 s).
WITHIN_WINDOWS_S = 1.3
REVALIDATED = "fwd=stale; fwd-status=304; detail=revalidated"


@pytest.fixture(scope="module")
def plugin_overrides() -> dict[str, Any]:
    return {**BASE_OVERRIDES, "stale_while_revalidate": 1, "stale_if_error": 1}


def has(name: str, value: str) -> Callable[[web.Request], bool]:
    """A `Reply.when`: the request carries header `name` with exactly `value`."""
    return lambda request: request.headers.get(name) == value


def not_modified(name: str, value: str, *headers: tuple[str, str]) -> Reply:
    """A 304 that answers only a request with `name: value`."""
    return Reply(304, headers, when=has(name, value))


async def together(http: aiohttp.ClientSession, stack: Stack, path: str) -> list[Answer]:
    """Two requests for `path` at once: one of them cannot hold the fill lease."""
    return list(await asyncio.gather(fetch(http, stack, path), fetch(http, stack, path)))


# -- 1. the keep window (§4.3) ------------------------------------------------------------


async def test_a_kept_entry_is_revalidated_with_its_etag(
    stack: Stack, origin: ScriptedOrigin, http: aiohttp.ClientSession
) -> None:
    path = "/products/c1-keep-etag"
    origin.script(
        path,
        Reply(200, [TEXT, ("Cache-Control", "max-age=1"), ("ETag", '"k1"')], b"kept body"),
        not_modified("If-None-Match", '"k1"', ("ETag", '"k1"')),
    )
    first = await fetch(http, stack, path)
    assert first.cache == "Miss" and "stored" in first.headers["cache-status"]
    await asyncio.sleep(PAST_WINDOWS_S)  # without a keep window the entry would be gone
    refreshed = await fetch(http, stack, path)
    assert (refreshed.status, refreshed.body) == (200, b"kept body")
    assert refreshed.cache == "Refresh"
    assert REVALIDATED in refreshed.headers["cache-status"]
    assert origin.requests(path)[1].header("If-None-Match") == '"k1"'
    again = await fetch(http, stack, path)
    assert (again.cache, again.body) == ("Hit", b"kept body")
    assert origin.hits(path) == 2


async def test_a_kept_entry_is_revalidated_with_its_last_modified(
    stack: Stack, origin: ScriptedOrigin, http: aiohttp.ClientSession
) -> None:
    path = "/products/c1-keep-lm"
    lm = format_http_date(time.time() - 3600)
    origin.script(
        path,
        Reply(200, [TEXT, ("Cache-Control", "max-age=1"), ("Last-Modified", lm)], b"lm body"),
        not_modified("If-Modified-Since", lm),
    )
    assert (await fetch(http, stack, path)).cache == "Miss"
    await asyncio.sleep(PAST_WINDOWS_S)
    refreshed = await fetch(http, stack, path)
    assert (refreshed.status, refreshed.body, refreshed.cache) == (200, b"lm body", "Refresh")
    assert REVALIDATED in refreshed.headers["cache-status"]
    seen = origin.requests(path)[1]
    assert (seen.header("If-Modified-Since"), seen.header("If-None-Match")) == (lm, None)
    assert (await fetch(http, stack, path)).cache == "Hit"


async def test_a_kept_entry_is_not_served_under_max_stale(
    stack: Stack, origin: ScriptedOrigin, http: aiohttp.ClientSession
) -> None:
    path = "/products/c1-keep-max-stale"
    origin.script(
        path,
        Reply(200, [TEXT, ("Cache-Control", "max-age=1"), ("ETag", '"ms"')], b"x"),
        not_modified("If-None-Match", '"ms"'),
    )
    await fetch(http, stack, path)
    await asyncio.sleep(PAST_WINDOWS_S)
    answer = await fetch(http, stack, path, headers={"Cache-Control": "max-stale=3600"})
    assert answer.cache == "Refresh" and REVALIDATED in answer.headers["cache-status"]
    assert origin.hits(path) == 2


# -- 2. the conditional request (§4.3.1; RFC 9110 §8.8.3, §13.1) -------------------------


@pytest.mark.parametrize(
    ("name", "stored", "sent"),
    [("unquoted", "abc", '"abc"'), ("weak", 'W/"w1"', 'W/"w1"'), ("strong", '"s1"', '"s1"')],
)
async def test_the_stored_etag_is_sent_as_a_valid_entity_tag(
    stack: Stack,
    origin: ScriptedOrigin,
    http: aiohttp.ClientSession,
    name: str,
    stored: str,
    sent: str,
) -> None:
    path = f"/products/c1-etag-{name}"
    origin.script(
        path,
        Reply(200, [TEXT, ("Cache-Control", "max-age=1"), ("ETag", stored)], b"tagged"),
        not_modified("If-None-Match", sent, ("ETag", stored)),
    )
    await fetch(http, stack, path)
    await asyncio.sleep(PAST_WINDOWS_S)
    answer = await fetch(http, stack, path)
    assert answer.cache == "Refresh" and REVALIDATED in answer.headers["cache-status"]
    assert origin.requests(path)[1].header("If-None-Match") == sent


async def test_an_etag_that_is_no_entity_tag_is_not_sent_the_date_is(
    stack: Stack, origin: ScriptedOrigin, http: aiohttp.ClientSession
) -> None:
    path = "/products/c1-etag-invalid"
    date = format_http_date(time.time())
    headers = [TEXT, ("Cache-Control", "max-age=1"), ("ETag", '"a"b"'), ("Date", date)]
    origin.script(path, Reply(200, headers, b"odd"), not_modified("If-Modified-Since", date))
    await fetch(http, stack, path)
    await asyncio.sleep(PAST_WINDOWS_S)
    answer = await fetch(http, stack, path)
    assert answer.cache == "Refresh"
    seen = origin.requests(path)[1]
    assert (seen.header("If-None-Match"), seen.header("If-Modified-Since")) == (None, date)


async def test_the_clients_validators_are_replaced_by_the_entrys(
    stack: Stack, origin: ScriptedOrigin, http: aiohttp.ClientSession
) -> None:
    path = "/products/c1-client-validators"
    origin.script(
        path,
        Reply(200, [TEXT, ("Cache-Control", "max-age=1"), ("ETag", '"e1"')], b"entry body"),
        not_modified("If-None-Match", '"e1"', ("ETag", '"e1"')),
    )
    await fetch(http, stack, path)
    await asyncio.sleep(PAST_WINDOWS_S)
    client = {"If-None-Match": '"client"', "If-Modified-Since": format_http_date(time.time())}
    answer = await fetch(http, stack, path, headers=client)
    seen = origin.requests(path)[1]
    assert seen.header("If-None-Match") == '"e1"'
    assert seen.header("If-Modified-Since") is None  # the entry has no date to validate
    # the client's own tag does not match the entry: the full stored response
    assert (answer.status, answer.body, answer.cache) == (200, b"entry body", "Refresh")
    matching = await fetch(http, stack, path, headers={"If-None-Match": '"e1"'})
    assert (matching.status, matching.body, matching.cache) == (304, b"", "Hit")


# -- 3. the 304 (§3.2, §4.3.4) ------------------------------------------------------------


async def test_a_304_updates_the_stored_fields_and_renews_freshness(
    stack: Stack, origin: ScriptedOrigin, http: aiohttp.ClientSession
) -> None:
    path = "/products/c1-merge"
    body = b"the stored body"
    origin.script(
        path,
        Reply(
            200,
            [TEXT, ("Cache-Control", "max-age=1"), ("ETag", '"u1"'), ("X-Old", "old")],
            body,
        ),
        not_modified(
            "If-None-Match",
            '"u1"',
            ("ETag", '"u1"'),
            ("Cache-Control", "max-age=30"),
            ("X-Updated", "yes"),
        ),
    )
    await fetch(http, stack, path)
    await asyncio.sleep(PAST_WINDOWS_S)
    refreshed = await fetch(http, stack, path)
    assert refreshed.cache == "Refresh" and refreshed.headers["x-updated"] == "yes"
    hit = await fetch(http, stack, path)
    assert (hit.status, hit.cache, hit.body) == (200, "Hit", body)
    assert hit.headers["cache-control"] == "max-age=30"
    assert (hit.headers["x-updated"], hit.headers["x-old"]) == ("yes", "old")
    assert hit.headers["content-length"] == str(len(body))  # the stored body's, not the 304's
    await asyncio.sleep(WITHIN_WINDOWS_S)  # renewed for 30 s: still a hit past the old 1 s
    assert (await fetch(http, stack, path)).cache == "Hit"
    assert origin.hits(path) == 2


async def test_a_304_naming_another_etag_updates_nothing_and_the_next_request_fetches_in_full(
    stack: Stack, origin: ScriptedOrigin, http: aiohttp.ClientSession
) -> None:
    path = "/products/c1-mismatch"
    origin.script(
        path,
        Reply(200, [TEXT, ("Cache-Control", "max-age=1"), ("ETag", '"m1"')], b"one"),
        Reply(200, [TEXT, ("Cache-Control", "max-age=60"), ("ETag", '"m2"')], b"two"),
        not_modified("If-None-Match", '"m1"', ("ETag", '"m2"'), ("X-Updated", "yes")),
    )
    await fetch(http, stack, path)
    await asyncio.sleep(PAST_WINDOWS_S)
    answer = await fetch(http, stack, path)
    assert (answer.status, answer.body, answer.cache) == (200, b"one", "Refresh")
    assert "detail=validator-mismatch" in answer.headers["cache-status"]
    assert answer.headers["etag"] == '"m1"' and "x-updated" not in answer.headers
    full = await fetch(http, stack, path)  # the entry was dropped: no conditional request
    assert (full.body, full.cache) == (b"two", "Miss")
    assert origin.requests(path)[2].header("If-None-Match") is None
    assert (await fetch(http, stack, path)).body == b"two"
    assert origin.hits(path) == 3


# -- 4. never stale (§4.2.4, §5.2.2.2, §5.2.2.8, §5.2.2.10) -------------------------------


async def test_without_a_prohibition_a_concurrent_request_is_served_stale(
    stack: Stack, origin: ScriptedOrigin, http: aiohttp.ClientSession
) -> None:
    """The control of the next test: the route's 1 s window serves stale."""
    path = "/products/c1-stale-allowed"
    origin.script(
        path,
        Reply(200, [TEXT, ("Cache-Control", "max-age=1"), ("ETag", '"p"')], b"x"),
        Reply(304, [("ETag", '"p"')], delay_s=0.5, when=has("If-None-Match", '"p"')),
    )
    await fetch(http, stack, path)
    await asyncio.sleep(WITHIN_WINDOWS_S)
    answers = await together(http, stack, path)
    assert "Stale" in [a.cache for a in answers]


@pytest.mark.parametrize(
    ("name", "cache_control"),
    [
        ("must-revalidate", "max-age=1, must-revalidate"),
        ("proxy-revalidate", "max-age=1, proxy-revalidate"),
        ("s-maxage", "s-maxage=1, stale-while-revalidate=30"),  # not even its own window
    ],
)
async def test_a_forbidding_response_is_never_served_stale(
    stack: Stack,
    origin: ScriptedOrigin,
    http: aiohttp.ClientSession,
    name: str,
    cache_control: str,
) -> None:
    path = f"/products/c1-never-stale-{name}"
    origin.script(
        path,
        Reply(200, [TEXT, ("Cache-Control", cache_control), ("ETag", '"n"')], b"x"),
        Reply(304, [("ETag", '"n"')], delay_s=0.5, when=has("If-None-Match", '"n"')),
    )
    await fetch(http, stack, path)
    await asyncio.sleep(WITHIN_WINDOWS_S)
    answers = await together(http, stack, path)
    assert [a.cache for a in answers] == ["Refresh", "Refresh"]
    assert origin.hits(path) == 3  # both asked the origin
    await asyncio.sleep(WITHIN_WINDOWS_S)  # stale again: not even a client's max-stale
    stale = await fetch(http, stack, path, headers={"Cache-Control": "max-stale=3600"})
    assert stale.cache == "Refresh" and REVALIDATED in stale.headers["cache-status"]


async def test_without_a_prohibition_an_origin_error_is_answered_stale(
    stack: Stack, origin: ScriptedOrigin, http: aiohttp.ClientSession
) -> None:
    """The control of the next test: stale-if-error serves the stored copy."""
    path = "/products/c1-error-allowed"
    origin.script(
        path,
        Reply(200, [TEXT, ("Cache-Control", "max-age=1, stale-if-error=30")], b"old"),
        Reply(503, [TEXT], b"down"),
    )
    await fetch(http, stack, path)
    await asyncio.sleep(PAST_WINDOWS_S)
    answer = await fetch(http, stack, path)
    assert (answer.status, answer.body, answer.cache) == (200, b"old", "Stale")
    assert "detail=stale-if-error" in answer.headers["cache-status"]


async def test_an_origin_error_is_passed_on_and_an_answering_origin_never_gets_a_504(
    stack: Stack, origin: ScriptedOrigin, http: aiohttp.ClientSession
) -> None:
    """A 503 is an answer: the origin can be reached, so the stale must-revalidate entry
    is revalidated again (its answer passed on), never answered 504 (RFC 9111 §5.2.2.2;
    `tests/e2e/test_origin_failure.py` has the unreachable origin)."""
    path = "/products/c1-error-forbidden"
    cache_control = "max-age=1, must-revalidate, stale-if-error=30"  # and the route's 1 s
    origin.script(
        path,
        Reply(200, [TEXT, ("Cache-Control", cache_control), ("ETag", '"f"')], b"old"),
        Reply(503, [TEXT], b"down"),
    )
    await fetch(http, stack, path)
    await asyncio.sleep(PAST_WINDOWS_S)
    failed = await fetch(http, stack, path, headers={"Cache-Control": "stale-if-error=60"})
    assert (failed.status, failed.body) == (503, b"down")  # the origin's answer, not stale
    assert origin.hits(path) == 2
    # the key is down for its back-off (kong_plugin.origin), but it answered: the next
    # request still asks it, and gets its answer, not a stale copy nor a 504
    again = await fetch(http, stack, path)
    assert (again.status, again.body) == (503, b"down")
    assert origin.hits(path) == 3


async def test_a_no_cache_response_is_revalidated_on_every_use(
    stack: Stack, origin: ScriptedOrigin, http: aiohttp.ClientSession
) -> None:
    path = "/products/c1-no-cache"
    origin.script(
        path,
        Reply(200, [TEXT, ("Cache-Control", "no-cache"), ("ETag", '"nc"')], b"validated"),
        not_modified("If-None-Match", '"nc"', ("ETag", '"nc"')),
    )
    assert "stored" in (await fetch(http, stack, path)).headers["cache-status"]
    for n in (2, 3):
        answer = await fetch(http, stack, path)
        assert (answer.body, answer.cache) == (b"validated", "Refresh")
        assert REVALIDATED in answer.headers["cache-status"]
        assert origin.hits(path) == n


# -- 5. a client's If-Modified-Since (§4.3.2; RFC 9110 §13.1.3) ---------------------------


async def test_if_modified_since_is_answered_from_the_date_and_a_later_date_is_ignored(
    stack: Stack, origin: ScriptedOrigin, http: aiohttp.ClientSession
) -> None:
    path = "/products/c1-client-ims"
    now = time.time()
    date = format_http_date(now)
    origin.script(
        path, Reply(200, [TEXT, ("Cache-Control", "max-age=60"), ("Date", date)], b"dated")
    )
    await fetch(http, stack, path)
    same = await fetch(http, stack, path, headers={"If-Modified-Since": date})
    assert (same.status, same.body, same.cache) == (304, b"", "Hit")
    later = format_http_date(now + 10)
    ignored = await fetch(http, stack, path, headers={"If-Modified-Since": later})
    assert (ignored.status, ignored.body, ignored.cache) == (200, b"dated", "Hit")
    earlier = format_http_date(now - 10)
    modified = await fetch(http, stack, path, headers={"If-Modified-Since": earlier})
    assert (modified.status, modified.body) == (200, b"dated")
    assert origin.hits(path) == 1
