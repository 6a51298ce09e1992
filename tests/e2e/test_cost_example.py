"""`python -m tools.cost_example --seconds 4`: docs/cost.md's worked example, shortened. Its
two reports print, their key figures are sane, and it leaves no key of its namespace in Redis.

Needs Redis from `make services-up` (`make test` starts them) and ``prometheus`` on PATH.
The run is a process group of its own, so one that hangs is stopped with what it started.
Takes ~15-25 s on a 2-core machine (sidecar and Prometheus start-up, the scrapes it waits for).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from tests.e2e.test_bench_smoke import assert_positive
from tests.support.process_group import run_group
from tools import services

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(150)]
REPO = Path(__file__).resolve().parents[2]
RUN_TIMEOUT_S = 120.0


def run_example(*argv: str) -> subprocess.CompletedProcess[str]:
    """`python -m tools.cost_example ARGV` from the repo root, in a session of its own (it
    cleans up on the SIGTERM a run over time gets)."""
    return run_group([sys.executable, "-m", "tools.cost_example", *argv], RUN_TIMEOUT_S)


@pytest.fixture(scope="module")
def redis_client() -> Iterator[redis.Redis]:
    url = services.load_env().get("STRATA_TEST_REDIS_URL")
    if not url:
        pytest.fail("the cost example needs Redis: run `make services-up` first")
    client = redis.Redis.from_url(url, socket_timeout=5)
    yield client
    client.close()


def test_a_short_run_prints_both_reports_and_cleans_up(
    redis_client: redis.Redis, tmp_path: Path
) -> None:
    out_path = tmp_path / "report.json"
    result = run_example("--seconds", "4", "--json-out", str(out_path))
    assert result.returncode == 0, f"exit {result.returncode}:\n{result.stdout}\n{result.stderr}"

    commands = [line for line in result.stdout.splitlines() if line.startswith("$ strata cost")]
    assert len(commands) == 2, result.stdout
    assert "--metrics http://127.0.0.1:" in commands[0]
    assert "--prometheus http://127.0.0.1:" in commands[1]
    assert result.stdout.count("Strata cost report: 2 node(s)") == 2
    assert result.stdout.count("Monthly cost ") == 2

    document: dict[str, Any] = json.loads(out_path.read_text())
    run = document["run"]
    assert run["requests"] > run["misses"] > 0
    assert run["namespace"].startswith("cost")
    assert run["redis_max_bytes"] == 0
    assert len(run["memory_entries_by_node"]) == 2
    assert run["redis_keys_by_kind"].get("e", 0) > 0  # promoted entries reached Redis
    for source in ("metrics", "prometheus"):
        report = document[source]
        assert report["nodes"] == 2
        assert_positive(f"{source}.hits", report["origin_requests_avoided"], ("window",))
        assert_positive(f"{source}.egress avoided", report["egress_avoided_bytes"], ("window",))
        assert_positive(f"{source}.memory_now", report["memory_now"], ("dedup_saved_bytes",))
        # 4 consumers share each page: the memory tier holds fewer body bytes than it serves
        now = report["memory_now"]
        assert now["body_stored_bytes"] < now["body_distinct_bytes"] < now["body_bytes"]
        monthly = report["monthly"]
        assert monthly["strata"]["total"] < monthly["no_cache"]["total"]
    # The metrics report counts every request the client sent (since the sidecars started).
    assert document["metrics"]["requests"]["window"] == run["requests"]

    assert list(redis_client.scan_iter(match=f"{run['namespace']}:*", count=1000)) == []
    assert "cleaned up: " in result.stderr


def example_exit(argv: list[str], run_dir: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, services.RUN_DIR_ENV: str(run_dir)}
    return subprocess.run(
        [sys.executable, "-m", "tools.cost_example", *argv],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_services_down_is_a_usage_error(tmp_path: Path) -> None:
    result = example_exit(["--seconds", "1"], tmp_path)  # a run dir with no services
    assert result.returncode == 2
    assert "make services-up" in result.stderr
    assert result.stdout == ""


@pytest.mark.parametrize(
    ("argv", "named"),
    [(["--seconds", "0"], "--seconds"), (["--redis-max-bytes", "lots"], "--redis-max-bytes")],
)
def test_bad_arguments_are_usage_errors(argv: list[str], named: str, tmp_path: Path) -> None:
    result = example_exit(argv, tmp_path)
    assert result.returncode == 2
    assert named in result.stderr
