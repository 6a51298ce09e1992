"""The servers started by ``tools/services`` really answer their protocols.

Needs ``make services-up`` (``python -m tools.services up``) first; without its env file every
test here fails (it does not skip), so a CI run cannot pass by silently testing nothing.
Names are unique per run because a kept server still holds what earlier runs left in it.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.parse
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import psycopg
import pytest
import redis
from confluent_kafka import Consumer, KafkaError, Producer
from confluent_kafka.admin import (  # type: ignore[attr-defined]  # NewTopic: implicit re-export
    AdminClient,
    NewTopic,
)
from prometheus_client import CollectorRegistry, Counter, start_http_server
from pymemcache.client.base import Client as MemcacheClient

from tools import services
from tools.services.state import read_state

pytestmark = pytest.mark.integration


def _service(key: str) -> str:
    """One value from services.env, or a test failure that says how to get it."""
    env = services.load_env()
    if not env:
        path = services.resolve_run_dir() / services.ENV_FILE
        pytest.fail(f"{path} is missing: run `make services-up` first", pytrace=False)
    if key not in env:
        pytest.fail(f"{key} is not in services.env: run `make services-up` first", pytrace=False)
    return env[key]


def _unique(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:12]}"


def test_redis_set_get_round_trip() -> None:
    key = _unique("strata:selftest")
    with redis.Redis.from_url(_service("STRATA_TEST_REDIS_URL"), socket_timeout=5) as client:
        try:
            assert client.set(key, b"\x00value\xff", ex=60)
            assert client.get(key) == b"\x00value\xff"
        finally:
            client.delete(key)


def test_memcached_set_get_round_trip() -> None:
    host, port = _service("STRATA_TEST_MEMCACHED_SERVERS").split(",")[0].rsplit(":", 1)
    client = MemcacheClient((host, int(port)), connect_timeout=5, timeout=5)
    key = _unique("strata-selftest")
    try:
        assert client.set(key, b"\x00value\xff", expire=60, noreply=False)
        assert client.get(key) == b"\x00value\xff"
    finally:
        client.delete(key)
        client.close()


def test_postgres_create_insert_select() -> None:
    table = _unique("strata_selftest")
    with psycopg.connect(
        _service("STRATA_TEST_POSTGRES_DSN"), autocommit=True, connect_timeout=5
    ) as conn:
        try:
            conn.execute(f"CREATE TABLE {table} (k text PRIMARY KEY, v bytea NOT NULL)")
            conn.execute(f"INSERT INTO {table} (k, v) VALUES (%s, %s)", ("key", b"\x00value"))
            row = conn.execute(f"SELECT v FROM {table} WHERE k = %s", ("key",)).fetchone()
            assert row == (b"\x00value",)
            assert conn.execute("SELECT current_database()").fetchone() == ("strata",)
        finally:
            conn.execute(f"DROP TABLE IF EXISTS {table}")


@pytest.mark.timeout(45)
def test_tansu_produce_and_consume_keyed_message_with_header_in_a_group() -> None:
    bootstrap = _service("STRATA_TEST_KAFKA_BOOTSTRAP")
    topic = _unique("strata-selftest")
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)])[topic].result(
        timeout=10
    )
    try:
        errors: list[object] = []
        producer = Producer({"bootstrap.servers": bootstrap, "acks": "all"})
        producer.produce(
            topic,
            key=b"route:42",
            value=b"purge",
            headers=[("strata-event", b"invalidate")],
            on_delivery=lambda err, _msg: errors.append(err),
        )
        assert producer.flush(10) == 0
        assert errors == [None]

        consumer = Consumer(
            {
                "bootstrap.servers": bootstrap,
                "group.id": _unique("strata-selftest-group"),
                # Tansu holds the first JoinGroup for ~session.timeout.ms / 2 (3 s here).
                "session.timeout.ms": 6000,
                "auto.offset.reset": "earliest",
                "enable.auto.commit": False,
                "fetch.wait.max.ms": 100,
            }
        )
        try:
            consumer.subscribe([topic])
            deadline, message = time.monotonic() + 30, None
            while message is None and time.monotonic() < deadline:
                polled = consumer.poll(0.5)
                if polled is None:
                    continue
                err = polled.error()
                if err is not None and err.code() != KafkaError._PARTITION_EOF:
                    pytest.fail(f"consumer error: {err}")
                if err is None:
                    message = polled
            assert message is not None, "no message consumed within 30 s"
            assert message.key() == b"route:42"
            assert message.value() == b"purge"
            assert message.headers() == [("strata-event", b"invalidate")]
            consumer.commit(message=message, asynchronous=False)
        finally:
            consumer.close()
    finally:
        admin.delete_topics([topic])[topic].result(timeout=10)


@pytest.mark.timeout(60)
def test_prometheus_scrapes_an_exporter_named_in_the_targets_file() -> None:
    prometheus_url = _service("STRATA_TEST_PROMETHEUS_URL")
    targets_file = _service("STRATA_TEST_PROMETHEUS_TARGETS_FILE")
    registry = CollectorRegistry()
    run = uuid.uuid4().hex[:12]
    ticks = Counter("strata_selftest_ticks", "Self-test counter.", ["run"], registry=registry)
    ticks.labels(run=run).inc(3)
    server, thread = start_http_server(0, addr="127.0.0.1", registry=registry)
    try:
        services.write_prometheus_targets_file(targets_file, [f"127.0.0.1:{server.server_port}"])
        query = urllib.parse.urlencode({"query": f'strata_selftest_ticks_total{{run="{run}"}}'})
        deadline, result = time.monotonic() + 30, list[dict[str, Any]]()
        while not result and time.monotonic() < deadline:
            with urllib.request.urlopen(f"{prometheus_url}/api/v1/query?{query}", timeout=5) as r:
                body = json.load(r)
            assert body["status"] == "success", body
            result = body["data"]["result"]
            if not result:
                time.sleep(0.5)  # the first sample of a new target takes a few seconds
        assert result, "Prometheus did not scrape the exporter within 30 s"
        assert result[0]["metric"]["job"] == "strata-sidecar"
        assert result[0]["value"][1] == "3"
    finally:
        services.write_prometheus_targets_file(targets_file, [])
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def test_status_command_exits_zero() -> None:
    _service("STRATA_TEST_REDIS_URL")  # fail with the hint rather than a bare exit code
    proc = subprocess.run(
        [sys.executable, "-m", "tools.services", "status"],
        cwd=services.REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "healthy" in proc.stdout


def test_load_env_is_empty_without_an_env_file(tmp_path: Path) -> None:
    assert services.load_env(tmp_path) == {}


@pytest.mark.timeout(90)
def test_a_server_that_died_comes_back_on_its_port(tmp_path: Path) -> None:
    """`up` after a server was killed starts it again where its clients look for it (as
    `make services-up` runs it: its own process, so the servers are not this one's children)."""
    run_dir = tmp_path / "run"

    def cli(*args: str) -> None:
        command = [sys.executable, "-m", "tools.services", *args, "--run-dir", str(run_dir)]
        subprocess.run([*command, "--only", "redis"], check=True, capture_output=True, timeout=60)

    cli("up")
    try:
        first = services.load_env(run_dir)["STRATA_TEST_REDIS_URL"]
        pid = read_state(run_dir)["redis"].pid
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and Path(f"/proc/{pid}").exists():
            time.sleep(0.05)
        cli("up")
        again = services.load_env(run_dir)["STRATA_TEST_REDIS_URL"]
        assert again == first
        client = redis.Redis.from_url(again, socket_timeout=5)
        assert client.ping()
        client.close()
    finally:
        cli("down")
