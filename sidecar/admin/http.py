"""Just enough HTTP/1.1 for the admin API: one request per connection, read under limits.

`read_head` reads the request line and the header fields; `read_body` the body announced by
``Content-Length``. Anything outside the limits or the grammar raises `HttpError` with the
status to answer (400 malformed, 408 too slow -- raised by the caller's deadline --, 411 a
body without ``Content-Length``, 413 body too large, 414 request line too long, 417 an
unknown ``Expect``, 431 header fields too large or too many, 505 not HTTP/1.x) and a message
naming what is wrong. `encode_response` writes a response that closes the connection.

Strict where readers could disagree (request smuggling): lines end with CRLF, no
whitespace before a field's colon, no folded lines, no ``Transfer-Encoding``, one
``Content-Length``. Not supported: keep-alive and pipelining (every response closes the
connection), chunked bodies, absolute-form targets, HTTP/2.
"""

from __future__ import annotations

import asyncio
import json
import re
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

from sidecar.events import MAX_EVENT_BYTES

__all__ = [
    "CONTINUE",
    "HttpError",
    "Limits",
    "NoRequestError",
    "Request",
    "Response",
    "check_length",
    "continue_needed",
    "encode_response",
    "json_response",
    "read_body",
    "read_head",
]


@dataclass(frozen=True, slots=True)
class Limits:
    """What one client may send and hold (defaults are the production values)."""

    #: Bytes in the request line (method, target, version; CRLF not counted).
    max_request_line: int = 8 * 1024
    #: Bytes in all header lines together (CRLFs counted).
    max_header_bytes: int = 16 * 1024
    #: Header lines.
    max_headers: int = 64
    #: Bytes of body (an event may not be larger).
    max_body: int = MAX_EVENT_BYTES
    #: Seconds to receive a whole request, from the connection's first byte awaited.
    read_timeout_s: float = 10.0
    #: Seconds to hand the response to a client that does not read it.
    write_timeout_s: float = 10.0
    #: Connections open at once. A newcomer above it closes the oldest connection whose
    #: request head has not been read and authenticated yet; when every one has been, the
    #: newcomer is answered 503 at once and closed.
    max_connections: int = 32

    @property
    def stream_limit(self) -> int:
        """The StreamReader buffer limit: the longest line worth reading at all."""
        return max(self.max_request_line, self.max_header_bytes) + 2


class HttpError(Exception):
    """A request refused before any handler ran: `status`, a stable `result` label for
    metrics, a `message` for the client (and the log), extra response `headers`."""

    def __init__(
        self,
        status: int,
        result: str,
        message: str,
        headers: tuple[tuple[str, str], ...] = (),
    ) -> None:
        super().__init__(message)
        self.status = status
        self.result = result
        self.message = message
        self.headers = headers


class NoRequestError(HttpError):
    """The client closed the connection without sending a byte (a port probe, a TCP health
    check): answered 400 like any malformed request, but not worth a log line above DEBUG."""


@dataclass(frozen=True, slots=True)
class Request:
    """A request head. `path` and `query` are raw (still percent-encoded); header names
    are lower-cased, values latin-1 decoded with surrounding whitespace removed."""

    method: str
    path: str
    query: str
    version: str
    headers: tuple[tuple[str, str], ...]
    content_length: int

    def values(self, name: str) -> list[str]:
        """Every value of the header field `name` (lower-case), in order."""
        return [v for n, v in self.headers if n == name]

    def header(self, name: str) -> str | None:
        """The value of `name`; None when absent. HttpError 400 when it appears twice."""
        found = self.values(name)
        if len(found) > 1:
            raise HttpError(400, "bad_request", f"the {name} header appears {len(found)} times")
        return found[0] if found else None


@dataclass(frozen=True, slots=True)
class Response:
    status: int
    body: bytes = b""
    headers: tuple[tuple[str, str], ...] = ()
    content_type: str = "application/json"


_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_TARGET = re.compile(rb"/[!-~]*")
_VERSION = re.compile(rb"HTTP/(\d)\.(\d)")
# Field values: visible ASCII, space, tab and obs-text (0x80-0xFF); no other control byte.
_BAD_VALUE_BYTE = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")


def _show(data: bytes, limit: int = 40) -> str:
    text = ascii(data)[2:-1]
    return text if len(text) <= limit else text[: limit - 3] + "..."


async def _line(reader: asyncio.StreamReader, what: str, too_long: HttpError) -> bytes:
    """One CRLF-terminated line without its CRLF."""
    try:
        line = await reader.readuntil(b"\n")
    except asyncio.LimitOverrunError as exc:
        raise too_long from exc
    except asyncio.IncompleteReadError as exc:
        if what == "request line" and not exc.partial:
            raise NoRequestError(
                400, "bad_request", "the connection closed before the request line"
            ) from exc
        raise HttpError(400, "bad_request", f"the connection closed within the {what}") from exc
    if not line.endswith(b"\r\n"):
        raise HttpError(400, "bad_request", f"the {what} ends with a bare LF (use CRLF)")
    return line[:-2]


def _request_line(line: bytes, limits: Limits) -> tuple[str, str, str, str]:
    if len(line) > limits.max_request_line:
        raise HttpError(
            414,
            "too_large",
            f"the request line is {len(line)} bytes, more than the {limits.max_request_line}"
            " allowed",
        )
    parts = line.split(b" ")
    if len(parts) != 3:
        raise HttpError(
            400,
            "bad_request",
            f"the request line must be METHOD SP TARGET SP HTTP-VERSION, got {_show(line)!r}",
        )
    method, target, version = parts
    if not _TOKEN.fullmatch(method):
        raise HttpError(400, "bad_request", f"the method {_show(method)!r} is not a token")
    if not _TARGET.fullmatch(target):
        raise HttpError(
            400,
            "bad_request",
            f"the target {_show(target)!r} must be a path starting with '/' in visible ASCII",
        )
    m = _VERSION.fullmatch(version)
    if not m:
        raise HttpError(400, "bad_request", f"{_show(version)!r} is not an HTTP version")
    if m.group(1) != b"1":
        raise HttpError(505, "bad_request", f"HTTP/{m.group(1).decode()} is not supported")
    path, _, query = target.decode("ascii").partition("?")
    return method.decode("ascii"), path, query, version.decode("ascii")


def _field(line: bytes) -> tuple[str, str]:
    if line[:1] in (b" ", b"\t"):
        raise HttpError(400, "bad_request", "a folded header line (obs-fold) is not accepted")
    name, colon, value = line.partition(b":")
    if not colon:
        raise HttpError(400, "bad_request", f"the header line {_show(line)!r} has no colon")
    if not _TOKEN.fullmatch(name):
        raise HttpError(
            400, "bad_request", f"the header name {_show(name)!r} is not a token (no spaces)"
        )
    bad = _BAD_VALUE_BYTE.search(value)
    if bad:
        raise HttpError(
            400,
            "bad_request",
            f"the {name.decode('ascii').lower()} header has a control byte {_show(bad.group())!r}",
        )
    return name.decode("ascii").lower(), value.strip(b" \t").decode("latin-1")


def _content_length(headers: tuple[tuple[str, str], ...]) -> int:
    if any(n == "transfer-encoding" for n, _ in headers):
        raise HttpError(
            411,
            "bad_request",
            "Transfer-Encoding is not accepted: send the body with a Content-Length",
        )
    values = {v for n, v in headers if n == "content-length"}
    if not values:
        return 0
    if len(values) > 1:
        raise HttpError(400, "bad_request", "Content-Length is given twice with different values")
    (text,) = values
    if not (text.isascii() and text.isdigit()) or len(text) > 18:
        raise HttpError(400, "bad_request", f"Content-Length {text[:20]!r} is not a byte count")
    return int(text)


async def read_head(reader: asyncio.StreamReader, limits: Limits) -> Request:
    """The request line and header fields (the body is left in `reader`)."""
    line_too_long = HttpError(
        414, "too_large", f"the request line is longer than {limits.max_request_line} bytes"
    )
    method, path, query, version = _request_line(
        await _line(reader, "request line", line_too_long), limits
    )
    headers_too_large = HttpError(
        431, "too_large", f"the header fields are larger than {limits.max_header_bytes} bytes"
    )
    headers: list[tuple[str, str]] = []
    total = 0
    while True:
        line = await _line(reader, "header fields", headers_too_large)
        total += len(line) + 2
        if total > limits.max_header_bytes:
            raise headers_too_large
        if not line:
            break
        if len(headers) == limits.max_headers:
            raise HttpError(431, "too_large", f"more than {limits.max_headers} header lines")
        headers.append(_field(line))
    fields = tuple(headers)
    if version == "HTTP/1.1" and not any(n == "host" for n, _ in fields):
        raise HttpError(400, "bad_request", "an HTTP/1.1 request needs a Host header")
    return Request(method, path, query, version, fields, _content_length(fields))


def continue_needed(request: Request) -> bool:
    """Does the client wait for ``100 Continue`` before sending its body? HttpError 417
    for an expectation other than ``100-continue``."""
    expect = request.header("expect")
    if expect is None:
        return False
    if expect.lower() != "100-continue":
        raise HttpError(417, "bad_request", f"unknown expectation {expect[:40]!r}")
    return request.content_length > 0 and request.version == "HTTP/1.1"


def check_length(request: Request, limits: Limits) -> None:
    """HttpError 413 when the announced body is larger than `limits.max_body` (checked
    after authentication, before a byte of the body is read)."""
    if request.content_length > limits.max_body:
        raise HttpError(
            413,
            "too_large",
            f"the body is {request.content_length} bytes, more than the {limits.max_body} allowed",
        )


async def read_body(reader: asyncio.StreamReader, request: Request) -> bytes:
    """Exactly `request.content_length` bytes (`check_length` first)."""
    if not request.content_length:
        return b""
    try:
        return await reader.readexactly(request.content_length)
    except asyncio.IncompleteReadError as exc:
        raise HttpError(
            400,
            "bad_request",
            f"the body ended after {len(exc.partial)} of {request.content_length} bytes",
        ) from exc


CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"


def json_response(status: int, fields: dict[str, Any], **headers: str) -> Response:
    """A JSON response (`headers` names use ``_`` for ``-``)."""
    body = json.dumps(fields, sort_keys=True, ensure_ascii=True).encode("ascii") + b"\n"
    extra = tuple((k.replace("_", "-"), v) for k, v in headers.items())
    return Response(status, body, extra)


def encode_response(response: Response) -> bytes:
    """The response's bytes, ``Connection: close`` and ``Cache-Control: no-store``
    included; no body and no Content-Length on a 204."""
    try:
        reason = HTTPStatus(response.status).phrase
    except ValueError:
        reason = "Unknown"
    lines = [f"HTTP/1.1 {response.status} {reason}"]
    if response.status != 204:
        lines.append(f"Content-Length: {len(response.body)}")
        if response.body:
            lines.append(f"Content-Type: {response.content_type}")
    lines += ["Cache-Control: no-store", "Connection: close"]
    lines += [f"{name}: {value}" for name, value in response.headers]
    head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    return head if response.status == 204 else head + response.body
