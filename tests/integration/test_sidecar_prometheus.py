"""Prometheus (the real server from `make services-up`) scrapes the sidecar's /metrics."""

from __future__ import annotations

import json
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
from strata.v1 import cache_pb2 as pb

from kong_plugin.client import SidecarClient
from tools import services
from tools.stack import SidecarProcess, free_port

pytestmark = pytest.mark.integration


def query(prom_url: str, promql: str) -> list[dict[str, object]]:
    url = f"{prom_url}/api/v1/query?" + urllib.parse.urlencode({"query": promql})
    with urllib.request.urlopen(url, timeout=5) as resp:
        data = json.load(resp)
    assert data["status"] == "success", data
    return list(data["data"]["result"])


def test_prometheus_scrapes_sidecar_metrics(short_tmp: Path, sidecar_env: dict[str, str]) -> None:
    env = services.load_env()
    if not env:
        pytest.fail("no services env file: run `make services-up` first")
    prom_url = env["STRATA_TEST_PROMETHEUS_URL"]
    targets_file = env["STRATA_TEST_PROMETHEUS_TARGETS_FILE"]
    listen = f"unix:{short_tmp}/s.sock"
    metrics = f"127.0.0.1:{free_port()}"
    sidecar = SidecarProcess(listen, env=sidecar_env, metrics_listen=metrics)
    try:
        sidecar.start()
        client = SidecarClient(listen, timeout_s=2.0)
        client.store(b"k", pb.Entry(status=200, body=b"x" * 100, ttl_ms=600_000))
        for _ in range(3):
            client.lookup(b"k")
        client.close()
        services.write_prometheus_targets_file(targets_file, [metrics])
        deadline = time.monotonic() + 45
        hits: list[dict[str, object]] = []
        while time.monotonic() < deadline:
            hits = query(
                prom_url,
                f'strata_lookups_total{{instance="{metrics}",outcome="hit",tier="memory"}}',
            )
            if hits:
                break
            time.sleep(0.5)
        assert hits, "Prometheus never scraped the sidecar"
        assert float(hits[0]["value"][1]) == 3.0  # type: ignore[index]
        entries = query(prom_url, f'strata_tier_entries{{instance="{metrics}"}}')
        assert float(entries[0]["value"][1]) == 1.0  # type: ignore[index]
    finally:
        services.write_prometheus_targets_file(targets_file, [])
        sidecar.stop()
