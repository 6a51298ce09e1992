"""A real `AdminServer` on 127.0.0.1 (any free port) over fake `Invalidations` and engine,
and a raw-socket client to send it exact bytes."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest

from sidecar.admin.http import Limits
from sidecar.admin.routes import Routes
from sidecar.admin.server import AdminServer
from sidecar.core.clock import ManualClock
from sidecar.core.model import CachedResponse, Headers
from sidecar.events import InvalidationEvent

TOKEN = "s3cret-token-for-the-tests-0123456789"
AUTH = f"Authorization: Bearer {TOKEN}\r\n"


@dataclass(frozen=True)
class FakeSubmitted:
    id: str
    dropped: int
    queued: bool
    duplicate: bool = False


@dataclass(frozen=True)
class FakePeeked:
    tier: str
    entry: CachedResponse
    state: str
    stored_ttl_ms: int | None = None


@dataclass
class FakeInvalidations:
    """Records every submitted event; drops `dropped` entries each time; an event whose id
    was submitted before is a duplicate (nothing dropped)."""

    events: list[InvalidationEvent] = field(default_factory=list)
    dropped: int = 3

    async def submit(self, event: InvalidationEvent) -> FakeSubmitted:
        seen = event.id is not None and any(e.id == event.id for e in self.events)
        self.events.append(event)
        if seen:
            return FakeSubmitted(str(event.id), 0, True, duplicate=True)
        return FakeSubmitted(event.id or f"evt-{len(self.events)}", self.dropped, True)


@dataclass
class FakeEngine:
    entries: dict[bytes, FakePeeked] = field(default_factory=dict)
    peeks: list[tuple[bytes, Headers]] = field(default_factory=list)

    async def peek(self, key: bytes, request_headers: Headers = ()) -> FakePeeked | None:
        self.peeks.append((key, request_headers))
        return self.entries.get(key)


@dataclass
class CountingObserver:
    counts: dict[tuple[str, str], int] = field(default_factory=dict)

    def admin_request(self, route: str, result: str) -> None:
        self.counts[(route, result)] = self.counts.get((route, result), 0) + 1


@dataclass
class Admin:
    server: AdminServer
    invalidations: FakeInvalidations
    engine: FakeEngine
    observer: CountingObserver
    clock: ManualClock
    host: str
    port: int

    async def send(self, data: bytes, *, close_write: bool = True) -> bytes:
        """Send `data` raw; everything the server answers until it closes."""
        reader, writer = await asyncio.open_connection(self.host, self.port)
        try:
            writer.write(data)
            await writer.drain()
            if close_write:
                writer.write_eof()
            async with asyncio.timeout(20):
                return await reader.read()
        finally:
            writer.close()

    async def request(
        self, method: str, path: str, body: bytes = b"", headers: str = AUTH
    ) -> tuple[int, dict[str, str], bytes]:
        length = f"Content-Length: {len(body)}\r\n" if body else ""
        raw = f"{method} {path} HTTP/1.1\r\nHost: x\r\n{headers}{length}\r\n".encode() + body
        return parse_response(await self.send(raw))


def parse_response(raw: bytes) -> tuple[int, dict[str, str], bytes]:
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ")[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return status, headers, body


TEST_LIMITS = Limits(
    max_request_line=256,
    max_header_bytes=1024,
    max_headers=8,
    max_body=4096,
    read_timeout_s=0.5,
    write_timeout_s=2.0,
    max_connections=4,
)


@contextlib.asynccontextmanager
async def running_admin(limits: Limits = TEST_LIMITS) -> AsyncIterator[Admin]:
    """A started server with `limits` over fresh fakes; closed on exit."""
    invalidations, engine, observer = FakeInvalidations(), FakeEngine(), CountingObserver()
    clock = ManualClock()
    server = AdminServer(
        "127.0.0.1:0", TOKEN, Routes(invalidations, engine, clock), observer, limits
    )
    address = await server.start()
    host, _, port = address.rpartition(":")
    try:
        yield Admin(server, invalidations, engine, observer, clock, host, int(port))
    finally:
        await server.close()


@pytest.fixture
async def admin() -> AsyncIterator[Admin]:
    async with running_admin() as running:
        yield running
