"""One HTTP GET for `strata cost`: bounded in total time and size, following no redirect.

`get(url, timeout)` returns the body of a 200 answer. The whole exchange after the connection
is made (request, status line, headers, body) must end within what is left of `timeout`
seconds, measured on a monotonic clock: a watchdog shuts the socket down at the deadline,
and the body is read in chunks, each with the time left as its socket timeout. A server that
trickles a byte a second is cut off at the deadline (a socket timeout alone bounds one read,
not the answer). A redirect is an error naming where it points (`SourceError`), never
followed; so is any other status but 200 (`HTTPStatusError`, which carries the start of the
body for callers whose servers explain errors in it). Proxies from the environment are not
used.

Not guaranteed: a bound on name resolution (``getaddrinfo`` takes no timeout: give an IP
address to be sure); TLS certificate checks beyond Python's defaults.
"""

from __future__ import annotations

import contextlib
import http.client
import socket
import threading
import time
import urllib.parse

from sidecar.cost.errors import SourceError

__all__ = ["MAX_BYTES", "HTTPStatusError", "get"]

#: Largest page or answer read (a sidecar's page is ~30 KiB).
MAX_BYTES = 16 * 1024 * 1024
#: How much of an error answer's body is kept (`HTTPStatusError.body`).
ERROR_BODY_BYTES = 64 * 1024
_CHUNK = 64 * 1024


class HTTPStatusError(SourceError):
    """The server answered with a status other than 200 and not a redirect."""

    def __init__(self, message: str, status: int, body: bytes) -> None:
        super().__init__(message)
        self.status = status
        self.body = body


class _Watchdog:
    """Shuts a connection's socket down at a deadline (unblocking any read on it)."""

    def __init__(self, conn: http.client.HTTPConnection, seconds: float) -> None:
        self._conn = conn
        self.fired = threading.Event()
        self._timer = threading.Timer(max(seconds, 0.0), self._fire)
        self._timer.daemon = True

    def _fire(self) -> None:
        self.fired.set()
        sock = self._conn.sock
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def __enter__(self) -> _Watchdog:
        self._timer.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._timer.cancel()


def _connection(url: str, timeout: float) -> tuple[http.client.HTTPConnection, str]:
    parts = urllib.parse.urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        raise SourceError(f"{url[:120]!r}: not a valid port") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise SourceError(f"{url[:120]!r}: not an http:// or https:// URL")
    cls = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return cls(parts.hostname, port, timeout=timeout), target


def _body(
    conn: http.client.HTTPConnection,
    reply: http.client.HTTPResponse,
    deadline: float,
    limit: int,
) -> bytes:
    """Up to `limit` + 1 bytes of `reply`'s body, read in chunks against `deadline`."""
    chunks: list[bytes] = []
    size = 0
    while size <= limit:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError
        if conn.sock is not None:
            conn.sock.settimeout(left)
        chunk = reply.read1(min(_CHUNK, limit + 1 - size))
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)


def get(url: str, timeout: float, *, max_bytes: int = MAX_BYTES) -> bytes:
    """The body of `url`'s 200 answer, all of it read within `timeout` seconds.

    `SourceError` naming `url` when it cannot be reached, does not answer in time, redirects,
    answers with another status (`HTTPStatusError`), or sends more than `max_bytes`."""
    deadline = time.monotonic() + timeout
    conn, target = _connection(url, timeout)
    watchdog: _Watchdog | None = None
    try:
        conn.connect()
        watchdog = _Watchdog(conn, deadline - time.monotonic())
        with watchdog:
            conn.request("GET", target, headers={"User-Agent": "strata-cost"})
            reply = conn.getresponse()
            if 300 <= reply.status < 400:
                where = reply.getheader("Location", "nowhere given")
                raise SourceError(
                    f"{url}: redirects to {where[:200]} (HTTP {reply.status}); redirects are "
                    "not followed: give the URL it should be read from"
                )
            if reply.status != 200:
                body = _body(conn, reply, deadline, ERROR_BODY_BYTES)
                raise HTTPStatusError(
                    f"{url}: HTTP {reply.status} {reply.reason}", reply.status, body
                )
            data = _body(conn, reply, deadline, max_bytes)
            if watchdog.fired.is_set():
                raise TimeoutError
            if len(data) > max_bytes:
                raise SourceError(f"{url}: answer larger than {max_bytes} bytes")
            if reply.length:  # Content-Length announced more than came
                raise SourceError(f"{url}: answer cut short ({reply.length} bytes missing)")
    except SourceError:
        raise
    except (OSError, http.client.HTTPException, ValueError) as exc:
        late = time.monotonic() >= deadline or (watchdog is not None and watchdog.fired.is_set())
        if late or isinstance(exc, TimeoutError):
            raise SourceError(f"{url}: no complete answer within {timeout:g} s") from None
        raise SourceError(f"{url}: unreachable ({exc or type(exc).__name__})") from None
    finally:
        conn.close()
    return data
