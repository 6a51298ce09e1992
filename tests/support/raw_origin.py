"""A loopback HTTP/1.1 origin on a raw asyncio socket, for what aiohttp's server cannot send:
interim (1xx) responses before the final one, exact bytes on the wire.

``origin.script("/p", RawReply(interim("103 Early Hints", [("Link", "</a>")]) + final(...)))``:
each request for ``/p`` (the query is ignored for matching) gets exactly those bytes; with
``close`` (the default) the connection is closed after them, else the origin waits for the
next request on it, as a keep-alive HTTP/1.1 server does. An unscripted path gets a 404
with ``Cache-Control: no-store``. `RawOrigin.requests` gives the request heads received.

Not guaranteed: request bodies are not read (the tests send GET and HEAD only); pipelined
requests are not supported.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from dataclasses import dataclass, field

Fields = Sequence[tuple[str, str]]


def interim(status_line: str, fields: Fields = ()) -> bytes:
    """An interim response: ``HTTP/1.1 <status_line>``, `fields`, no body."""
    lines = [f"HTTP/1.1 {status_line}", *(f"{name}: {value}" for name, value in fields)]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def final(status_line: str, fields: Fields, body: bytes, *, close: bool = True) -> bytes:
    """A final response with a ``Content-Length`` (and ``Connection: close`` with
    `close`)."""
    all_fields = [*fields, ("Content-Length", str(len(body)))]
    if close:
        all_fields.append(("Connection", "close"))
    return interim(status_line, all_fields) + body


@dataclass(frozen=True)
class RawReply:
    """The bytes a request gets; `close`: close the connection after them."""

    data: bytes
    close: bool = True


NOT_FOUND = RawReply(
    final("404 Not Found", [("Cache-Control", "no-store"), ("Content-Type", "text/plain")], b"-")
)


@dataclass
class RawOrigin:
    """Path -> `RawReply`; records the request heads received per path."""

    scripts: dict[str, RawReply] = field(default_factory=dict)
    seen: dict[str, list[bytes]] = field(default_factory=dict)
    _server: asyncio.Server | None = None
    _connections: set[asyncio.StreamWriter] = field(default_factory=set)

    def script(self, path: str, reply: RawReply) -> None:
        self.scripts[path] = reply
        self.seen[path] = []

    def requests(self, path: str) -> list[bytes]:
        return list(self.seen.get(path, []))

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        """Listen; returns ``host:port``."""
        self._server = await asyncio.start_server(self._serve, host, port)
        bound = self._server.sockets[0].getsockname()
        return f"{bound[0]}:{bound[1]}"

    async def stop(self) -> None:
        for writer in list(self._connections):
            writer.close()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._connections.add(writer)
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, asyncio.LimitOverrunError):
                    return
                target = head.split(b"\r\n", 1)[0].split(b" ")[1].decode("latin-1")
                path = target.split("?", 1)[0]
                self.seen.setdefault(path, []).append(head)
                reply = self.scripts.get(path, NOT_FOUND)
                writer.write(reply.data)
                await writer.drain()
                if reply.close:
                    return
        except ConnectionError:
            return
        finally:
            self._connections.discard(writer)
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()
