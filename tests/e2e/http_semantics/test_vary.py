"""Equivalent ``Accept*`` values select one stored variant (RFC 9111 §4.1; RFC 9110
§12.5.1-12.5.4), through kongsim, the real plugin server and a real sidecar: in the
sidecar's variant selection (response ``Vary``) and in the key's ``vary_headers``."""

from __future__ import annotations

import uuid
from typing import Any

import aiohttp
import pytest

from tests.e2e.http_semantics.conftest import BASE_OVERRIDES, fetch
from tests.support.scripted_origin import Reply, ScriptedOrigin
from tools.stack import Stack

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="module")]


@pytest.fixture(scope="module")
def plugin_overrides() -> dict[str, Any]:
    # Accept-Charset in the key (vary_headers); the responses' own Vary for the others
    return {**BASE_OVERRIDES, "vary_headers": ["Accept-Charset"]}


def varying(origin: ScriptedOrigin, vary: str | None) -> str:
    """A path whose 200 is storable for 60 s, with `vary` as its Vary (None: none), and
    whose body tells the requests apart (the origin's request count)."""
    path = f"/products/vary-{uuid.uuid4().hex[:10]}"
    headers = [("Content-Type", "application/json"), ("Cache-Control", "max-age=60")]
    if vary:
        headers.append(("Vary", vary))
    origin.script(path, Reply(200, headers, b'{"n": 1}'), Reply(200, headers, b'{"n": 2}'))
    return path


async def test_accept_encoding_lists_in_another_order_and_case_share_a_variant(
    stack: Stack, origin: ScriptedOrigin, http: aiohttp.ClientSession
) -> None:
    path = varying(origin, "Accept-Encoding")
    first = await fetch(http, stack, path, headers={"Accept-Encoding": "gzip, br"})
    assert first.cache == "Miss"
    same = await fetch(http, stack, path, headers={"Accept-Encoding": "BR,gzip"})
    assert (same.cache, same.body) == ("Hit", first.body)
    # two field lines are one list (RFC 9110 §5.3)
    lines = await fetch(
        http, stack, path, headers=[("Accept-Encoding", "br"), ("Accept-Encoding", "GZIP")]
    )
    assert lines.cache == "Hit"
    other = await fetch(http, stack, path, headers={"Accept-Encoding": "gzip"})
    assert other.cache == "Miss"
    assert origin.hits(path) == 2
    # what went upstream was the client's own value, not the canonical one
    assert origin.requests(path)[0].header("Accept-Encoding") == "gzip, br"


async def test_accept_language_weights_are_compared_as_numbers(
    stack: Stack, origin: ScriptedOrigin, http: aiohttp.ClientSession
) -> None:
    path = varying(origin, "Accept-Language")
    first = await fetch(http, stack, path, headers={"Accept-Language": "en;q=0.5, de"})
    assert first.cache == "Miss"
    same = await fetch(http, stack, path, headers={"Accept-Language": "de, en;q=0.50"})
    assert (same.cache, same.body) == ("Hit", first.body)
    assert origin.hits(path) == 1


async def test_different_languages_are_different_variants(
    stack: Stack, origin: ScriptedOrigin, http: aiohttp.ClientSession
) -> None:
    path = varying(origin, "Accept-Language")
    en = await fetch(http, stack, path, headers={"Accept-Language": "en"})
    de = await fetch(http, stack, path, headers={"Accept-Language": "de"})
    assert (en.cache, de.cache) == ("Miss", "Miss")
    assert en.body != de.body
    assert (await fetch(http, stack, path, headers={"Accept-Language": "EN"})).body == en.body
    assert origin.hits(path) == 2


async def test_vary_headers_in_the_key_compare_lists_too(
    stack: Stack, origin: ScriptedOrigin, http: aiohttp.ClientSession
) -> None:
    path = varying(origin, None)
    first = await fetch(http, stack, path, headers={"Accept-Charset": "utf-8, iso-8859-1;q=0.5"})
    same = await fetch(http, stack, path, headers={"Accept-Charset": "ISO-8859-1;Q=0.500 ,UTF-8"})
    assert (first.cache, same.cache) == ("Miss", "Hit")
    assert first.headers["x-cache-key"] == same.headers["x-cache-key"]
    other = await fetch(http, stack, path, headers={"Accept-Charset": "iso-8859-1"})
    assert other.cache == "Miss"
    assert origin.hits(path) == 2
