"""A sidecar started with credentials its servers refuse logs the failures, and nothing of
the credentials, in any line of its output (neither the Redis user nor the PostgreSQL role
exists, so both refuse; DEBUG logging, so the drivers' own lines are there too)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.integration.servers import service
from tools.stack import SidecarProcess

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
SECRETS = ("redis-url-pw-7Qx", "pg se'cret-9Kz", "cret-9Kz", "ssl-key-pw-3Lm", "query-pw-5Tr")


def run_sidecar(env: dict[str, str], listen: str, linger_s: float = 0.0) -> tuple[str, str]:
    """Start a sidecar with `env` on `listen`, wait until it serves, let it run `linger_s`
    more (failed calls after start-up: breaker probes, retries), stop it; its output."""
    sidecar = SidecarProcess(listen, env=env, metrics_listen="off", cwd=ROOT)
    try:
        sidecar.start()
        time.sleep(linger_s)
    finally:
        sidecar.stop(30)
    output = sidecar.output()
    return output.stdout, output.stderr


def test_refused_credentials_never_reach_stdout_or_stderr(
    short_tmp: Path, sidecar_env: dict[str, str]
) -> None:
    redis_url = urlsplit(service("STRATA_TEST_REDIS_URL"))
    pg = urlsplit(service("STRATA_TEST_POSTGRES_DSN"))
    listen = f"unix:{short_tmp}/s.sock"
    env = {
        **sidecar_env,
        "STRATA_REDIS_URL": f"redis://strata_nobody:redis-url-pw-7Qx@{redis_url.netloc}/0",
        "STRATA_POSTGRES_DSN": (
            f"host={pg.hostname} port={pg.port} dbname=strata user=strata_no_such_role "
            "password='pg se\\'cret-9Kz' sslpassword=ssl-key-pw-3Lm connect_timeout=2"
        ),
        "STRATA_LOG_LEVEL": "DEBUG",
        "STRATA_POSTGRES_TIMEOUT_MS": "500",
    }
    stdout, stderr = run_sidecar(env, listen, linger_s=0.5)
    for secret in SECRETS:
        assert secret not in stdout, f"{secret!r} in stdout"
        assert secret not in stderr, f"{secret!r} in stderr"
    records = [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]
    started = next(r for r in records if r.get("message") == "sidecar started")
    config = started["strata"]["config"]
    assert config["redis_url"] == f"redis://strata_nobody:***@{redis_url.netloc}/0"
    assert "password=*** sslpassword=***" in config["postgres_dsn"]
    failures = " ".join(str(r.get("error", {}).get("message", "")) for r in records)
    assert "AUTH" in failures or "auth" in failures.lower()  # the Redis refusal was logged
    assert "strata_no_such_role" in failures  # and the PostgreSQL one


def test_a_redis_url_with_a_password_query_parameter_is_masked_at_start_up(
    short_tmp: Path, sidecar_env: dict[str, str]
) -> None:
    redis_url = urlsplit(service("STRATA_TEST_REDIS_URL"))
    listen = f"unix:{short_tmp}/s.sock"
    env = {**sidecar_env, "STRATA_REDIS_URL": f"redis://{redis_url.netloc}/0?password=query-pw-5Tr"}
    stdout, stderr = run_sidecar(env, listen)
    assert "query-pw-5Tr" not in stdout + stderr
    assert "?password=***" in stdout
