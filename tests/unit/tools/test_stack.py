"""tools.stack's pure parts: addresses, the sidecar's command line, kong.yml pointed at a stack."""

from __future__ import annotations

import sys
from pathlib import Path

from tools.stack import REPO, kong_config, sidecar_argv, unix_path


def test_unix_path_of_both_spellings_and_none_for_tcp() -> None:
    assert unix_path("unix:/tmp/s.sock") == Path("/tmp/s.sock")
    assert unix_path("unix:///tmp/s.sock") == Path("/tmp/s.sock")
    assert unix_path("127.0.0.1:50051") is None


def test_sidecar_argv_orders_listen_metrics_log_level_settings_then_args() -> None:
    argv = sidecar_argv(
        "unix:/tmp/s.sock",
        metrics_listen="off",
        log_level="WARNING",
        settings={"memory_max_bytes": "0", "redis_url": "redis://x"},
        args=["--namespace", "n"],
    )
    assert argv == [
        sys.executable, "-m", "sidecar", "--listen", "unix:/tmp/s.sock",
        "--metrics-listen", "off", "--log-level", "WARNING",
        "--memory-max-bytes", "0", "--redis-url", "redis://x", "--namespace", "n",
    ]  # fmt: skip


def test_sidecar_argv_without_listen_leaves_the_address_to_the_environment() -> None:
    assert sidecar_argv(None, python="py") == ["py", "-m", "sidecar"]


def test_kong_config_points_every_service_and_strata_plugin_at_the_stack() -> None:
    config = kong_config(
        "http://127.0.0.1:9", {"address": "unix:/s", "timeout_ms": 200}, {"cache_ttl": 7}
    )
    services = config["services"]
    assert services and all(s["url"] == "http://127.0.0.1:9" for s in services)
    plugins = [
        p
        for s in services
        for r in s.get("routes", [])
        for p in r.get("plugins", [])
        if p["name"] == "strata-cache"
    ]
    assert plugins
    for plugin in plugins:
        assert plugin["config"]["sidecar"] == {"address": "unix:/s", "timeout_ms": 200}
        assert plugin["config"]["cache_ttl"] == 7
    assert (REPO / "kong.yml").is_file()
