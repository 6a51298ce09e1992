"""Helpers for integration tests: the shared services of `make services-up`, and private
Redis servers a test starts, kills and restarts itself."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest
import redis

from tools import services
from tools.stack import free_port

HOST = "127.0.0.1"


def services_env() -> dict[str, str]:
    """The services env file, or a test failure (not a skip) that says how to get it."""
    env = services.load_env()
    if not env:
        pytest.fail("no services env file: run `make services-up` first")
    return env


def service(key: str) -> str:
    """One address from the services env (e.g. STRATA_TEST_REDIS_URL), or a failure."""
    env = services_env()
    if key not in env:
        pytest.fail(f"{key} missing from the services env: run `make services-up` first")
    return env[key]


def start_redis(port: int, workdir: Path, *extra: str) -> subprocess.Popen[bytes]:
    """A private redis-server on `port`, answering PING before this returns."""
    args = ["redis-server", "--port", str(port), "--bind", HOST, "--save", ""]
    args += ["--appendonly", "no", "--dir", str(workdir), *extra]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 5
    while True:
        try:
            with redis.Redis(HOST, port, socket_timeout=0.5) as client:
                client.ping()
            return proc
        except redis.ConnectionError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                proc.wait(5)
                raise
            time.sleep(0.02)


def start_cluster_node(workdir: Path) -> tuple[int, subprocess.Popen[bytes]]:
    """A one-node Redis Cluster on fresh, distinct ports (retried: a port picked free can
    be taken again before the server binds it)."""
    for attempt in range(3):
        port = free_port()
        bus = free_port()
        while bus == port:
            bus = free_port()
        conf = ["--cluster-enabled", "yes"]
        conf += ["--cluster-config-file", str(workdir / f"nodes-{attempt}.conf")]
        conf += ["--cluster-port", str(bus)]  # the default, port + 10000, may not exist
        try:
            return port, start_redis(port, workdir, *conf)
        except redis.ConnectionError:
            if attempt == 2:
                raise
    raise AssertionError("unreachable")
