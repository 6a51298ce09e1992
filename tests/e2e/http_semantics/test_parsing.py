"""Parsing rules end to end, with the route's defaults (``cache_control: true``, no stale
windows): ``Age`` (RFC 9111 §5.1), delta-seconds (§1.2.2), ``Expires`` and HTTP-dates
(§5.3, RFC 9110 §5.6.7), heuristic freshness whatever ``response_code`` says (§4.2.2,
RFC 9110 §15.1), and ``Set-Cookie`` kept out by default. Each test scripts its own path
with exactly the headers it is about, and counts what reached the origin."""

from __future__ import annotations

import asyncio
import time

import aiohttp
import pytest

from kong_plugin.http_date import format_http_date
from tests.e2e.http_semantics.conftest import Answer, fetch
from tests.support.scripted_origin import Reply, ScriptedOrigin
from tools.stack import Stack

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="module")]

JSON = ("Content-Type", "application/json")
LONG_DAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def rfc850(timestamp: float) -> str:
    t = time.gmtime(timestamp)
    return (
        f"{LONG_DAYS[t.tm_wday]}, {t.tm_mday:02d}-{MONTHS[t.tm_mon - 1]}-{t.tm_year % 100:02d} "
        f"{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d} GMT"
    )


def asctime(timestamp: float) -> str:
    t = time.gmtime(timestamp)
    return (
        f"{LONG_DAYS[t.tm_wday][:3]} {MONTHS[t.tm_mon - 1]} {t.tm_mday:2d} "
        f"{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d} {t.tm_year}"
    )


async def twice(
    http: aiohttp.ClientSession, stack: Stack, origin: ScriptedOrigin, path: str, *reply: Reply
) -> tuple[Answer, Answer]:
    """Script `path`, ask for it twice; the answers."""
    origin.script(path, *reply)
    first = await fetch(http, stack, path)
    second = await fetch(http, stack, path)
    assert first.status == second.status
    return first, second


def stored_once(origin: ScriptedOrigin, path: str, second: Answer) -> None:
    assert second.cache == "Hit", second.headers
    assert origin.hits(path) == 1


def never_stored(origin: ScriptedOrigin, path: str, second: Answer) -> None:
    assert second.cache != "Hit", second.headers
    assert origin.hits(path) == 2


# -- Age ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "age_lines", "stored"),
    [
        ("nonnumeric", ["abc"], False),
        ("negative", ["-7200"], False),
        ("float", ["7200.0"], False),
        ("old-first-member", ["7200, 0"], False),
        ("old-first-line", ["7200", "0"], False),
        ("young-first-line", ["0", "7200"], True),
        ("young-first-member", ["0, 7200"], True),
    ],
)
async def test_only_the_first_age_member_counts_and_an_invalid_one_is_stale(
    stack: Stack,
    origin: ScriptedOrigin,
    http: aiohttp.ClientSession,
    name: str,
    age_lines: list[str],
    stored: bool,
) -> None:
    path = f"/products/parsing-age-{name}"
    headers = [JSON, ("Cache-Control", "max-age=3600"), *(("Age", a) for a in age_lines)]
    _, second = await twice(http, stack, origin, path, Reply(200, headers, b"{}"))
    (stored_once if stored else never_stored)(origin, path, second)


# -- delta-seconds -----------------------------------------------------------------------


async def test_leading_zeros_do_not_make_max_age_huge(
    stack: Stack, origin: ScriptedOrigin, http: aiohttp.ClientSession
) -> None:
    path = "/products/parsing-delta-leading-zeros"
    headers = [JSON, ("Cache-Control", "max-age=000000000001")]
    _, second = await twice(http, stack, origin, path, Reply(200, headers, b"{}"))
    stored_once(origin, path, second)
    await asyncio.sleep(1.6)
    third = await fetch(http, stack, path)
    assert third.cache != "Hit"
    assert origin.hits(path) == 2


async def test_a_max_age_beyond_2_31_is_capped_not_rejected(
    stack: Stack, origin: ScriptedOrigin, http: aiohttp.ClientSession
) -> None:
    path = "/products/parsing-delta-huge"
    headers = [JSON, ("Cache-Control", "max-age=99999999999999999999")]
    _, second = await twice(http, stack, origin, path, Reply(200, headers, b"{}"))
    stored_once(origin, path, second)


# -- Expires -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "expires"),
    [
        ("imf", lambda now: format_http_date(now + 600)),
        ("rfc850", lambda now: rfc850(now + 600)),
        ("asctime", lambda now: asctime(now + 600)),
        ("lower-case", lambda now: format_http_date(now + 600).lower()),
        ("far-future", lambda now: "Sun, 21 Nov 2286 04:46:39 GMT"),
    ],
)
async def test_a_future_expires_in_any_date_form_is_stored(
    stack: Stack, origin: ScriptedOrigin, http: aiohttp.ClientSession, name: str, expires: object
) -> None:
    assert callable(expires)
    path = f"/products/parsing-expires-{name}"
    headers = [JSON, ("Expires", expires(time.time()))]
    _, second = await twice(http, stack, origin, path, Reply(200, headers, b"{}"))
    stored_once(origin, path, second)


@pytest.mark.parametrize(
    ("name", "expires"),
    [
        ("zero", "0"),
        ("minus-one", "-1"),
        ("numeric-zone", "Sun, 21 Nov 2286 04:46:39 +0000"),
        ("utc", "Sun, 21 Nov 2286 04:46:39 UTC"),
        ("no-seconds", "Sun, 21 Nov 2286 04:46 GMT"),
        ("garbage", "whenever"),
    ],
)
async def test_an_invalid_expires_means_already_expired(
    stack: Stack, origin: ScriptedOrigin, http: aiohttp.ClientSession, name: str, expires: str
) -> None:
    path = f"/products/parsing-expires-invalid-{name}"
    headers = [JSON, ("Expires", expires)]
    _, second = await twice(http, stack, origin, path, Reply(200, headers, b"{}"))
    never_stored(origin, path, second)


@pytest.mark.parametrize("directive", ["max-age=600", "s-maxage=600"])
async def test_an_invalid_expires_is_ignored_beside_max_age_or_s_maxage(
    stack: Stack, origin: ScriptedOrigin, http: aiohttp.ClientSession, directive: str
) -> None:
    path = f"/products/parsing-expires-ignored-{directive.partition('=')[0]}"
    headers = [JSON, ("Cache-Control", directive), ("Expires", "0")]
    _, second = await twice(http, stack, origin, path, Reply(200, headers, b"{}"))
    stored_once(origin, path, second)


# -- heuristic freshness -----------------------------------------------------------------


@pytest.mark.parametrize("status", [200, 203, 300, 405, 410, 414, 501])
async def test_heuristic_freshness_for_heuristically_cacheable_statuses(
    stack: Stack, origin: ScriptedOrigin, http: aiohttp.ClientSession, status: int
) -> None:
    """The route's response_code is Kong's default [200, 301, 404]: not consulted."""
    path = f"/products/parsing-heuristic-{status}"
    headers = [JSON, ("Last-Modified", format_http_date(time.time() - 10_000))]
    _, second = await twice(http, stack, origin, path, Reply(status, headers, b"{}"))
    stored_once(origin, path, second)


async def test_no_heuristic_for_other_statuses_unless_public(
    stack: Stack, origin: ScriptedOrigin, http: aiohttp.ClientSession
) -> None:
    last_modified = ("Last-Modified", format_http_date(time.time() - 10_000))
    path = "/products/parsing-heuristic-403"
    _, second = await twice(http, stack, origin, path, Reply(403, [JSON, last_modified], b"{}"))
    never_stored(origin, path, second)
    path = "/products/parsing-heuristic-403-public"
    public = ("Cache-Control", "public")
    _, second = await twice(
        http, stack, origin, path, Reply(403, [JSON, last_modified, public], b"{}")
    )
    stored_once(origin, path, second)


# -- Set-Cookie (default: not stored) ----------------------------------------------------


async def test_a_response_with_set_cookie_is_not_stored_by_default(
    stack: Stack, origin: ScriptedOrigin, http: aiohttp.ClientSession
) -> None:
    path = "/products/parsing-set-cookie-default"
    headers = [JSON, ("Cache-Control", "max-age=600"), ("Set-Cookie", "sid=1")]
    first, second = await twice(http, stack, origin, path, Reply(200, headers, b"{}"))
    never_stored(origin, path, second)
    assert first.all("set-cookie") == second.all("set-cookie") == ["sid=1"]
    assert "set-cookie" in second.headers.get("cache-status", "")
