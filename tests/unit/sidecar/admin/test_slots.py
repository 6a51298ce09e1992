"""Connection slots: idle, slow or token-less connections cannot lock an operator out;
the total number of connections stays capped."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable

from sidecar.admin.http import Limits
from tests.unit.sidecar.admin.conftest import (
    AUTH,
    TEST_LIMITS,
    Admin,
    parse_response,
    running_admin,
)

#: Deadlines long enough that nothing times out during a test on a loaded machine.
PATIENT = dataclasses.replace(TEST_LIMITS, read_timeout_s=60.0, max_connections=4)

Conn = tuple[asyncio.StreamReader, asyncio.StreamWriter]


async def _until(condition: Callable[[], bool]) -> None:
    """Wait (up to 20 s) until `condition()` is true."""
    async with asyncio.timeout(20):
        while not condition():
            await asyncio.sleep(0.01)


async def _open(admin: Admin, n: int, data: bytes = b"") -> list[Conn]:
    held = []
    for _ in range(n):
        reader, writer = await asyncio.open_connection(admin.host, admin.port)
        if data:
            writer.write(data)
            await writer.drain()
        held.append((reader, writer))
    return held


async def _closed_by_server(conn: Conn) -> bool:
    reader, _ = conn
    try:
        async with asyncio.timeout(20):
            return await reader.read() == b""
    except ConnectionError:
        return True


def _close(held: list[Conn]) -> None:
    for _, writer in held:
        writer.close()


async def test_40_idle_connections_then_a_real_request_is_served() -> None:
    limits = Limits(read_timeout_s=60.0)  # the production cap: 32 connections
    async with running_admin(limits) as admin:
        held = await _open(admin, 40)
        try:
            await _until(lambda: admin.observer.counts.get(("none", "evicted"), 0) == 8)
            assert admin.server.connections == limits.max_connections  # the total cap holds
            status, _, _ = await admin.request("DELETE", "/proxy-cache")
            assert status == 204
            assert admin.invalidations.events  # purged
            assert admin.observer.counts[("none", "evicted")] == 9
            assert ("none", "busy") not in admin.observer.counts
            # The oldest ones were closed to make room; the newest are still open.
            assert all([await _closed_by_server(conn) for conn in held[:9]])
            assert admin.server.connections == limits.max_connections - 1
        finally:
            _close(held)


async def test_half_sent_requests_are_evicted_oldest_first() -> None:
    async with running_admin(PATIENT) as admin:
        half = await _open(admin, 4, b"DELETE /proxy-cache HTTP/1.1\r\nHost: x\r\n")
        try:
            await _until(lambda: admin.server.connections == 4)
            status, _, _ = await admin.request("DELETE", "/proxy-cache")
            assert status == 204
            assert admin.observer.counts[("none", "evicted")] == 1
            assert await _closed_by_server(half[0])
            await _until(lambda: admin.server.connections == 3)  # half[1:] still held
        finally:
            _close(half)


async def test_when_every_slot_holds_an_authenticated_request_a_newcomer_gets_503() -> None:
    async with running_admin(PATIENT) as admin:
        # Authenticated heads announcing a body that never comes: proven, not evictable.
        head = f"POST /purge HTTP/1.1\r\nHost: x\r\n{AUTH}Content-Length: 50\r\n\r\n"
        held = await _open(admin, 4, head.encode())
        try:
            await _until(lambda: admin.server.authenticated == 4)
            status, headers, _ = parse_response(await admin.send(b"", close_write=False))
            assert status == 503
            assert headers["retry-after"] == "1"
            assert admin.observer.counts[("none", "busy")] == 1
            assert ("none", "evicted") not in admin.observer.counts
            assert admin.server.connections == 4
        finally:
            _close(held)
        await _until(lambda: admin.server.connections == 0)
        status, _, _ = await admin.request("DELETE", "/proxy-cache")
        assert status == 204
