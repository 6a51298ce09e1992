"""The admin server against hostile and malformed clients: raw bytes over a real socket.
Every refusal names what is wrong, is counted, and the server carries on serving."""

from __future__ import annotations

import asyncio
import json

import pytest

from tests.unit.sidecar.admin.conftest import AUTH, TEST_LIMITS, Admin, parse_response


async def _still_serving(admin: Admin) -> None:
    status, _, _ = await admin.request("DELETE", "/proxy-cache")
    assert status == 204


def _message(body: bytes) -> str:
    return str(json.loads(body)["message"])


@pytest.mark.parametrize(
    ("raw", "status", "words"),
    [
        (b"GET /purge HTTP/1.1\nHost: x\n\n", 400, "bare LF"),
        (b"GET  /purge HTTP/1.1\r\nHost: x\r\n\r\n", 400, "METHOD SP TARGET"),
        (b"G(T /purge HTTP/1.1\r\nHost: x\r\n\r\n", 400, "not a token"),
        (b"GET http://x/purge HTTP/1.1\r\nHost: x\r\n\r\n", 400, "starting with '/'"),
        (b"GET /pu\x01rge HTTP/1.1\r\nHost: x\r\n\r\n", 400, "visible ASCII"),
        (b"GET /purge HTTP/2.0\r\nHost: x\r\n\r\n", 505, "HTTP/2"),
        (b"GET /purge HTTX/1.1\r\nHost: x\r\n\r\n", 400, "not an HTTP version"),
        (b"GET /purge HTTP/1.1\r\n\r\n", 400, "Host header"),
        (b"GET /purge HTTP/1.1\r\nHost: x\r\nNoColon\r\n\r\n", 400, "no colon"),
        (b"GET /purge HTTP/1.1\r\nHost : x\r\n\r\n", 400, "not a token"),
        (b"GET /purge HTTP/1.1\r\nHost: x\r\n folded\r\n\r\n", 400, "obs-fold"),
        (b"GET /purge HTTP/1.1\r\nHost: x\r\nA: b\x00c\r\n\r\n", 400, "control byte"),
        (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", 400, "closed within the request line"),
        (b"", 400, "closed before the request line"),
        (b"GET /purge HTTP/1.1\r\nHost: x\r\n", 400, "closed within the header fields"),
    ],
)
async def test_malformed_requests_get_400_naming_the_problem(
    admin: Admin, raw: bytes, status: int, words: str
) -> None:
    got, _, body = parse_response(await admin.send(raw))
    assert got == status
    assert words in _message(body)
    assert admin.invalidations.events == []
    assert admin.observer.counts[("none", "bad_request")] == 1
    await _still_serving(admin)


@pytest.mark.parametrize(
    ("extra", "status", "words"),
    [
        ("Transfer-Encoding: chunked\r\n", 411, "Content-Length"),
        ("Content-Length: 3\r\nContent-Length: 4\r\n", 400, "twice"),
        ("Content-Length: -1\r\n", 400, "not a byte count"),
        ("Content-Length: 1e3\r\n", 400, "not a byte count"),
        ("Expect: something\r\n", 417, "expectation"),
        ("Authorization: Bearer x\r\n", 401, "Authorization: Bearer"),
    ],
)
async def test_bad_framing_headers_are_refused(
    admin: Admin, extra: str, status: int, words: str
) -> None:
    raw = f"POST /purge?all=true HTTP/1.1\r\nHost: x\r\n{AUTH}{extra}\r\n".encode()
    got, _, body = parse_response(await admin.send(raw))
    assert (got, words in _message(body)) == (status, True), body
    assert admin.invalidations.events == []


async def test_request_line_over_the_limit_is_414(admin: Admin) -> None:
    for size in (TEST_LIMITS.max_request_line + 1, TEST_LIMITS.max_header_bytes + 500):
        raw = b"GET /" + b"a" * size + b" HTTP/1.1\r\nHost: x\r\n\r\n"
        status, _, body = parse_response(await admin.send(raw))
        assert status == 414
        assert "request line" in _message(body)
    await _still_serving(admin)


async def test_header_fields_over_the_limits_are_431(admin: Admin) -> None:
    big = f"GET /purge HTTP/1.1\r\nHost: x\r\nX-A: {'a' * TEST_LIMITS.max_header_bytes}\r\n\r\n"
    status, _, body = parse_response(await admin.send(big.encode()))
    assert (status, "header fields are larger" in _message(body)) == (431, True)
    many = "".join(f"X-{i}: v\r\n" for i in range(TEST_LIMITS.max_headers + 1))
    raw = f"GET /purge HTTP/1.1\r\nHost: x\r\n{many}\r\n".encode()
    status, _, body = parse_response(await admin.send(raw))
    assert (status, "header lines" in _message(body)) == (431, True)
    assert admin.observer.counts[("none", "too_large")] == 2
    await _still_serving(admin)


async def test_a_body_over_the_limit_is_413_unread(admin: Admin) -> None:
    length = TEST_LIMITS.max_body + 1
    raw = f"POST /purge HTTP/1.1\r\nHost: x\r\n{AUTH}Content-Length: {length}\r\n\r\n"
    status, _, body = parse_response(await admin.send(raw.encode()))
    assert status == 413
    assert f"more than the {TEST_LIMITS.max_body} allowed" in _message(body)
    assert admin.observer.counts[("purge", "too_large")] == 1
    assert admin.invalidations.events == []


async def test_a_short_body_is_400(admin: Admin) -> None:
    raw = f"POST /purge HTTP/1.1\r\nHost: x\r\n{AUTH}Content-Length: 100\r\n\r\n{{}}"
    status, _, body = parse_response(await admin.send(raw.encode()))
    assert (status, "ended after 2 of 100 bytes" in _message(body)) == (400, True)


async def test_a_slow_client_gets_408_at_the_read_deadline(admin: Admin) -> None:
    reader, writer = await asyncio.open_connection(admin.host, admin.port)
    try:
        writer.write(b"POST /purge HTTP/1.1\r\nHost: x\r\n")  # and then nothing
        await writer.drain()
        async with asyncio.timeout(20):
            raw = await reader.read()
    finally:
        writer.close()
    status, _, _ = parse_response(raw)
    assert status == 408
    assert admin.observer.counts[("none", "timeout")] == 1
    await _still_serving(admin)


async def test_a_slow_body_gets_408(admin: Admin) -> None:
    reader, writer = await asyncio.open_connection(admin.host, admin.port)
    try:
        writer.write(
            f"POST /purge HTTP/1.1\r\nHost: x\r\n{AUTH}Content-Length: 50\r\n\r\n{{".encode()
        )
        await writer.drain()
        async with asyncio.timeout(20):
            raw = await reader.read()
    finally:
        writer.close()
    assert parse_response(raw)[0] == 408
    assert admin.invalidations.events == []


async def test_unknown_path_404_and_wrong_method_405_with_allow(admin: Admin) -> None:
    status, _, body = await admin.request("GET", "/nothing/here")
    assert (status, "no such path" in _message(body)) == (404, True)
    status, headers, _ = await admin.request("GET", "/proxy-cache")
    assert (status, headers["allow"]) == (405, "DELETE")
    status, headers, _ = await admin.request("PUT", "/proxy-cache/k")
    assert (status, headers["allow"]) == (405, "GET, DELETE")
    status, headers, _ = await admin.request("GET", "/purge")
    assert (status, headers["allow"]) == (405, "POST")
    assert admin.observer.counts[("unmatched", "not_found")] == 1
    assert admin.observer.counts[("proxy_cache", "method_not_allowed")] == 1
    assert admin.invalidations.events == []


async def test_expect_100_continue_gets_an_interim_response(admin: Admin) -> None:
    body = b'{"tags": ["a"]}'
    head = (
        f"POST /purge HTTP/1.1\r\nHost: x\r\n{AUTH}Expect: 100-continue\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    reader, writer = await asyncio.open_connection(admin.host, admin.port)
    try:
        writer.write(head.encode())
        await writer.drain()
        async with asyncio.timeout(20):
            interim = await reader.readuntil(b"\r\n\r\n")
            assert interim == b"HTTP/1.1 100 Continue\r\n\r\n"
            writer.write(body)
            await writer.drain()
            raw = await reader.read()
    finally:
        writer.close()
    assert parse_response(raw)[0] == 200
    assert admin.invalidations.events[0].tags == ("a",)


async def test_responses_close_the_connection_and_are_not_cached(admin: Admin) -> None:
    status, headers, _ = await admin.request("DELETE", "/proxy-cache")
    assert status == 204
    assert headers["connection"] == "close"
    assert headers["cache-control"] == "no-store"
    assert "content-length" not in headers
