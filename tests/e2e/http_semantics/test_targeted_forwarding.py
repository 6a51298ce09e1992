"""Which targeted fields clients get (RFC 9213 §2.1, §3), with the forwarding settings
flipped: ``forward_field: true`` passes Strata's own field on, ``forward_cdn_cache_control:
false`` removes ``CDN-Cache-Control`` -- from proxied responses and from hits alike, while
the stored entry keeps both (reuse decisions read them)."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import pytest

from tests.e2e.http_semantics.conftest import BASE_OVERRIDES, fetch
from tests.support.scripted_origin import Reply, ScriptedOrigin
from tools.stack import Stack

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="module")]

OWN = "Strata-Cache-Control"
CDN = "CDN-Cache-Control"


@pytest.fixture(scope="module")
def plugin_overrides() -> dict[str, Any]:
    targeted = {"forward_field": True, "forward_cdn_cache_control": False}
    return {**BASE_OVERRIDES, "targeted_cache_control": targeted}


async def test_forwarding_settings_apply_to_misses_and_hits(
    stack: Stack, origin: ScriptedOrigin, http: aiohttp.ClientSession
) -> None:
    path = "/products/forwarding-flipped"
    headers = [("Content-Type", "application/json"), (OWN, "max-age=600"), (CDN, "max-age=1")]
    origin.script(path, Reply(200, headers, b"{}"))
    first = await fetch(http, stack, path)
    second = await fetch(http, stack, path)
    assert (first.cache, second.cache) == ("Miss", "Hit")
    for answer in (first, second):
        assert answer.all(OWN) == ["max-age=600"]
        assert answer.all(CDN) == []
    # the stored entry still has both: its own field (600 s) decides, not CDN's 1 s
    await asyncio.sleep(1.6)
    assert (await fetch(http, stack, path)).cache == "Hit"
    assert origin.hits(path) == 1


async def test_cdn_cache_control_is_removed_from_a_bypassed_response(
    stack: Stack, origin: ScriptedOrigin, http: aiohttp.ClientSession
) -> None:
    path = "/products/forwarding-flipped-bypass"
    headers = [("Content-Type", "application/json"), (CDN, "no-store")]
    origin.script(path, Reply(200, headers, b"{}"))
    answer = await fetch(http, stack, path)
    assert answer.cache == "Bypass"
    assert answer.all(CDN) == []
