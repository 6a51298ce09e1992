"""`strata cost`'s HTTP fetch against raw-socket servers: a total deadline however slowly a
server sends (headers or body), no redirect followed, answers cut short or too large refused,
chunked answers read."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest

from sidecar.cost.errors import SourceError
from sidecar.cost.fetch import HTTPStatusError, get
from sidecar.cost.sources import read_pages, read_prometheus

Script = Callable[[socket.socket], None]


@contextmanager
def raw_server(script: Script) -> Iterator[tuple[str, list[int]]]:
    """(base URL, requests seen) of a server that answers each request with `script`."""
    listener = socket.create_server(("127.0.0.1", 0))
    seen: list[int] = []

    def run() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            seen.append(1)
            try:
                conn.recv(65536)
                script(conn)
            except OSError:
                pass
            finally:
                conn.close()

    threading.Thread(target=run, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}", seen
    finally:
        listener.close()


def trickle(data: bytes, every_s: float) -> Script:
    def send(conn: socket.socket) -> None:
        for i in range(len(data)):
            conn.sendall(data[i : i + 1])
            time.sleep(every_s)

    return send


def answer(data: bytes) -> Script:
    return lambda conn: conn.sendall(data)


@pytest.mark.parametrize(
    "script",
    [
        # the body at 10 bytes a second: 10 s in all, each read well within the timeout
        lambda c: (
            c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n"),
            trickle(b"#" * 100, 0.1)(c),
        ),
        # the status line and headers at 10 bytes a second
        trickle(b"HTTP/1.1 200 OK\r\n" + b"X-Pad: " + b"a" * 100 + b"\r\n\r\n", 0.1),
    ],
    ids=["body", "headers"],
)
def test_a_slow_sender_is_cut_off_at_the_timeout(script: Script) -> None:
    """Issue 15, finding 3: urllib's timeout bounds one read, so a byte a second ran for days."""
    with raw_server(script) as (url, _):
        started = time.monotonic()
        with pytest.raises(SourceError, match=r"/metrics: no complete answer within 1 s$"):
            read_pages([url], None, timeout=1.0)
        assert time.monotonic() - started < 3.0


def test_a_server_that_never_answers_is_cut_off_too() -> None:
    with raw_server(lambda c: time.sleep(5)) as (url, _):
        started = time.monotonic()
        with pytest.raises(SourceError, match=r"no complete answer within 0\.5 s"):
            get(url, 0.5)
        assert time.monotonic() - started < 2.5


@pytest.mark.parametrize("where", ["{other}/metrics", "ftp://127.0.0.1:1/x", "file:///etc/passwd"])
def test_a_redirect_is_named_and_not_followed(where: str) -> None:
    """Issue 15, finding 8: redirects were followed to any host (ftp:// attempted)."""
    with raw_server(answer(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")) as (other, seen):
        target = where.format(other=other)
        reply = f"HTTP/1.1 302 Found\r\nLocation: {target}\r\nContent-Length: 0\r\n\r\n"
        with raw_server(answer(reply.encode())) as (url, _):
            with pytest.raises(SourceError, match=f"/metrics: redirects to {target} "):
                read_pages([url], None, timeout=2.0)
            with pytest.raises(SourceError, match=f"redirects to {target} "):
                read_prometheus(url, 60.0, timeout=2.0)
    assert seen == []


def test_an_answer_cut_short_or_too_large_is_refused() -> None:
    short = b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n" + b"#" * 10
    with raw_server(answer(short)) as (url, _), pytest.raises(SourceError, match="cut short"):
        get(url, 2.0)
    body = b"#" * 5000
    large = b"HTTP/1.1 200 OK\r\nContent-Length: 5000\r\n\r\n" + body
    with raw_server(answer(large)) as (url, _):
        with pytest.raises(SourceError, match="answer larger than 4096 bytes"):
            get(url, 2.0, max_bytes=4096)
        assert get(url, 2.0, max_bytes=5000) == body


def test_a_chunked_answer_is_read_and_an_error_keeps_its_body() -> None:
    chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
    with raw_server(answer(chunked)) as (url, _):
        assert get(url + "/x?y=1", 2.0) == b"hello"
    failed = b'HTTP/1.1 400 Bad Request\r\nContent-Length: 7\r\n\r\n{"e":1}'
    with (
        raw_server(answer(failed)) as (url, _),
        pytest.raises(HTTPStatusError, match=r"HTTP 400 Bad Request$") as caught,
    ):
        get(url, 2.0)
    assert caught.value.status == 400 and caught.value.body == b'{"e":1}'


def test_an_unreachable_url_and_a_bad_port_are_named() -> None:
    with raw_server(answer(b"")) as (url, _):
        pass  # closed: nothing listens on its port now
    with pytest.raises(SourceError, match=r"^http://127\.0\.0\.1:\d+: unreachable"):
        get(url, 2.0)
    with pytest.raises(SourceError, match="not a valid port"):
        get("http://127.0.0.1:99999/metrics", 2.0)
