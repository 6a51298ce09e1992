"""`strata cost` against a real sidecar process: responses stored and looked up through gRPC,
then the report read from its /metrics matches what was stored and served."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from sidecar.cost.exposition import parse_page, start_time
from sidecar.cost.sources import MIN_WINDOW_S
from tests.support.sidecar import clean_env
from tools.stack import SidecarProcess, free_port

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
#: A compressible JSON body, stored under `SHARED_KEYS` keys (one public response cached
#: per consumer: the memory tier holds it once).
BODY = json.dumps([{"id": i, "name": f"product {i}", "price": i * 1.5} for i in range(100)])
SHARED_KEYS = 5
SMALL = b'{"ok":true}'
LOOKUPS_EACH = 3


@pytest.fixture
def sidecar(tmp_path: Path) -> Iterator[tuple[str, str]]:
    """(gRPC address, metrics URL) of a running sidecar (memory tier only)."""
    port = free_port()
    address = f"unix:{tmp_path}/sidecar.sock"
    proc = SidecarProcess(
        address, env=clean_env(), metrics_listen=f"127.0.0.1:{port}", log_level="WARNING"
    )
    with proc:
        yield address, f"http://127.0.0.1:{port}"


def strata_cost(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sidecar.commands", "cost", *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=60,
        check=False,
    )


def fill(address: str) -> list[bytes]:
    from strata.v1 import cache_pb2 as pb  # noqa: PLC0415

    from kong_plugin.client import SidecarClient  # noqa: PLC0415

    client = SidecarClient(address, timeout_s=10.0)
    headers = [pb.Header(name=b"content-type", value=b"application/json")]
    keys = [b"v2:GET:shop:/products?consumer=%d" % i for i in range(SHARED_KEYS)]
    try:
        for key in keys:
            client.store(
                key, pb.Entry(status=200, headers=headers, body=BODY.encode(), ttl_ms=3_600_000)
            )
        client.store(
            b"v2:GET:shop:/ok", pb.Entry(status=200, headers=headers, body=SMALL, ttl_ms=3_600_000)
        )
        for key in [*keys, b"v2:GET:shop:/ok"]:
            for _ in range(LOOKUPS_EACH):
                assert client.lookup(key).outcome == pb.OUTCOME_HIT
        assert client.lookup(b"v2:GET:shop:/absent").outcome == pb.OUTCOME_MISS
    finally:
        client.close()
    return keys


def wait_for_uptime(metrics: str) -> None:
    """Sleep until the sidecar has been up `MIN_WINDOW_S` (a shorter uptime is refused)."""
    with urllib.request.urlopen(f"{metrics}/metrics", timeout=10) as reply:
        started = start_time(parse_page(reply.read().decode(), metrics))
    assert started is not None
    time.sleep(max(started + MIN_WINDOW_S + 0.5 - time.time(), 0.0))


def test_the_report_matches_what_was_stored_and_served(sidecar: tuple[str, str]) -> None:
    address, metrics = sidecar
    fill(address)
    too_soon = strata_cost("--metrics", metrics)
    if too_soon.returncode != 0:  # up for less than MIN_WINDOW_S: refused, not extrapolated
        assert "too short to extrapolate" in too_soon.stderr and too_soon.stdout == ""
    wait_for_uptime(metrics)

    done = strata_cost("--metrics", metrics, "--json")
    assert done.returncode == 0, done.stderr
    report: dict[str, Any] = json.loads(done.stdout)
    body = len(BODY)

    memory = report["memory_now"]
    assert memory["body_bytes"] == SHARED_KEYS * body + len(SMALL)
    assert memory["dedup_saved_bytes"] == (SHARED_KEYS - 1) * body  # held once
    assert 0 < memory["body_stored_bytes"] - len(SMALL) < body  # and compressed
    assert memory["compression_saved_bytes"] == body - (memory["body_stored_bytes"] - len(SMALL))
    assert memory["logical_bytes"] > memory["body_bytes"]  # keys and headers too
    written = report["written"]["memory"]
    assert written["body_new_bytes"] == body + len(SMALL)

    hits = (SHARED_KEYS + 1) * LOOKUPS_EACH
    assert report["origin_requests_avoided"]["window"] == hits
    assert report["origin_requests"]["window"] == 1  # the miss
    assert report["egress_avoided_bytes"]["window"] == LOOKUPS_EACH * (
        SHARED_KEYS * body + len(SMALL)
    )
    (tier,) = report["tiers"]
    assert tier["tier"] == "memory" and tier["held_bytes"] > 0
    assert report["monthly"]["naive"]["bytes_per_node"] == memory["logical_bytes"]
    # what the memory tier holds is smaller than the naive copy of it
    assert tier["held_bytes"] < memory["logical_bytes"]

    table = strata_cost("--metrics", metrics, "--ram-gb-month", "3")
    assert table.returncode == 0, table.stderr
    assert "Monthly cost" in table.stdout and "RAM 3/GB-month" in table.stdout


class _NotStrata(BaseHTTPRequestHandler):
    """A /metrics page of something else."""

    def do_GET(self) -> None:
        data = b"# TYPE go_goroutines gauge\ngo_goroutines 7\n"
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        pass


def test_a_url_that_is_not_a_sidecar_fails_with_its_name() -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _NotStrata)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/metrics"
        done = strata_cost("--metrics", url)
    finally:
        server.shutdown()
        server.server_close()
    assert done.returncode == 1
    assert f"{url}: not a Strata sidecar" in done.stderr
    dead = strata_cost("--metrics", f"http://127.0.0.1:{free_port()}", "--timeout", "2")
    assert dead.returncode == 1 and "unreachable" in dead.stderr
