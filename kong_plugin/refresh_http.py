"""The one HTTP request of a background refresh (`kong_plugin.refresh`): a GET to the
service's host and port (`kong_plugin.upstream_target.Destination`), bounded in time, in
header lines and in body bytes, following no redirect (a 3xx is an answer like any other).

* Connects only to `Destination.host`:`port` -- the service's, never a name from the
  client's request (a ``preserve_host`` route sends the client's ``Host`` as the header
  and TLS name, as Kong does, but connects to the service all the same).
* TLS as Kong proxies (``kong/templates/nginx_kong.lua``): the certificate is checked
  against `Destination.tls_name` only with `Destination.tls_verify` (the service's
  ``tls_verify: true``, against the system's trusted CAs); otherwise any certificate is
  accepted, as nginx's ``proxy_ssl_verify off``. The name goes out as SNI unless it is an
  IP address.
* One deadline for the whole exchange: the connect and every read wait at most the time
  left, and a timer shuts the socket when the time is up (a slow trickle of bytes cannot
  stretch it).
* At most 100 response header lines of at most 64 KiB each (``http.client``'s limits; more
  fails the refresh); the body is read up to ``max_body + 1`` bytes and the connection is
  closed (one byte over the bound is enough for the store decision to say ``too-large``).
  A body shorter than its ``Content-Length`` (the origin closed early) fails the refresh.
* The response's header map has Kong's shape (lower-cased names, a list for repeated
  lines; values decoded as UTF-8 -- a value that is not fails the refresh: such a response
  could not be replayed through the PDK), without what nginx's proxy
  module hides by default (``X-Pad``, ``X-Accel-*``); an obsolete line folding becomes
  one space (RFC 9112 §5.2).

Not guaranteed: the name lookup (``getaddrinfo``) is not bounded by the deadline (the
system resolver's own timeouts apply); ``tls_verify_depth`` is not applied; nothing is
retried (one attempt per refresh).
"""

from __future__ import annotations

import contextlib
import http.client
import re
import socket
import ssl
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Literal

from kong_plugin.upstream_target import Destination

FailureKind = Literal["timeout", "connection", "protocol"]
_FOLD = re.compile(r"\r?\n[ \t]*")


class FetchError(Exception):
    """The refresh got no usable answer: `kind` is ``timeout`` (the deadline passed),
    ``connection`` (could not connect, TLS failed, the connection broke) or ``protocol``
    (a malformed or oversized response, or a request header that cannot be sent)."""

    def __init__(self, kind: FailureKind, message: str) -> None:
        super().__init__(message)
        self.kind: FailureKind = kind


@dataclass(frozen=True, slots=True)
class Fetched:
    """The upstream's answer: status, header map (Kong's shape), body (cut at the bound)."""

    status: int
    headers: Mapping[str, str | list[str]]
    body: bytes


@lru_cache(maxsize=2)
def _tls_context(verify: bool) -> ssl.SSLContext:
    if verify:
        return ssl.create_default_context()
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


class _Connection(http.client.HTTPConnection):
    """An HTTP/1.1 connection to the destination, plain or TLS, that the deadline timer
    can cut from another thread."""

    def __init__(self, dest: Destination, deadline: float) -> None:
        super().__init__(dest.host, dest.port, timeout=max(0.0, deadline - time.monotonic()))
        self._dest = dest
        self._deadline = deadline
        self._lock = threading.Lock()
        self._aborted = False

    @property
    def aborted(self) -> bool:
        """The deadline timer cut the connection."""
        return self._aborted

    def left(self) -> float:
        left = self._deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("refresh deadline passed")
        return left

    def connect(self) -> None:
        dest = self._dest
        sock = socket.create_connection((dest.host, dest.port), timeout=self.left())
        if dest.scheme == "https":
            sock.settimeout(self.left())
            sock = _tls_context(dest.tls_verify).wrap_socket(sock, server_hostname=dest.tls_name)
        sock.settimeout(self.left())
        with self._lock:
            self.sock = sock
            if self._aborted:
                self._cut()

    def abort(self) -> None:
        """Cut the connection now (the timer's job): a blocked read returns at once."""
        with self._lock:
            self._aborted = True
            self._cut()

    def _cut(self) -> None:
        if self.sock is not None:
            # the plain socket's shutdown, also under TLS: no TLS close handshake
            with contextlib.suppress(OSError):
                socket.socket.shutdown(self.sock, socket.SHUT_RDWR)


def _header_map(lines: Sequence[tuple[str, str]]) -> dict[str, str | list[str]]:
    """``http.client``'s (latin-1) header lines as Kong's map (module docstring)."""
    out: dict[str, list[str]] = {}
    for name, raw in lines:
        low = name.lower()
        if low == "x-pad" or low.startswith("x-accel-"):
            continue
        value = _FOLD.sub(" ", raw).encode("latin-1", "replace")
        # a value that is not UTF-8 could not be replayed through the PDK (nor is such a
        # response ever stored in the foreground): the refresh fails (`ValueError`)
        out.setdefault(low, []).append(value.decode("utf-8"))
    return {k: (v[0] if len(v) == 1 else v) for k, v in out.items()}


def fetch(
    dest: Destination,
    headers: Sequence[tuple[str, str]],
    timeout_s: float,
    max_body: int,
) -> Fetched:
    """GET `dest` with `headers` (besides ``Host``); raise `FetchError` on no answer."""
    deadline = time.monotonic() + timeout_s
    conn = _Connection(dest, deadline)
    timer = threading.Timer(timeout_s, conn.abort)
    timer.daemon = True
    timer.start()
    try:
        conn.putrequest("GET", dest.target, skip_host=True, skip_accept_encoding=True)
        conn.putheader("Host", dest.host_header.encode("utf-8", "surrogateescape"))
        for name, value in headers:
            conn.putheader(name, value.encode("utf-8", "surrogateescape"))
        conn.endheaders()
        response = conn.getresponse()
        if conn.sock is not None:
            conn.sock.settimeout(conn.left())
        body = response.read(max_body + 1)
        if conn.aborted:  # a body read to the end of the connection was cut short
            raise TimeoutError("refresh deadline passed")
        if response.length and len(body) <= max_body:  # `read` does not raise for this
            raise http.client.IncompleteRead(body, response.length)
        return Fetched(response.status, _header_map(response.getheaders()), body)
    except TimeoutError as exc:
        raise FetchError("timeout", f"no answer within {timeout_s:g} s") from exc
    except OSError as exc:  # TLS errors included (certificate checks too)
        if conn.aborted:
            raise FetchError("timeout", f"no answer within {timeout_s:g} s") from exc
        raise FetchError("connection", f"{type(exc).__name__}: {exc}") from exc
    except (http.client.HTTPException, ValueError) as exc:
        if conn.aborted:
            raise FetchError("timeout", f"no answer within {timeout_s:g} s") from exc
        raise FetchError("protocol", f"{type(exc).__name__}: {exc}") from exc
    finally:
        timer.cancel()
        conn.close()
