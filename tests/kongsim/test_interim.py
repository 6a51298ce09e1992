"""An upstream's interim (1xx) responses through kongsim, as through Kong 3.9's nginx 1.25.3
(`kongsim.http.interim`): the first one is taken for the response, the rest of the exchange
is its body, read until the upstream closes or ``read_timeout``. Read on the wire with a raw
client, since an HTTP client hides interim responses."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
import pytest_asyncio

from kongsim.testing import KongSim
from tests.support.raw_origin import RawOrigin, RawReply, final, interim

from .conftest import ALL_PLUGINS, write_config

pytestmark = pytest.mark.asyncio(loop_scope="module")

READ_TIMEOUT_MS = 400
CONFIG = """
_format_version: "3.0"
services:
- name: raw
  url: http://{origin}
  read_timeout: {read_timeout}
  routes:
  - {{name: buffered, paths: [/buffered], plugins: [{{name: ks-response}}]}}
  - {{name: streamed, paths: [/streamed]}}
"""
EARLY_HINTS = interim("103 Early Hints", [("Link", "</s.css>; rel=preload"), ("X-Interim", "1")])
BODY = b'{"final": true}'
FINAL = final("200 OK", [("Content-Type", "application/json"), ("X-Final", "1")], BODY)
KEPT_OPEN = final("200 OK", [("Content-Type", "application/json")], BODY, close=False)


class Env:
    def __init__(self, sim: KongSim, origin: RawOrigin) -> None:
        self.sim, self.origin = sim, origin

    async def raw(self, path: str, timeout: float = 5.0) -> tuple[bytes, bytes]:
        """(head, everything after it) of what a raw client reads until kongsim closes."""
        host, port = self.sim.base_url.removeprefix("http://").rsplit(":", 1)
        reader, writer = await asyncio.open_connection(host, int(port))
        writer.write(f"GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n".encode())
        data = await asyncio.wait_for(reader.read(), timeout)
        writer.close()
        head, _, rest = data.partition(b"\r\n\r\n")
        return head, rest


def field(head: bytes, name: str) -> str | None:
    for line in head.split(b"\r\n")[1:]:
        key, _, value = line.partition(b":")
        if key.strip().lower() == name.lower().encode():
            return value.strip().decode("latin-1")
    return None


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def env(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Env]:
    origin = RawOrigin()
    address = await origin.start()
    text = CONFIG.format(origin=address, read_timeout=READ_TIMEOUT_MS)
    path = write_config(Path(tmp_path_factory.mktemp("interim")), text)
    async with KongSim(path, strict=True, plugin_servers=ALL_PLUGINS, rpc_timeout=2.0) as sim:
        yield Env(sim, origin)
    await origin.stop()


@pytest.mark.parametrize(
    ("first", "status"),
    [(EARLY_HINTS, 103), (interim("100 Continue"), 100), (interim("102 Processing"), 102)],
)
async def test_buffered_the_first_interim_is_the_response_and_the_rest_its_body(
    env: Env, first: bytes, status: int
) -> None:
    env.origin.script("/close", RawReply(first + FINAL))
    head, rest = await env.raw("/buffered/close")
    # ngx.status leaves no status line: nginx writes no reason phrase, and no framing
    assert head.split(b"\r\n")[0] == f"HTTP/1.1 {status} ".encode()
    assert field(head, "Transfer-Encoding") is None and field(head, "Content-Length") is None
    # the response phase saw the 1xx, its fields, and the rest of the exchange as the body
    assert field(head, "X-Resp-Status") == str(status)
    assert field(head, "X-Resp-Upstream-Status") == str(status)
    assert field(head, "X-Resp-Body-Len") == str(len(FINAL))
    assert field(head, "Via") == "1.1 kong/3.9.3"
    if status == 103:
        assert (field(head, "X-Interim"), field(head, "Link")) == ("1", "</s.css>; rel=preload")
    assert rest == FINAL  # the upstream's final response, byte for byte, after the 1xx


async def test_further_interim_responses_are_part_of_the_body(env: Env) -> None:
    data = interim("102 Processing") + EARLY_HINTS + FINAL
    env.origin.script("/two", RawReply(data))
    head, rest = await env.raw("/buffered/two")
    assert head.startswith(b"HTTP/1.1 102 ")
    assert rest == EARLY_HINTS + FINAL


async def test_an_http_client_reads_the_upstreams_final_response_after_the_interim(
    env: Env,
) -> None:
    env.origin.script("/client", RawReply(EARLY_HINTS + FINAL))
    async with (
        aiohttp.ClientSession() as http,
        http.get(env.sim.base_url + "/buffered/client") as resp,
    ):
        assert (resp.status, await resp.read()) == (200, BODY)
        assert resp.headers["X-Final"] == "1"
        # what Kong and the plugin set went out on the interim head, not on this one
        assert "Via" not in resp.headers and "X-Resp-Status" not in resp.headers


async def test_buffered_an_upstream_that_keeps_the_connection_times_out(env: Env) -> None:
    """Kong.response: the subrequest ends truncated with the 1xx status; Kong's error
    handler answers with it; no response phase."""
    env.origin.script("/keep", RawReply(EARLY_HINTS + KEPT_OPEN, close=False))
    loop = asyncio.get_running_loop()
    started = loop.time()
    head, rest = await env.raw("/buffered/keep")
    assert loop.time() - started >= READ_TIMEOUT_MS / 1000
    assert head.split(b"\r\n")[0] == b"HTTP/1.1 103 "
    assert field(head, "X-Resp-Status") is None
    assert field(head, "Content-Length") == str(len(rest))
    # kong_error_handlers: no Accept, so error_default_type (text/plain)
    assert rest.startswith(b"The upstream server responded with 103\n")


async def test_streamed_the_interim_head_goes_out_with_the_upstreams_status_line(
    env: Env,
) -> None:
    env.origin.script("/stream", RawReply(EARLY_HINTS + FINAL))
    head, rest = await env.raw("/streamed/stream")
    assert head.split(b"\r\n")[0] == b"HTTP/1.1 103 Early Hints"
    assert field(head, "X-Interim") == "1" and field(head, "Via") == "1.1 kong/3.9.3"
    assert rest == FINAL


async def test_streamed_an_upstream_that_keeps_the_connection_is_cut_after_read_timeout(
    env: Env,
) -> None:
    env.origin.script("/stream-keep", RawReply(EARLY_HINTS + KEPT_OPEN, close=False))
    loop = asyncio.get_running_loop()
    started = loop.time()
    head, rest = await env.raw("/streamed/stream-keep")
    assert loop.time() - started >= READ_TIMEOUT_MS / 1000
    assert head.startswith(b"HTTP/1.1 103 Early Hints")
    assert rest == KEPT_OPEN  # forwarded, then the connection was cut


async def test_a_final_response_without_interim_is_unchanged(env: Env) -> None:
    env.origin.script("/plain", RawReply(FINAL))
    head, rest = await env.raw("/buffered/plain")
    assert head.startswith(b"HTTP/1.1 200 OK")
    assert field(head, "X-Resp-Status") == "200"
    assert rest == BODY
