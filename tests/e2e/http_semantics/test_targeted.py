"""Targeted cache-control fields (RFC 9213) end to end, with the default
``targeted_cache_control`` settings: ``Strata-Cache-Control`` first, then
``CDN-Cache-Control``; Strata's own field never reaches clients, ``CDN-Cache-Control``
does. Freshness is checked with small lifetimes and sleeps, storing by the origin's hit
count."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest
from aiohttp import web

from tests.e2e.http_semantics.conftest import Answer, fetch
from tests.support.scripted_origin import Reply, ScriptedOrigin
from tools.stack import Stack

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="module")]

JSON = ("Content-Type", "application/json")
OWN = "Strata-Cache-Control"
CDN = "CDN-Cache-Control"


async def twice(
    http: aiohttp.ClientSession, stack: Stack, origin: ScriptedOrigin, path: str, *reply: Reply
) -> tuple[Answer, Answer]:
    origin.script(path, *reply)
    return await fetch(http, stack, path), await fetch(http, stack, path)


async def test_a_short_targeted_max_age_beats_a_long_cache_control_one(
    stack: Stack, origin: ScriptedOrigin, http: aiohttp.ClientSession
) -> None:
    path = "/products/targeted-short-own"
    headers = [JSON, ("Cache-Control", "max-age=600"), (OWN, "max-age=1")]
    first, second = await twice(http, stack, origin, path, Reply(200, headers, b"{}"))
    assert (first.cache, second.cache) == ("Miss", "Hit")
    await asyncio.sleep(1.6)
    third = await fetch(http, stack, path)
    assert third.cache != "Hit"
    assert origin.hits(path) == 2


async def test_a_long_cdn_max_age_beats_a_short_cache_control_one(
    stack: Stack, origin: ScriptedOrigin, http: aiohttp.ClientSession
) -> None:
    path = "/products/targeted-long-cdn"
    headers = [JSON, ("Cache-Control", "max-age=1"), (CDN, "max-age=600")]
    await twice(http, stack, origin, path, Reply(200, headers, b"{}"))
    await asyncio.sleep(1.6)
    third = await fetch(http, stack, path)
    assert third.cache == "Hit"
    assert origin.hits(path) == 1


async def test_strata_field_beats_cdn_cache_control(
    stack: Stack, origin: ScriptedOrigin, http: aiohttp.ClientSession
) -> None:
    path = "/products/targeted-precedence"
    headers = [JSON, (CDN, "max-age=600"), (OWN, "max-age=1")]
    await twice(http, stack, origin, path, Reply(200, headers, b"{}"))
    await asyncio.sleep(1.6)
    assert (await fetch(http, stack, path)).cache != "Hit"
    assert origin.hits(path) == 2


@pytest.mark.parametrize("field", [OWN, CDN])
async def test_targeted_no_store_keeps_a_public_response_out(
    stack: Stack, origin: ScriptedOrigin, http: aiohttp.ClientSession, field: str
) -> None:
    path = f"/products/targeted-no-store-{field.lower()}"
    headers = [JSON, ("Cache-Control", "public, max-age=600"), (field, "no-store")]
    _, second = await twice(http, stack, origin, path, Reply(200, headers, b"{}"))
    assert second.cache == "Bypass"
    assert "no-store" in second.headers["cache-status"]
    assert origin.hits(path) == 2


async def test_targeted_max_age_stores_a_cache_control_no_store_response(
    stack: Stack, origin: ScriptedOrigin, http: aiohttp.ClientSession
) -> None:
    path = "/products/targeted-over-no-store"
    headers = [JSON, ("Cache-Control", "no-store"), (CDN, "max-age=600")]
    first, second = await twice(http, stack, origin, path, Reply(200, headers, b"{}"))
    assert (first.cache, second.cache) == ("Miss", "Hit")
    assert origin.hits(path) == 1
    # the client still gets the origin's Cache-Control, meant for the caches after this one
    assert second.all("cache-control") == ["no-store"]


@pytest.mark.parametrize(
    ("name", "value"),
    [("not-structured", "max-age=600, &&&&&"), ("wrong-type", 'max-age="600"')],
)
async def test_an_unusable_targeted_field(
    stack: Stack, origin: ScriptedOrigin, http: aiohttp.ClientSession, name: str, value: str
) -> None:
    """Invalid: ignored, Cache-Control decides. Valid with a mistyped max-age: it decides,
    without a lifetime (RFC 9213 §2.1) -- not stored either way here."""
    path = f"/products/targeted-unusable-{name}"
    headers = [JSON, ("Cache-Control", "no-store"), (CDN, value)]
    _, second = await twice(http, stack, origin, path, Reply(200, headers, b"{}"))
    assert second.cache == "Bypass"
    assert origin.hits(path) == 2


async def test_an_invalid_targeted_field_falls_back_to_cache_control(
    stack: Stack, origin: ScriptedOrigin, http: aiohttp.ClientSession
) -> None:
    path = "/products/targeted-invalid-falls-back"
    headers = [JSON, ("Cache-Control", "max-age=600"), (OWN, "Max-Age=1"), (CDN, "max-age =1")]
    await twice(http, stack, origin, path, Reply(200, headers, b"{}"))
    await asyncio.sleep(1.6)
    assert (await fetch(http, stack, path)).cache == "Hit"
    assert origin.hits(path) == 1


async def test_expires_is_ignored_when_a_targeted_field_decides(
    stack: Stack, origin: ScriptedOrigin, http: aiohttp.ClientSession
) -> None:
    path = "/products/targeted-expires-ignored"
    headers = [JSON, ("Expires", "0"), (CDN, "max-age=600")]
    _, second = await twice(http, stack, origin, path, Reply(200, headers, b"{}"))
    assert second.cache == "Hit"
    assert origin.hits(path) == 1


async def test_strata_field_is_removed_cdn_cache_control_passed_on(
    stack: Stack, origin: ScriptedOrigin, http: aiohttp.ClientSession
) -> None:
    path = "/products/targeted-forwarding"
    headers = [JSON, (OWN, "max-age=600"), (CDN, "max-age=300")]
    first, second = await twice(http, stack, origin, path, Reply(200, headers, b"{}"))
    assert (first.cache, second.cache) == ("Miss", "Hit")
    for answer in (first, second):
        assert answer.all(OWN) == []
        assert answer.all(CDN) == ["max-age=300"]


async def test_a_bypassed_response_loses_strata_field_too(
    stack: Stack, origin: ScriptedOrigin, http: aiohttp.ClientSession
) -> None:
    path = "/products/targeted-forwarding-bypass"
    headers = [JSON, (OWN, "no-store")]
    first, second = await twice(http, stack, origin, path, Reply(200, headers, b"{}"))
    assert (first.cache, second.cache) == ("Bypass", "Bypass")
    assert first.all(OWN) == second.all(OWN) == []


def conditional(request: web.Request) -> bool:
    return request.headers.get("If-None-Match") == '"v1"'


async def test_a_revalidated_entry_is_refreshed_by_its_targeted_field(
    stack: Stack, origin: ScriptedOrigin, http: aiohttp.ClientSession
) -> None:
    """The 304 renews the targeted lifetime; the answer built from it (a response-phase
    exit) carries neither the stored nor the 304's Strata-Cache-Control."""
    path = "/products/targeted-revalidated"
    full = [JSON, ("ETag", '"v1"'), ("Cache-Control", "no-store"), (OWN, "max-age=1")]
    not_modified = [("ETag", '"v1"'), (OWN, "max-age=600")]
    origin.script(path, Reply(200, full, b"{}"), Reply(304, not_modified, when=conditional))
    assert (await fetch(http, stack, path)).cache == "Miss"
    await asyncio.sleep(1.6)
    refreshed = await fetch(http, stack, path)
    assert refreshed.status == 200 and refreshed.body == b"{}"
    assert refreshed.all(OWN) == []
    seen = origin.requests(path)
    assert len(seen) == 2 and seen[1].header("If-None-Match") == '"v1"'
    await asyncio.sleep(1.2)  # past the first targeted max-age, within the renewed one
    hit = await fetch(http, stack, path)
    assert hit.cache == "Hit" and hit.all(OWN) == []
    assert origin.hits(path) == 2
