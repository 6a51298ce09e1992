"""The refresh's HTTP GET (`kong_plugin.refresh_http.fetch`) against a scripted socket
server on loopback: what goes out, what comes back (Kong's header map shape), and the
bounds -- no redirect followed, body cut at ``max_body + 1``, at most 100 header lines,
one deadline for the whole exchange, TLS checked only with ``tls_verify``."""

from __future__ import annotations

import shutil
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from kong_plugin.refresh_http import FetchError, fetch
from kong_plugin.upstream_target import Destination

Answer = Callable[[socket.socket], None]


class Server:
    """Accepts connections on loopback; each gets `answer` after its request head is read
    (kept in `requests`). With `tls`, connections are wrapped first and the SNI each one
    sent is kept in `names`."""

    def __init__(self, answer: Answer, tls: ssl.SSLContext | None = None) -> None:
        self.answer = answer
        self.tls = tls
        self.requests: list[bytes] = []
        self.names: list[str | None] = []
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        if tls is not None:
            tls.sni_callback = lambda _s, name, _c: self.names.append(name)
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._one, args=(conn,), daemon=True).start()

    def _one(self, conn: socket.socket) -> None:
        try:
            if self.tls is not None:
                conn = self.tls.wrap_socket(conn, server_side=True)
            head = b""
            while b"\r\n\r\n" not in head:
                chunk = conn.recv(4096)
                if not chunk:
                    return
                head += chunk
            self.requests.append(head)
            self.answer(conn)
        except (OSError, ssl.SSLError):
            pass
        finally:
            conn.close()

    def close(self) -> None:
        self.sock.close()


def reply(raw: bytes) -> Answer:
    return lambda conn: conn.sendall(raw)


@pytest.fixture
def serve() -> Iterator[Callable[..., Server]]:
    servers: list[Server] = []

    def start(answer: Answer, tls: ssl.SSLContext | None = None) -> Server:
        servers.append(Server(answer, tls))
        return servers[-1]

    yield start
    for s in servers:
        s.close()


def to(port: int, scheme: str = "http", tls_verify: bool = False) -> Destination:
    return Destination(
        "https" if scheme == "https" else "http",
        "127.0.0.1",
        port,
        "/p?b=2&a=%20x",
        host_header="origin.test",
        tls_name="origin.test",
        tls_verify=tls_verify,
    )


OK = (
    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nX-A: 1\r\nx-a: 2\r\n"
    b"X-Accel-Redirect: /internal\r\nX-Folded: one\r\n two\r\nContent-Length: 2\r\n\r\n{}"
)


def test_the_request_and_the_answer(serve: Callable[..., Server]) -> None:
    server = serve(reply(OK))
    got = fetch(to(server.port), [("x-api-key", "k"), ("If-None-Match", '"v1"')], 5, 100)
    assert got.status == 200 and got.body == b"{}"
    assert got.headers["x-a"] == ["1", "2"]
    assert got.headers["x-folded"] == "one two"
    assert "x-accel-redirect" not in got.headers
    head = server.requests[0].decode("latin-1").split("\r\n")
    assert head[0] == "GET /p?b=2&a=%20x HTTP/1.1"
    assert sorted(head[1:-2]) == sorted(
        ["Host: origin.test", "x-api-key: k", 'If-None-Match: "v1"']
    )


def test_a_redirect_is_an_answer_not_followed(serve: Callable[..., Server]) -> None:
    server = serve(
        reply(b"HTTP/1.1 302 Found\r\nLocation: http://elsewhere/\r\nContent-Length: 0\r\n\r\n")
    )
    got = fetch(to(server.port), [], 5, 100)
    assert got.status == 302 and got.headers["location"] == "http://elsewhere/"
    assert len(server.requests) == 1


def test_the_body_is_cut_one_byte_past_the_bound(serve: Callable[..., Server]) -> None:
    body = b"x" * 1000
    server = serve(reply(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n" + body))
    assert fetch(to(server.port), [], 5, 10).body == b"x" * 11


def test_a_body_cut_short_of_its_content_length_fails_the_refresh(
    serve: Callable[..., Server],
) -> None:
    server = serve(reply(b'HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n{"partial":'))
    with pytest.raises(FetchError) as failed:
        fetch(to(server.port), [], 5, 10_000)
    assert failed.value.kind == "protocol"


def test_a_header_value_that_is_not_utf8_fails_the_refresh(serve: Callable[..., Server]) -> None:
    server = serve(
        reply(
            b"HTTP/1.1 200 OK\r\nContent-Disposition: attachment; filename=caf\xe9.json\r\n"
            b"Content-Length: 2\r\n\r\n{}"
        )
    )
    with pytest.raises(FetchError) as failed:
        fetch(to(server.port), [], 5, 100)
    assert failed.value.kind == "protocol"


def test_more_than_100_header_lines_fail_the_refresh(serve: Callable[..., Server]) -> None:
    many = b"".join(b"X-%d: v\r\n" % i for i in range(101))
    server = serve(reply(b"HTTP/1.1 200 OK\r\n" + many + b"Content-Length: 0\r\n\r\n"))
    with pytest.raises(FetchError) as failed:
        fetch(to(server.port), [], 5, 10)
    assert failed.value.kind == "protocol"


def test_a_trickle_cannot_stretch_the_deadline(serve: Callable[..., Server]) -> None:
    def trickle(conn: socket.socket) -> None:
        for byte in b"HTTP/1.1 200 OK\r\nX-Slow: " + b"y" * 100:
            conn.sendall(bytes([byte]))
            time.sleep(0.05)

    server = serve(trickle)
    start = time.monotonic()
    with pytest.raises(FetchError) as failed:
        fetch(to(server.port), [], 0.5, 10)
    assert failed.value.kind == "timeout"
    assert time.monotonic() - start < 2


def test_a_refused_connection_is_a_connection_failure() -> None:
    with socket.create_server(("127.0.0.1", 0)) as s:
        port = s.getsockname()[1]
    with pytest.raises(FetchError) as failed:
        fetch(to(port), [], 2, 10)
    assert failed.value.kind == "connection"


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("openssl is needed to make a test certificate")
    d = tmp_path_factory.mktemp("tls")
    cert, key = d / "cert.pem", d / "key.pem"
    subprocess.run(
        [
            openssl,
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=origin.test",
            "-addext",
            "subjectAltName=DNS:origin.test",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


def tls_server(serve: Callable[..., Server], certificate: tuple[Path, Path]) -> Server:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(*certificate)
    return serve(reply(OK), tls=context)


def test_tls_without_verification_accepts_a_self_signed_certificate_and_sends_sni(
    serve: Callable[..., Server], certificate: tuple[Path, Path]
) -> None:
    server = tls_server(serve, certificate)
    got = fetch(to(server.port, "https"), [], 5, 100)
    assert got.status == 200 and server.names == ["origin.test"]


def test_tls_with_verification_refuses_an_untrusted_certificate(
    serve: Callable[..., Server], certificate: tuple[Path, Path]
) -> None:
    server = tls_server(serve, certificate)
    with pytest.raises(FetchError) as failed:
        fetch(to(server.port, "https", tls_verify=True), [], 5, 100)
    assert failed.value.kind == "connection" and "CERTIFICATE" in str(failed.value).upper()
