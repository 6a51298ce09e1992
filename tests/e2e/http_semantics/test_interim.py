"""An origin that sends an interim response (``103 Early Hints``, ``100 Continue``) before
a storable 200, end to end: kongsim (which takes the first 1xx for the response, as Kong
3.9's nginx 1.25.3 does: `kongsim.http.interim`), the real plugin server, a real sidecar.

What Kong 3.9 does with it, and so what these tests hold: the plugin's ``response`` phase
sees status 1xx with the 1xx's header fields, and stores nothing (RFC 9110 §15.2: a 1xx is
not a final response; RFC 9111 §3: only final responses are stored). The client reads the
1xx head (with the cache's headers on it), then the origin's own 200 from the bytes that
follow. No entry is ever made of either, so no interim field can reach a stored response.
"""

from __future__ import annotations

import asyncio
import tempfile
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
import pytest_asyncio
from strata.v1 import cache_pb2 as pb

from kong_plugin.client import SidecarClient
from tests.e2e.http_semantics.conftest import BASE_OVERRIDES
from tests.support.raw_origin import RawOrigin, RawReply, final, interim
from tests.support.sidecar import SIDECAR_TIMEOUT_MS, clean_env, unix_sidecar
from tools.stack import Stack

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="module")]

BODY = b'{"product": 1}'
STORABLE = final(
    "200 OK",
    [("Content-Type", "application/json"), ("Cache-Control", "max-age=60"), ("ETag", '"p1"')],
    BODY,
)
EARLY_HINTS = interim("103 Early Hints", [("Link", "</p.css>; rel=preload"), ("X-Interim", "1")])
CONTINUE = interim("100 Continue", [("X-Interim", "1")])


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def raw() -> AsyncIterator[tuple[Stack, RawOrigin]]:
    origin = RawOrigin()
    address = await origin.start()
    try:
        with tempfile.TemporaryDirectory(prefix="strata-interim-", dir="/tmp") as d:
            tmp = Path(d)
            stack = Stack(
                tmp,
                unix_sidecar(tmp / "sidecar.sock", clean_env()),
                plugin=BASE_OVERRIDES,
                sidecar_settings={"timeout_ms": SIDECAR_TIMEOUT_MS},
                upstream=address,
                external_upstream=True,
            )
            async with stack:
                yield stack, origin
    finally:
        await origin.stop()


async def on_the_wire(stack: Stack, path: str) -> tuple[bytes, bytes]:
    """(head, the bytes after it) as a raw client reads them until the connection closes."""
    host, port = stack.base_url.removeprefix("http://").rsplit(":", 1)
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(f"GET {path} HTTP/1.1\r\nHost: shop\r\nConnection: close\r\n\r\n".encode())
    data = await asyncio.wait_for(reader.read(), 10)
    writer.close()
    head, _, rest = data.partition(b"\r\n\r\n")
    return head, rest


def fields(head: bytes) -> dict[str, str]:
    lines = head.decode("latin-1").split("\r\n")[1:]
    return {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines)}


async def stored(stack: Stack, key: str) -> pb.LookupResponse:
    client = SidecarClient(stack.sidecar.address, timeout_s=5.0)
    try:
        return await asyncio.to_thread(client.lookup, key.encode())
    finally:
        client.close()


@pytest.mark.parametrize(("first", "status"), [(EARLY_HINTS, 103), (CONTINUE, 100)])
async def test_an_interim_response_is_never_stored_nor_mixed_into_a_stored_one(
    raw: tuple[Stack, RawOrigin], first: bytes, status: int
) -> None:
    stack, origin = raw
    path = f"/products/interim-{uuid.uuid4().hex[:10]}"
    origin.script(path, RawReply(first + STORABLE))

    head, rest = await on_the_wire(stack, path)
    # the 1xx is what Kong's proxy took for the response: the plugin saw it, stored nothing
    assert head.split(b"\r\n")[0] == f"HTTP/1.1 {status} ".encode()
    h = fields(head)
    assert h["x-interim"] == "1"
    assert h["x-cache-status"] == "Bypass"
    assert f"fwd-status={status}" in h["cache-status"]
    assert rest == STORABLE  # then the origin's final response, as it sent it
    found = await stored(stack, h["x-cache-key"])
    assert found.outcome == pb.OUTCOME_MISS  # no entry, of the 1xx or of the 200

    # an HTTP client reads past the interim response: the 200, without interim fields
    async with (
        aiohttp.ClientSession() as http,
        http.get(stack.base_url + path) as resp,
    ):
        assert (resp.status, await resp.read()) == (200, BODY)
        assert "X-Interim" not in resp.headers and "Link" not in resp.headers
        assert "X-Cache-Status" not in resp.headers  # that went out on the 1xx head
    await asyncio.sleep(0.2)  # a store, if one were queued, would have run by now
    again_head, _ = await on_the_wire(stack, path)
    assert fields(again_head)["x-cache-status"] == "Bypass"  # never a Hit
    assert len(origin.requests(path)) == 3  # every request reached the origin
    assert (await stored(stack, h["x-cache-key"])).outcome == pb.OUTCOME_MISS
    assert stack.sim is not None and stack.sim.issues == []


async def test_the_same_origin_without_the_interim_response_is_stored(
    raw: tuple[Stack, RawOrigin],
) -> None:
    """The control: the 200 alone is stored and served as a Hit."""
    stack, origin = raw
    path = f"/products/interim-{uuid.uuid4().hex[:10]}"
    origin.script(path, RawReply(STORABLE))
    head, rest = await on_the_wire(stack, path)
    assert head.startswith(b"HTTP/1.1 200") and fields(head)["x-cache-status"] == "Miss"
    assert rest == BODY
    await asyncio.sleep(0.2)
    again, _ = await on_the_wire(stack, path)
    assert fields(again)["x-cache-status"] == "Hit"
    assert len(origin.requests(path)) == 1
