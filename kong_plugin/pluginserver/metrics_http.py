"""The plugin server's ``/metrics`` endpoint (``--metrics-listen HOST:PORT``): HTTP/1.x,
one request per connection, served by a thread of its own with its own event loop, in the
supervisor (never in a worker's loop, so a scraper cannot slow Kong's requests down).

``GET`` or ``HEAD /metrics`` (any query) answers Prometheus' text format from `collect`;
any other path is 404, any other method 405, a request head that is not HTTP 400.

Against hostile clients: at most `MAX_CONNECTIONS` at once. A connection beyond that
closes the oldest one still sending its request head (so idle or slowloris connections
cannot shut a scraper out: a real scrape sends its head at once and is then no longer
evictable); when every connection is past its head, the new one is closed at once. A
request head of at most `MAX_HEAD_BYTES` read within `HEAD_TIMEOUT_S`, the answer written
within `WRITE_TIMEOUT_S`, the body never read. How often workers are asked
is bounded by `collect` (`kong_plugin.pluginserver.metrics_node`).

A port that cannot be bound does not stop the plugin server: the error is logged and the
bind tried again every `BIND_RETRY_S` (a previous plugin server may still hold it while it
stops); the bound address is logged (port 0: a free port).

Not guaranteed: keep-alive, HTTP/2, TLS, authentication (bind it to a private address);
that a port free at start stays free for the retries.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import threading
from collections.abc import Awaitable, Callable

from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4

log = logging.getLogger("strata.pluginserver")

MAX_CONNECTIONS = 16
MAX_HEAD_BYTES = 8192
HEAD_TIMEOUT_S = 5.0
WRITE_TIMEOUT_S = 10.0
BIND_RETRY_S = 5.0
FLAG = "--metrics-listen"

Collect = Callable[[], Awaitable[bytes]]


def parse_listen(value: str) -> tuple[str, int]:
    """``HOST:PORT`` (IPv6 as ``[::1]:9000``; port 0: a free one) as (host, port); a
    ValueError naming `FLAG` otherwise."""
    host, sep, port_text = value.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ValueError(f"{FLAG} {value!r}: {host!r} is not an IPv6 address") from None
        return host, _port(value, port_text)
    if not sep or not host or ":" in host or any(c.isspace() for c in host):
        raise ValueError(f"{FLAG} must be HOST:PORT (IPv6 as [ADDR]:PORT), not {value!r}")
    return host, _port(value, port_text)


def _port(value: str, text: str) -> int:
    if not text.isdigit() or not 0 <= int(text) <= 65535:
        raise ValueError(f"{FLAG} {value!r}: the port must be 0..65535")
    return int(text)


class MetricsEndpoint:
    """``/metrics`` on (`host`, `port`), answered by `collect` (module doc)."""

    def __init__(self, host: str, port: int, collect: Collect) -> None:
        self.host = host
        self.port = port
        self._collect = collect
        self._open = 0
        #: connections still sending their request head, oldest first
        self._heads: dict[asyncio.StreamWriter, None] = {}
        #: connections closed to make room, whose slot was handed on already
        self._evicted: set[asyncio.StreamWriter] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread: threading.Thread | None = None
        #: (host, port) once bound; set when the first bind attempt ended (either way).
        self.address: tuple[str, int] | None = None
        self.tried = threading.Event()

    def start(self) -> MetricsEndpoint:
        """Serve from a daemon thread; returns at once (see `tried`, `address`)."""
        self._thread = threading.Thread(target=self._run, name="strata-metrics", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout_s: float = 2.0) -> None:
        """Close the endpoint (the connections being served are dropped)."""
        loop, stop = self._loop, self._stop
        if loop is not None and stop is not None:
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(stop.set)
        if self._thread is not None:
            self._thread.join(timeout_s)

    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except Exception:  # pragma: no cover - a bug here must not take the server down
            log.exception("metrics endpoint stopped")
        finally:
            self.tried.set()

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        server = None
        failed = False
        while server is None:
            try:
                server = await asyncio.start_server(
                    self._handle, self.host, self.port, limit=MAX_HEAD_BYTES, backlog=64
                )
            except OSError as exc:
                if not failed:
                    log.error(  # noqa: TRY400 - an expected condition, not a bug
                        "%s %s:%d cannot be bound (%s); the plugin server serves Kong without "
                        "/metrics and tries again every %.0f s",
                        FLAG,
                        self.host,
                        self.port,
                        exc.strerror or exc,
                        BIND_RETRY_S,
                    )
                failed = True
                self.tried.set()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), BIND_RETRY_S)
                if self._stop.is_set():
                    return
        sockname = server.sockets[0].getsockname()
        self.address = (str(sockname[0]), int(sockname[1]))
        log.info("plugin server metrics on http://%s:%d/metrics", *self._shown())
        self.tried.set()
        async with server:
            await self._stop.wait()

    def _shown(self) -> tuple[str, int]:
        assert self.address is not None
        host, port = self.address
        return (f"[{host}]" if ":" in host else host), port

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._open >= MAX_CONNECTIONS:
            if not self._heads:
                writer.close()
                return
            oldest = next(iter(self._heads))
            del self._heads[oldest]
            self._evicted.add(oldest)  # its slot is this connection's from now on
            self._open -= 1
            oldest.close()  # its head read ends with the connection
        self._open += 1
        self._heads[writer] = None
        try:
            try:
                status, body, head_only = await self._answer(reader)
            finally:
                self._heads.pop(writer, None)
            await self._write(writer, status, body, head_only)
        except (TimeoutError, ConnectionError, asyncio.IncompleteReadError):
            pass
        except Exception:
            log.exception("metrics request failed")
        finally:
            if writer in self._evicted:
                self._evicted.discard(writer)
            else:
                self._open -= 1
            writer.close()

    async def _answer(self, reader: asyncio.StreamReader) -> tuple[int, bytes, bool]:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), HEAD_TIMEOUT_S)
        except asyncio.LimitOverrunError:
            return 431, b"request head too large\n", False
        parts = head.split(b"\r\n", 1)[0].split(b" ")
        if len(parts) != 3 or not parts[2].startswith(b"HTTP/1."):
            return 400, b"bad request\n", False
        method, target = parts[0], parts[1]
        if target.split(b"?", 1)[0] != b"/metrics":
            return 404, b"not found: try /metrics\n", False
        if method not in (b"GET", b"HEAD"):
            return 405, b"method not allowed\n", False
        return 200, await self._collect(), method == b"HEAD"

    @staticmethod
    async def _write(
        writer: asyncio.StreamWriter, status: int, body: bytes, head_only: bool
    ) -> None:
        reason = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed"}
        kind = CONTENT_TYPE_PLAIN_0_0_4 if status == 200 else "text/plain; charset=utf-8"
        head = (
            f"HTTP/1.1 {status} {reason.get(status, 'Request Header Fields Too Large')}\r\n"
            f"Content-Type: {kind}\r\nContent-Length: {len(body)}\r\n"
            "Connection: close\r\n\r\n"
        )
        writer.write(head.encode("ascii") + (b"" if head_only else body))
        await asyncio.wait_for(writer.drain(), WRITE_TIMEOUT_S)
