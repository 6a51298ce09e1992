"""The plugin server's ``/metrics`` (``--metrics-listen``): the flag, the HTTP endpoint
against hostile clients, a scrape bounded in time when a worker is hung or gone, and the
real server (workers, a restart, a port that cannot be bound, the kong-pdk engine)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import msgpack  # type: ignore[import-untyped]
import pytest
from prometheus_client.parser import text_string_to_metric_families

from kong_plugin.plugin_metrics import Tally
from kong_plugin.pluginserver.metrics_http import HEAD_TIMEOUT_S, MetricsEndpoint, parse_listen
from kong_plugin.pluginserver.metrics_node import Census, NodeMetrics
from kong_plugin.pluginserver.worker import METRICS_METHOD, relay_path

REPO = Path(__file__).resolve().parents[3]


def value(text: str, name: str, **labels: str) -> float:
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == name and s.labels == labels:
                return float(s.value)
    raise KeyError((name, labels))


# -- the flag ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("127.0.0.1:9542", ("127.0.0.1", 9542)),
        ("localhost:0", ("localhost", 0)),
        ("[::1]:80", ("::1", 80)),
    ],
)
def test_a_listen_address_is_host_and_port(text: str, expected: tuple[str, int]) -> None:
    assert parse_listen(text) == expected


@pytest.mark.parametrize("text", ["9542", ":9542", "h:", "h:x", "h:70000", "::1:80", "[zz]:1"])
def test_a_bad_listen_address_names_the_flag(text: str) -> None:
    with pytest.raises(ValueError, match="--metrics-listen"):
        parse_listen(text)


# -- a scrape over fake workers ----------------------------------------------------------


def _snapshot(pid: int, hits: int) -> dict[str, Any]:
    tally = Tally()
    for _ in range(hits):
        tally.requests["hit"] += 1
    counters, histograms = tally.counts()
    gauges = {"strata_plugin_near_cache_entries": {"": 1}}
    return {"pid": pid, "counters": counters, "gauges": gauges, "histograms": histograms}


class FakeWorker:
    """A worker's private socket: answers the metrics request with `answer`, or (`hung`)
    reads it and never answers."""

    def __init__(self, path: str, answer: dict[str, Any], hung: bool = False) -> None:
        self.path = path
        self.answer = answer
        self.hung = hung
        self.asked = 0
        self.server: asyncio.AbstractServer | None = None
        self.writers: list[asyncio.StreamWriter] = []

    async def start(self) -> FakeWorker:
        self.server = await asyncio.start_unix_server(self._serve, path=self.path)
        return self

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.writers.append(writer)
        unpacker = msgpack.Unpacker(raw=False)
        unpacker.feed(await reader.read(65536))
        _, msgid, method, _ = next(iter(unpacker))
        assert method == METRICS_METHOD
        self.asked += 1
        if self.hung:
            await asyncio.sleep(3600)
        writer.write(msgpack.packb([1, msgid, None, self.answer], use_bin_type=True))
        await writer.drain()
        writer.close()

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()
        for writer in self.writers:
            writer.close()
        await asyncio.sleep(0.05)  # let the transports close on this loop


@pytest.fixture
def sock(tmp_path: Path) -> str:
    return str(tmp_path / "ps.sock")


async def test_a_scrape_adds_up_the_workers_and_is_bounded_by_a_hung_or_missing_one(
    sock: str,
) -> None:
    good = await FakeWorker(relay_path(sock, 0), _snapshot(10, hits=3)).start()
    hung = await FakeWorker(relay_path(sock, 1), _snapshot(11, hits=4), hung=True).start()
    census = Census()
    census.live, census.restarts = 2, 1
    node = NodeMetrics(sock, 3, census, timeout_s=0.3, min_interval_s=0.0)  # worker 2: none
    try:
        began = time.monotonic()
        text = (await node.collect()).decode()
        took = time.monotonic() - began
        assert took < 1.0, took  # the hung worker costs the timeout, not the scrape
        assert value(text, "strata_plugin_requests_total", result="hit") == 3
        assert value(text, "strata_plugin_near_cache_entries") == 1  # the answering one only
        assert value(text, "strata_plugin_scrape_errors_total", reason="timeout") == 1
        assert value(text, "strata_plugin_scrape_errors_total", reason="unreachable") == 1
        assert value(text, "strata_plugin_workers") == 2
        assert value(text, "strata_plugin_worker_restarts_total") == 1
        # the good worker restarts (new pid, counts from 0): the node's total keeps its 3
        good.answer = _snapshot(20, hits=1)
        text = (await node.collect()).decode()
        assert value(text, "strata_plugin_requests_total", result="hit") == 4
    finally:
        await good.close()
        await hung.close()


async def test_scrapes_close_together_ask_the_workers_once(sock: str) -> None:
    worker = await FakeWorker(relay_path(sock, 0), _snapshot(10, hits=1)).start()
    node = NodeMetrics(sock, 1, Census(), timeout_s=0.5, min_interval_s=5.0)
    try:
        answers = await asyncio.gather(*(node.collect() for _ in range(20)))
        assert len(set(answers)) == 1 and worker.asked == 1
    finally:
        await worker.close()


# -- the HTTP endpoint -------------------------------------------------------------------


@pytest.fixture
async def endpoint() -> AsyncIterator[MetricsEndpoint]:
    async def collect() -> bytes:
        return b"strata_plugin_workers 1\n"

    ep = MetricsEndpoint("127.0.0.1", 0, collect).start()
    assert await asyncio.to_thread(ep.tried.wait, 5) and ep.address is not None
    yield ep
    await asyncio.to_thread(ep.stop)


async def _http(address: tuple[str, int], raw: bytes) -> bytes:
    reader, writer = await asyncio.open_connection(*address)
    writer.write(raw)
    answer = await asyncio.wait_for(reader.read(), 5)
    writer.close()
    return answer


async def test_the_endpoint_answers_metrics_and_nothing_else(endpoint: MetricsEndpoint) -> None:
    assert endpoint.address is not None
    ok = await _http(endpoint.address, b"GET /metrics?x=1 HTTP/1.1\r\nHost: a\r\n\r\n")
    assert ok.startswith(b"HTTP/1.1 200 ") and ok.endswith(b"strata_plugin_workers 1\n")
    assert b"text/plain; version=0.0.4" in ok
    head = await _http(endpoint.address, b"HEAD /metrics HTTP/1.1\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 ") and head.endswith(b"\r\n\r\n")
    assert (await _http(endpoint.address, b"GET / HTTP/1.1\r\n\r\n")).startswith(b"HTTP/1.1 404")
    post = await _http(endpoint.address, b"POST /metrics HTTP/1.1\r\n\r\n")
    assert post.startswith(b"HTTP/1.1 405")
    assert (await _http(endpoint.address, b"hello\r\n\r\n")).startswith(b"HTTP/1.1 400")
    huge = b"GET /metrics HTTP/1.1\r\nX: " + b"a" * 20000 + b"\r\n\r\n"
    assert (await _http(endpoint.address, huge)).startswith(b"HTTP/1.1 431")


async def test_slow_and_idle_clients_do_not_keep_a_scrape_out(endpoint: MetricsEndpoint) -> None:
    assert endpoint.address is not None
    idle = []

    async def hold() -> None:
        _, writer = await asyncio.open_connection(*endpoint.address)  # type: ignore[misc]
        writer.write(b"GET /metr")  # half a request head, never finished
        idle.append(writer)

    try:
        for _ in range(40):  # more than MAX_CONNECTIONS
            await hold()
        await asyncio.sleep(0.2)
        # each scrape gets through at its first try, well within the head timeout: it
        # takes the slot of the oldest connection still sending its head; slow clients
        # opening new connections in between change nothing
        for _ in range(5):
            started = time.monotonic()
            answer = await _http(endpoint.address, b"GET /metrics HTTP/1.1\r\n\r\n")
            assert answer.startswith(b"HTTP/1.1 200"), answer[:40]
            assert time.monotonic() - started < HEAD_TIMEOUT_S / 2
            for _ in range(20):
                await hold()
    finally:
        for writer in idle:
            writer.close()


def test_a_port_that_cannot_be_bound_is_logged_and_retried_not_fatal(
    caplog: pytest.LogCaptureFixture,
) -> None:
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen()
    port = holder.getsockname()[1]

    async def collect() -> bytes:
        return b""

    with caplog.at_level(logging.ERROR, logger="strata.pluginserver"):
        ep = MetricsEndpoint("127.0.0.1", port, collect).start()
        assert ep.tried.wait(5)
    try:
        assert ep.address is None
        assert any("--metrics-listen" in r.getMessage() for r in caplog.records)
    finally:
        ep.stop()
        holder.close()


# -- the real plugin server --------------------------------------------------------------


def _start(prefix: Path, *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "kong_plugin", "-p", str(prefix), "--socket-name", "m.sock", *extra],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _metrics_url(proc: subprocess.Popen[str], lines: list[str]) -> str:
    assert proc.stdout is not None
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line)
        found = re.search(r"metrics on (http://\S+/metrics)", line)
        if found:
            return found.group(1)
    raise AssertionError("no metrics address logged:\n" + "".join(lines))


def _scrape(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as resp:
        return str(resp.read().decode())


@pytest.fixture
def stop() -> Iterator[list[subprocess.Popen[str]]]:
    procs: list[subprocess.Popen[str]] = []
    yield procs
    for proc in procs:
        proc.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(10)
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()


def _eventually(check: Any, timeout_s: float = 15.0) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return check()
        except (AssertionError, KeyError, urllib.error.URLError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.3)


def _worker_pids(supervisor: int) -> list[int]:
    out = subprocess.run(
        ["pgrep", "-P", str(supervisor)], capture_output=True, text=True, check=False
    )
    return [int(p) for p in out.stdout.split()]


def test_the_server_counts_its_workers_and_their_restarts(
    tmp_path: Path, stop: list[subprocess.Popen[str]]
) -> None:
    proc = _start(tmp_path, "--workers", "2", "--metrics-listen", "127.0.0.1:0")
    stop.append(proc)
    url = _metrics_url(proc, [])

    def two_workers() -> str:
        text = _scrape(url)
        assert value(text, "strata_plugin_workers") == 2
        assert value(text, "strata_plugin_near_cache_feed_up") == 0  # a gauge: both answered
        return text

    text = _eventually(two_workers)
    assert value(text, "strata_plugin_worker_restarts_total") == 0
    os.kill(_worker_pids(proc.pid)[0], signal.SIGKILL)

    def restarted() -> None:
        text = _scrape(url)
        assert value(text, "strata_plugin_worker_restarts_total") == 1
        assert value(text, "strata_plugin_workers") == 2

    _eventually(restarted)


def test_one_worker_with_metrics_runs_under_a_supervisor(
    tmp_path: Path, stop: list[subprocess.Popen[str]]
) -> None:
    proc = _start(tmp_path, "--workers", "1", "--metrics-listen", "127.0.0.1:0")
    stop.append(proc)
    url = _metrics_url(proc, [])
    _eventually(lambda: value(_scrape(url), "strata_plugin_requests_total", result="hit"))
    assert len(_worker_pids(proc.pid)) == 1  # the endpoint is not in the worker's process


def test_a_busy_metrics_port_leaves_the_plugin_server_serving(
    tmp_path: Path, stop: list[subprocess.Popen[str]]
) -> None:
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen()
    port = holder.getsockname()[1]
    try:
        proc = _start(tmp_path, "--workers", "1", "--metrics-listen", f"127.0.0.1:{port}")
        stop.append(proc)
        assert proc.stdout is not None
        lines: list[str] = []
        deadline = time.monotonic() + 20
        while not any("cannot be bound" in line for line in lines):
            assert time.monotonic() < deadline, "".join(lines)
            lines.append(proc.stdout.readline())
        _eventually(lambda: _assert_serving(tmp_path / "m.sock"))
        assert proc.poll() is None
    finally:
        holder.close()


def _assert_serving(path: Path) -> None:
    with socket.socket(socket.AF_UNIX) as s:
        try:
            s.connect(str(path))
        except OSError as exc:
            raise AssertionError(str(exc)) from exc
        s.sendall(msgpack.packb([0, 1, "plugin.GetStatus", [None]], use_bin_type=True))
        answer = msgpack.unpackb(s.recv(65536), raw=False)
    assert answer[2] is None and answer[3]["Pid"] > 0


def test_a_bad_metrics_listen_is_refused_at_start(tmp_path: Path) -> None:
    proc = _start(tmp_path, "--metrics-listen", "nowhere")
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 2 and "--metrics-listen" in out


def test_the_kong_pdk_engine_serves_its_own_metrics(
    tmp_path: Path, stop: list[subprocess.Popen[str]]
) -> None:
    proc = _start(tmp_path, "--engine", "kong-pdk", "--metrics-listen", "127.0.0.1:0")
    stop.append(proc)
    url = _metrics_url(proc, [])
    text = _eventually(lambda: _scrape(url))
    assert value(text, "strata_plugin_workers") == 1
    assert value(text, "strata_plugin_requests_total", result="miss") == 0
