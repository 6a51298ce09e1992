"""Each route's mapping to an invalidation event, and its reply."""

from __future__ import annotations

import dataclasses
import hashlib
import json

import pytest

from sidecar.core.model import CachedResponse
from sidecar.events import InvalidationEvent
from tests.unit.sidecar.admin.conftest import Admin, FakePeeked, FakeSubmitted

KEY = "v2:route-1:" + "ab" * 32


def _entry() -> CachedResponse:
    return CachedResponse(
        status=200,
        headers=((b"content-type", b"text/plain"), (b"x-a", b"\xe9")),
        body=b"hello body",
        stored_at_ms=1_700_000_000_000 - 5000,
        ttl_ms=60_000,
        stale_while_revalidate_ms=1000,
        tags=("products:42",),
        vary=("accept-encoding",),
    )


async def test_delete_proxy_cache_purges_everything_204_with_event_headers(admin: Admin) -> None:
    status, headers, body = await admin.request("DELETE", "/proxy-cache")
    assert (status, body) == (204, b"")
    assert admin.invalidations.events == [InvalidationEvent(flush="*")]
    assert headers["strata-event-id"] == "evt-1"
    assert headers["strata-dropped"] == "3"
    assert headers["strata-queued"] == "true"
    assert headers["strata-duplicate"] == "false"
    assert admin.observer.counts[("proxy_cache", "ok")] == 1


async def test_delete_proxy_cache_soft(admin: Admin) -> None:
    status, _, _ = await admin.request("DELETE", "/proxy-cache?soft=true")
    assert status == 204
    assert admin.invalidations.events == [InvalidationEvent(flush="*", soft=True)]


@pytest.mark.parametrize("query", ["tag=x", "soft=maybe", "soft=1&soft=0", "soft=%ff"])
async def test_delete_proxy_cache_refuses_other_parameters(admin: Admin, query: str) -> None:
    status, _, body = await admin.request("DELETE", f"/proxy-cache?{query}")
    assert status == 400, body
    assert json.loads(body)["message"]
    assert admin.invalidations.events == []


async def test_delete_a_key_held_here_204(admin: Admin) -> None:
    admin.engine.entries[KEY.encode()] = FakePeeked("memory", _entry(), "fresh")
    admin.invalidations.dropped = 0
    for path in (f"/proxy-cache/{KEY}", f"/proxy-cache/some-plugin-id/caches/{KEY}"):
        status, headers, _ = await admin.request("DELETE", path)
        assert status == 204
        assert headers["strata-dropped"] == "0"
    assert admin.invalidations.events == [InvalidationEvent(keys=(KEY,))] * 2


async def test_delete_a_key_not_held_here_is_404_but_still_purged_everywhere(
    admin: Admin,
) -> None:
    admin.invalidations.dropped = 0
    status, _, body = await admin.request("DELETE", f"/proxy-cache/{KEY}")
    assert status == 404
    reply = json.loads(body)
    assert reply["id"] == "evt-1"
    assert reply["queued"] is True
    assert "not cached on this node" in reply["message"]
    assert admin.invalidations.events == [InvalidationEvent(keys=(KEY,))]
    assert admin.observer.counts[("proxy_cache_key", "not_found")] == 1


async def test_keys_in_paths_are_percent_decoded(admin: Admin) -> None:
    status, _, _ = await admin.request("DELETE", "/proxy-cache/v2:a%2Fb:c%25d")
    assert status == 204  # the fake dropped 3
    assert admin.invalidations.events[0].keys == ("v2:a/b:c%d",)
    status, _, body = await admin.request("DELETE", "/proxy-cache/%ff")
    assert (status, "not UTF-8" in json.loads(body)["message"]) == (400, True)


async def test_a_key_cannot_be_soft_purged(admin: Admin) -> None:
    status, _, body = await admin.request("DELETE", f"/proxy-cache/{KEY}?soft=true")
    assert status == 400
    assert "soft" in json.loads(body)["message"]
    assert admin.invalidations.events == []


async def test_get_a_key_describes_the_entry_never_its_body(admin: Admin) -> None:
    admin.engine.entries[KEY.encode()] = FakePeeked("redis", _entry(), "stale")
    status, _, body = await admin.request("GET", f"/proxy-cache/{KEY}?header=Accept-Encoding:gzip")
    assert status == 200
    assert b"hello body" not in body
    assert json.loads(body) == {
        "key": KEY,
        "tier": "redis",
        "state": "stale",
        "status": 200,
        "stored_at_ms": 1_700_000_000_000 - 5000,
        "ttl_ms": 60_000,
        "stored_ttl_ms": 60_000,
        "age_ms": 5000,
        "stale_while_revalidate_ms": 1000,
        "stale_if_error_ms": 0,
        "tags": ["products:42"],
        "vary": ["accept-encoding"],
        "headers": [["content-type", "text/plain"], ["x-a", "\u00e9"]],
        "body_bytes": 10,
        "body_sha256": hashlib.sha256(b"hello body").hexdigest(),
    }
    assert admin.engine.peeks == [(KEY.encode(), ((b"accept-encoding", b"gzip"),))]
    assert admin.invalidations.events == []


async def test_get_a_soft_purged_key_shows_the_cut_and_the_stored_ttl(admin: Admin) -> None:
    cut = dataclasses.replace(_entry(), ttl_ms=70)
    admin.engine.entries[KEY.encode()] = FakePeeked("memory", cut, "soft_purged", 60_000)
    status, _, body = await admin.request("GET", f"/proxy-cache/{KEY}")
    assert status == 200
    seen = json.loads(body)
    assert (seen["state"], seen["ttl_ms"], seen["stored_ttl_ms"]) == ("soft_purged", 70, 60_000)


async def test_a_reused_event_id_is_reported_as_a_duplicate(admin: Admin) -> None:
    status, _, reply = await admin.request("POST", "/purge?tag=dup:2&id=deploy-1")
    assert (status, json.loads(reply)["duplicate"]) == (200, False)
    status, _, reply = await admin.request(
        "POST", "/purge", b'{"tags": ["dup:2"], "id": "deploy-1"}'
    )
    assert status == 200
    assert json.loads(reply) == {"id": "deploy-1", "dropped": 0, "queued": True, "duplicate": True}


async def test_kong_style_routes_report_a_duplicate_in_a_header(admin: Admin) -> None:
    admin.engine.entries[KEY.encode()] = FakePeeked("memory", _entry(), "fresh")

    async def submit_twice(event: InvalidationEvent) -> FakeSubmitted:
        return FakeSubmitted("same-id", 0, False, duplicate=True)

    admin.invalidations.submit = submit_twice  # type: ignore[method-assign]
    for path in ("/proxy-cache", f"/proxy-cache/{KEY}"):
        status, headers, _ = await admin.request("DELETE", path)
        assert status == 204
        assert (headers["strata-duplicate"], headers["strata-queued"]) == ("true", "false")


async def test_get_an_absent_key_is_404(admin: Admin) -> None:
    status, _, _ = await admin.request("GET", f"/proxy-cache/{KEY}")
    assert status == 404
    status, _, _ = await admin.request("GET", f"/proxy-cache/{KEY}?nope=1")
    assert status == 400


@pytest.mark.parametrize(
    ("body", "event"),
    [
        (
            b'{"tags": ["products:42"], "soft": true}',
            InvalidationEvent(tags=("products:42",), soft=True),
        ),
        (b'{"v": 1, "urls": ["/p/42?x=1"]}', InvalidationEvent(urls=("/p/42?x=1",))),
        (b'{"prefixes": ["/p/"], "id": "my-id"}', InvalidationEvent(prefixes=("/p/",), id="my-id")),
        (
            b'{"routes": ["r1"], "flush": "catalog"}',
            InvalidationEvent(routes=("r1",), flush="catalog"),
        ),
        (
            b'{"keys": ["k1"], "key_prefixes": ["v2:r:"]}',
            InvalidationEvent(keys=("k1",), key_prefixes=("v2:r:",)),
        ),
    ],
)
async def test_post_purge_json_body(admin: Admin, body: bytes, event: InvalidationEvent) -> None:
    status, _, reply = await admin.request("POST", "/purge", body)
    assert status == 200
    assert json.loads(reply) == {
        "id": event.id or "evt-1",
        "dropped": 3,
        "queued": True,
        "duplicate": False,
    }
    assert admin.invalidations.events == [event]
    assert admin.observer.counts[("purge", "ok")] == 1


@pytest.mark.parametrize(
    ("body", "words"),
    [
        (b'{"tags": ["a"], "sfot": true}', "unknown field 'sfot'"),
        (b'{"v": 2, "tags": ["a"]}', "version"),
        (b'{"tags": "a"}', "tags must be an array"),
        (b'{"tags": ["a b"]}', "tags[0]"),
        (b'{"tags": [', "not JSON"),
        (b"[1]", "not an object"),
        (b"{}", "nothing to purge"),
    ],
)
async def test_post_purge_bad_bodies_are_400(admin: Admin, body: bytes, words: str) -> None:
    status, _, reply = await admin.request("POST", "/purge", body)
    assert status == 400
    assert words in json.loads(reply)["message"]
    assert admin.invalidations.events == []
    assert admin.observer.counts[("purge", "bad_request")] == 1


@pytest.mark.parametrize(
    ("query", "event"),
    [
        ("tag=a&tag=b&soft=true", InvalidationEvent(tags=("a", "b"), soft=True)),
        (
            "url=%2Fp%2F42%3Fx%3D1&prefix=/q/",
            InvalidationEvent(urls=("/p/42?x=1",), prefixes=("/q/",)),
        ),
        (
            "key=k1&key_prefix=v2:r:&route=r1",
            InvalidationEvent(keys=("k1",), key_prefixes=("v2:r:",), routes=("r1",)),
        ),
        ("all=true", InvalidationEvent(flush="*")),
        ("all&soft", InvalidationEvent(flush="*", soft=True)),
        ("flush=catalog&id=x1", InvalidationEvent(flush="catalog", id="x1")),
    ],
)
async def test_post_purge_query_form(admin: Admin, query: str, event: InvalidationEvent) -> None:
    status, _, _ = await admin.request("POST", f"/purge?{query}")
    assert status == 200
    assert admin.invalidations.events == [event]


@pytest.mark.parametrize(
    ("query", "words"),
    [
        ("", "nothing to purge"),
        ("tags=a", "unknown parameter 'tags'"),
        ("all=false", "purges nothing"),
        ("all=true&flush=x", "twice"),
        ("tag=a&tag=b%20c", "tags["),
        ("tag", "tags["),
    ],
)
async def test_post_purge_bad_queries_are_400(admin: Admin, query: str, words: str) -> None:
    status, _, reply = await admin.request("POST", f"/purge?{query}")
    assert status == 400
    assert words in json.loads(reply)["message"], reply
    assert admin.invalidations.events == []


async def test_post_purge_body_and_query_together_is_400(admin: Admin) -> None:
    status, _, reply = await admin.request("POST", "/purge?tag=a", b'{"tags": ["b"]}')
    assert status == 400
    assert "not both" in json.loads(reply)["message"]
