"""The admin API of a real sidecar process (memory + the services' Redis): `strata purge`
by tag makes the next lookup miss; without the token the request is refused with 401 and
the entry is still there; a reused event id is reported as a duplicate; idle connections
do not lock an operator out; every purge leaves an audit line."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from strata.v1 import cache_pb2 as pb
from strata.v1 import cache_pb2_grpc as pb_grpc

from tests.integration.servers import service
from tests.support.sidecar import clean_env
from tools.services.procs import free_port
from tools.stack import SidecarProcess

pytestmark = pytest.mark.integration

TOKEN = "integration-admin-token-" + uuid.uuid4().hex
KEY = b"v2:admin-test:" + uuid.uuid4().hex.encode()


class Running:
    def __init__(self, sidecar: SidecarProcess, admin: str) -> None:
        self.sidecar = sidecar
        self.admin = admin


@pytest.fixture
def running(tmp_path: Path) -> Iterator[Running]:
    token_file = tmp_path / "admin-token"
    token_file.write_text(TOKEN + "\n")
    admin = f"127.0.0.1:{free_port()}"
    sidecar = SidecarProcess(
        f"127.0.0.1:{free_port()}",
        env=clean_env(),
        metrics_listen="off",
        log_level="INFO",
        settings={
            "admission": "always",
            "redis_url": service("STRATA_TEST_REDIS_URL"),
            "namespace": "admin-" + uuid.uuid4().hex[:12],
            "admin_listen": admin,
            "admin_token_file": str(token_file),
        },
    )
    sidecar.start()
    try:
        yield Running(sidecar, f"http://{admin}")
    finally:
        sidecar.stop()


def _lookup(address: str) -> int:
    with grpc.insecure_channel(address) as channel:
        reply = pb_grpc.CacheServiceStub(channel).Lookup(pb.LookupRequest(key=KEY), timeout=10)
    return int(reply.outcome)


def _store(address: str, stale_ms: int = 0) -> None:
    entry = pb.Entry(
        status=200,
        body=b"cached body",
        ttl_ms=600_000,
        tags=["products:42"],
        stale_while_revalidate_ms=stale_ms,
    )
    with grpc.insecure_channel(address) as channel:
        reply = pb_grpc.CacheServiceStub(channel).Store(
            pb.StoreRequest(key=KEY, entry=entry), timeout=10
        )
    assert reply.result == pb.STORE_RESULT_STORED


def _strata(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", "from sidecar.commands import entry; entry()", *args],
        capture_output=True, text=True, timeout=60, check=False, env=env or clean_env(),
    )  # fmt: skip


def _log_lines(sidecar: SidecarProcess, action: str) -> list[dict[str, object]]:
    found = []
    for line in sidecar.output().text.splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        # ECS JSON: dotted field names are nested objects.
        if isinstance(record, dict) and record.get("event", {}).get("action") == action:
            found.append(record)
    return found


def _http(method: str, url: str, token: str | None) -> tuple[int, dict[str, str], bytes]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    request = urllib.request.Request(url, method=method, headers=headers)
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(request, timeout=30) as reply:
            return reply.status, dict(reply.headers), reply.read()
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, dict(exc.headers), exc.read()


def test_purge_by_tag_through_the_cli(running: Running) -> None:
    address = running.sidecar.address
    _store(address)
    assert _lookup(address) == pb.OUTCOME_HIT

    # Without the token, or with a wrong one: 401, nothing purged.
    status, headers, _ = _http("DELETE", f"{running.admin}/proxy-cache", None)
    assert status == 401
    assert headers["WWW-Authenticate"].startswith("Bearer")
    env = clean_env() | {"STRATA_ADMIN_TOKEN": "not-the-token"}
    done = _strata("purge", "--tag", "products:42", "--admin", running.admin, env=env)
    assert done.returncode == 1
    assert "refused (401)" in done.stderr
    assert _lookup(address) == pb.OUTCOME_HIT
    assert "admin_refused" in running.sidecar.output().text
    assert TOKEN not in running.sidecar.output().text

    # What the entry looks like, through Kong's path.
    key = urllib.parse.quote(KEY.decode(), safe="")
    status, _, body = _http("GET", f"{running.admin}/proxy-cache/{key}", TOKEN)
    assert status == 200
    seen = json.loads(body)
    assert seen["tier"] == "memory"
    assert seen["state"] == "fresh"
    assert seen["body_bytes"] == len(b"cached body")
    assert "products:42" in seen["tags"]

    env = clean_env() | {"STRATA_ADMIN_TOKEN": TOKEN}
    done = _strata("purge", "--tag", "products:42", "--admin", running.admin, env=env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("purged id=")
    assert "queued=no duplicate=no" in done.stdout  # no Kafka configured for this sidecar
    assert _lookup(address) == pb.OUTCOME_MISS
    status, _, _ = _http("GET", f"{running.admin}/proxy-cache/{key}", TOKEN)
    assert status == 404


def test_a_sidecar_without_a_token_serves_no_admin_api(tmp_path: Path) -> None:
    admin = f"127.0.0.1:{free_port()}"
    with (
        SidecarProcess(
            f"127.0.0.1:{free_port()}",
            env=clean_env(),
            metrics_listen="off",
            settings={"admin_listen": admin},
        ),
        pytest.raises(urllib.error.URLError),
    ):
        _http("DELETE", f"http://{admin}/proxy-cache", TOKEN)


def test_an_unreadable_token_file_stops_start_up_naming_the_setting(tmp_path: Path) -> None:
    refusal = SidecarProcess(
        f"127.0.0.1:{free_port()}",
        env=clean_env(),
        metrics_listen="off",
        settings={"admin_token_file": str(tmp_path / "missing")},
    ).expect_refusal()
    assert refusal.returncode == 2
    assert "admin_token_file" in refusal.stderr


def test_a_reused_event_id_is_reported_as_a_duplicate_and_audited(running: Running) -> None:
    url = f"{running.admin}/purge?tag=dup:{uuid.uuid4().hex}&id=deploy-{uuid.uuid4().hex}"
    status, _, body = _http("POST", url, TOKEN)
    assert (status, json.loads(body)["duplicate"]) == (200, False)
    status, _, body = _http("POST", url, TOKEN)
    assert status == 200
    assert json.loads(body)["duplicate"] is True
    status, headers, _ = _http("DELETE", f"{running.admin}/proxy-cache?soft=true", TOKEN)
    assert (status, headers["Strata-Duplicate"]) == (204, "false")
    audits = _log_lines(running.sidecar, "admin_purge")
    assert len(audits) == 3
    assert TOKEN not in running.sidecar.output().text


def test_a_soft_purged_entry_shows_its_stored_ttl(running: Running) -> None:
    address = running.sidecar.address
    _store(address, stale_ms=600_000)
    status, _, _ = _http("POST", f"{running.admin}/purge?tag=products:42&soft=true", TOKEN)
    assert status == 200
    key = urllib.parse.quote(KEY.decode(), safe="")
    status, _, body = _http("GET", f"{running.admin}/proxy-cache/{key}", TOKEN)
    assert status == 200, body
    seen = json.loads(body)
    assert seen["state"] == "soft_purged"
    assert seen["stored_ttl_ms"] == 600_000
    assert seen["ttl_ms"] < 600_000


def test_idle_connections_do_not_lock_an_operator_out(running: Running) -> None:
    host, _, port = running.admin.removeprefix("http://").rpartition(":")
    idle = [socket.create_connection((host, int(port)), timeout=10) for _ in range(40)]
    try:
        status, _, _ = _http("DELETE", f"{running.admin}/proxy-cache", TOKEN)
        assert status == 204
    finally:
        for conn in idle:
            conn.close()


def test_a_short_token_stops_start_up_naming_the_setting(tmp_path: Path) -> None:
    token_file = tmp_path / "admin-token"
    token_file.write_text("short-token\n")
    refusal = SidecarProcess(
        f"127.0.0.1:{free_port()}",
        env=clean_env(),
        metrics_listen="off",
        settings={"admin_token_file": str(token_file)},
    ).expect_refusal()
    assert refusal.returncode == 2
    assert "admin_token_file" in refusal.stderr
    assert "at least 16" in refusal.stderr
