"""What nginx itself does to a request's or a response's headers, before or after Kong's code.

Size limits are approximated on byte counts (nginx's buffer accounting differs in detail); no
other nginx directive is emulated here.
"""

from __future__ import annotations

from collections.abc import Sequence

from aiohttp import hdrs, web
from multidict import CIMultiDict


class KongResponse(web.StreamResponse):
    """A StreamResponse that, like nginx with ``default_type ''``, invents no Content-Type, and
    sends a ``Content-Length`` on a 304 or a 1xx when one was set (nginx's header filter keeps
    it; aiohttp would drop it)."""

    async def _prepare_headers(self) -> None:
        had_type = hdrs.CONTENT_TYPE in self.headers
        keep = self.status == 304 or self.status < 200
        length = self.headers.get(hdrs.CONTENT_LENGTH) if keep else None
        await super()._prepare_headers()
        if not had_type:
            self.headers.popall(hdrs.CONTENT_TYPE, None)
        if length is not None:
            self.headers[hdrs.CONTENT_LENGTH] = length


class KongWholeResponse(KongResponse):
    """A :class:`KongResponse` whose body is known when it is sent: the head goes out with the
    body in one write (what the client receives is the same, in one segment)."""

    _send_headers_immediately = False


#: nginx's ``large_client_header_buffers`` default (Kong does not set it): 4 buffers of 8k.
CLIENT_HEADER_LINE_MAX = 8192
CLIENT_HEADER_BLOCK_MAX = 4 * 8192
#: nginx's ``proxy_buffer_size`` default, one memory page (Kong does not set it): the
#: upstream's status line and headers must fit in it.
UPSTREAM_HEADER_BLOCK_MAX = 4096


def _line(name: bytes, value: bytes) -> int:
    return len(name) + 2 + len(value) + 2  # "name: value\r\n"


def client_headers_too_large(request_line: int, raw: Sequence[tuple[bytes, bytes]]) -> bool:
    """nginx answers 494 (Kong's error handler turns it into 400 "Request header or cookie too
    large") when one header line does not fit a large buffer or all of them do not fit the
    four (approximated on the byte count; nginx's buffer accounting differs in detail)."""
    lines = [_line(k, v) for k, v in raw]
    return any(n > CLIENT_HEADER_LINE_MAX for n in lines) or (
        request_line + sum(lines) > CLIENT_HEADER_BLOCK_MAX
    )


def upstream_headers_too_large(status_line: int, raw: Sequence[tuple[bytes, bytes]]) -> bool:
    """nginx: "upstream sent too big header while reading response header from upstream",
    a 502, when the status line and headers do not fit ``proxy_buffer_size``."""
    return status_line + sum(_line(k, v) for k, v in raw) + 2 > UPSTREAM_HEADER_BLOCK_MAX


def nginx_header_filter(status: int, headers: CIMultiDict[str]) -> CIMultiDict[str]:
    """What nginx's ``ngx_http_header_filter`` does to headers set through ``ngx.header``
    (exits, and buffered responses Kong copied with ``kong.response.set_headers``): a 204 loses
    ``Content-Type``, ``Last-Modified`` and ``Content-Length``; a ``Last-Modified`` on any status
    but 200, 206 and 304 is dropped."""
    if status == 204:
        for name in ("content-type", "last-modified", "content-length"):
            headers.popall(name, None)
    elif status not in (200, 206, 304):
        headers.popall("last-modified", None)
    return headers
