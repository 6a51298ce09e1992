"""Upstream interim (1xx) responses, as Kong 3.9's proxy (OpenResty 1.25.3.2, nginx 1.25.3)
handles them: it does not know them.

What nginx 1.25.3 does, read in its source (``src/http/modules/ngx_http_proxy_module.c``
``ngx_http_proxy_process_status_line``, ``ngx_http_proxy_process_header``,
``ngx_http_proxy_input_filter_init``; ``src/http/ngx_http_upstream.c``
``ngx_http_upstream_process_request``). Neither OpenResty's nor Kong's nginx patches touch
this; 1xx handling in the proxy came with nginx 1.29.0 ("Upstream: early hints support"):

* the first status line the upstream sends is the response. A ``100``, ``102`` or ``103``
  (any 1xx but ``101``, which is an upgrade) is taken as the final status, its header
  fields as the response's;
* its body is framed like any other: with neither ``Content-Length`` nor chunked coding
  (an interim response has neither), it is everything the upstream sends until it closes
  the connection -- the rest of the exchange, the real final response's status line,
  header and body included, as bytes (the input filter's comment "no 1xx since we don't
  send Expect and Upgrade" shows the case was not expected);
* if the upstream keeps the connection open (Kong asks it to: ``Connection: keep-alive``),
  that body never ends: after ``read_timeout`` the read fails ("upstream timed out"), the
  request is finalized with an error after its header was sent.

In Kong, with buffered proxying (a plugin has a ``response`` handler; ``kong/init.lua``
``Kong.response``), the ``ngx.location.capture`` subrequest returns that 1xx as
``res.status`` with the 1xx's fields in ``res.header`` and those bytes in ``res.body``; the
``response`` phase sees status 1xx. The response then goes out through ``ngx.status``,
which leaves no status line (lua-nginx-module ``ngx_http_lua_ffi_set_resp_status``), and
nginx writes ``HTTP/1.1 103 `` with no reason phrase, no ``Transfer-Encoding`` (the chunked
filter skips statuses below 200) and the body as raw bytes: a client reads an interim
response, then the upstream's real final response from those bytes. When the upstream keeps
the connection open, the subrequest ends truncated after ``read_timeout``, with the 1xx
status (lua-nginx-module ``ngx_http_lua_post_subrequest``): Kong's error handler answers
with that status and "The upstream server responded with 103"; the ``response`` phase does
not run, the ``log`` phase does. Without buffering, nginx streams the 1xx head (with the
upstream's status line) and the bytes that follow, and cuts the client connection after
``read_timeout`` if the upstream does not close.

Here: `InterimAwareResponse` records the interim messages aiohttp's client reads past (it
skips every 1xx but 101), and `as_final` turns such a response back into what nginx saw.

Not emulated: byte-exact framing of what follows the first interim response -- it is
rebuilt from aiohttp's parse (header lines as received, a chunked body as one chunk, no
chunk extensions or trailers).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import aiohttp
from aiohttp.http_parser import RawResponseMessage
from multidict import CIMultiDict

#: 101 is an upgrade: aiohttp and nginx both take it as the final response.
SWITCHING_PROTOCOLS = 101


def is_interim(code: int) -> bool:
    return 100 <= code < 200 and code != SWITCHING_PROTOCOLS


class InterimAwareResponse(aiohttp.ClientResponse):
    """An aiohttp client response that keeps the interim (1xx) messages read before it
    (`interim`, in order) and the final message (`final`)."""

    interim: tuple[RawResponseMessage, ...] = ()
    final: RawResponseMessage | None = None

    async def start(self, connection: Any) -> InterimAwareResponse:
        protocol = connection.protocol
        seen: list[RawResponseMessage] = []
        read: Callable[[], Awaitable[tuple[RawResponseMessage, Any]]] = protocol.read

        async def recording_read() -> tuple[RawResponseMessage, Any]:
            message, payload = await read()
            seen.append(message)
            return message, payload

        protocol.read = recording_read  # the instance attribute shadows the method
        try:
            await super().start(connection)
        finally:
            del protocol.read
        self.interim = tuple(m for m in seen if is_interim(m.code))
        self.final = seen[-1] if seen else None
        return self


@dataclass(frozen=True)
class InterimAsFinal:
    """What nginx took for the response: the first interim one's `status`, `reason` and
    `headers`, a body of the `rest` of the exchange, and whether that body ends (`ends`:
    the upstream closes the connection after its final response)."""

    status: int
    reason: str
    headers: CIMultiDict[str]
    rest: bytes
    ends: bool


def _head(message: RawResponseMessage) -> bytes:
    version = message.version
    lines = [f"HTTP/{version.major}.{version.minor} {message.code} {message.reason}".encode()]
    lines.extend(name + b": " + value for name, value in message.raw_headers)
    return b"\r\n".join(lines) + b"\r\n\r\n"


def _framed(message: RawResponseMessage, body: bytes) -> bytes:
    if not message.chunked:
        return body
    chunk = f"{len(body):x}\r\n".encode() + body + b"\r\n" if body else b""
    return chunk + b"0\r\n\r\n"


def following_bytes(
    interim: Sequence[RawResponseMessage], final: RawResponseMessage, body: bytes
) -> bytes:
    """The bytes after the first interim response: further interim heads, then the final
    response's head and (framed) body."""
    heads = b"".join(_head(m) for m in interim[1:])
    return heads + _head(final) + _framed(final, body)


def _upstream_closes(final: RawResponseMessage) -> bool:
    """The upstream closes the connection after `final` (so nginx's read ends)."""
    delimited = final.chunked or "content-length" in final.headers
    return final.should_close or not delimited


def as_final(resp: InterimAwareResponse, body: bytes) -> InterimAsFinal | None:
    """The response nginx 1.25.3 would have seen (module docstring), or None when the
    upstream sent no interim response. `body` is the final response's body as read."""
    if not resp.interim or resp.final is None:
        return None
    first = resp.interim[0]
    return InterimAsFinal(
        status=first.code,
        reason=first.reason,
        headers=CIMultiDict(first.headers),
        rest=following_bytes(resp.interim, resp.final, body),
        ends=_upstream_closes(resp.final),
    )
