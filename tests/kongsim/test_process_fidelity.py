"""Plugin servers as Kong 3.9 manages them (``kong/runloop/plugin_servers/process.lua``,
``rpc/mp_rpc.lua``), including where Kong is less kind than a stand-in would like to be."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import aiohttp
import pytest

from kongsim.http.gateway import Gateway, Options
from kongsim.loglevels import NOTICE, kong_log_level
from kongsim.protocol.spec import PluginServerSpec, child_env, parse_env_names
from kongsim.testing import KongSim

from .conftest import PLUGINS, Upstream, plugin_spec, write_config

CONFIG = """
_format_version: "3.0"
services:
- name: echo
  url: {upstream}
  routes:
  - name: r
    paths: [/r]
    plugins: [{{name: {plugin}}}]
"""


async def fetch(base: str, path: str) -> tuple[int, dict[str, str], bytes]:
    async with aiohttp.ClientSession() as http, http.get(base + path) as resp:
        return resp.status, dict(resp.headers), await resp.read()


def test_child_environment_is_what_an_nginx_worker_passes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TZ", "UTC")
    monkeypatch.setenv("STRATA_X", "1")
    monkeypatch.setenv("OTHER", "2")
    assert child_env() == {"TZ": "UTC"}
    assert child_env(["STRATA_X", "MISSING"]) == {"TZ": "UTC", "STRATA_X": "1"}
    assert parse_env_names("A; env B,C") == ["A", "B", "C"]


async def test_plugin_servers_start_with_a_cleared_environment(
    tmp_path: Path, upstream: Upstream, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KONGSIM_TEST_SECRET", "s")
    monkeypatch.setenv("KONGSIM_TEST_PASSED", "p")
    path = write_config(tmp_path, CONFIG.format(upstream=upstream.url, plugin="ks-env"))
    async with KongSim(path, plugin_servers=[plugin_spec("ks-env")]) as sim:
        status, _, body = await fetch(sim.base_url, "/r")
    seen = json.loads(body)
    assert status == 200
    assert "KONGSIM_TEST_SECRET" not in seen["env"] and "PATH" not in seen["env"]
    assert seen["cwd"] == "/"
    async with KongSim(
        path, plugin_servers=[plugin_spec("ks-env")], passthrough_env=["KONGSIM_TEST_PASSED"]
    ) as sim:
        _, _, body = await fetch(sim.base_url, "/r")
    env = json.loads(body)["env"]
    assert "KONGSIM_TEST_PASSED" in env and "KONGSIM_TEST_SECRET" not in env


async def test_plugin_server_output_is_logged_at_info_below_kongs_default(
    tmp_path: Path, upstream: Upstream, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="kongsim.pluginserver")
    path = write_config(tmp_path, CONFIG.format(upstream=upstream.url, plugin="ks-exit"))
    async with KongSim(path, plugin_servers=[plugin_spec("ks-exit")]) as sim:
        await fetch(sim.base_url, "/r")
    lines = [r for r in caplog.records if r.getMessage().startswith("[ks-exit:")]
    assert lines, "the plugin server printed nothing?"
    assert {r.levelno for r in lines} == {logging.INFO}
    assert kong_log_level("notice") == NOTICE > logging.INFO  # hidden at Kong's default
    assert kong_log_level("bogus") is None


async def test_the_query_commands_exit_status_is_ignored(
    tmp_path: Path, upstream: Upstream
) -> None:
    script = PLUGINS / "ks_exit.py"
    spec = PluginServerSpec(
        "ks-exit",
        f"{{python}} {script} -p {{prefix}} --socket-name ks-exit.socket",
        f"{{python}} {script} --dump && exit 3",
    )
    path = write_config(tmp_path, CONFIG.format(upstream=upstream.url, plugin="ks-exit"))
    async with KongSim(path, plugin_servers=[spec]) as sim:
        status, headers, _ = await fetch(sim.base_url, "/r")
    assert status == 200 and headers["X-Ks-Exit"] == "miss"


async def test_kong_does_not_wait_for_the_plugin_server_socket(
    tmp_path: Path, upstream: Upstream
) -> None:
    script = PLUGINS / "ks_exit.py"
    slow_start = PluginServerSpec(
        "ks-exit",
        f"/bin/sh -c 'sleep 1.5 && exec {{python}} {script} -p {{prefix}} "
        "--socket-name ks-exit.socket'",
        f"{{python}} {script} --dump",
    )
    path = write_config(tmp_path, CONFIG.format(upstream=upstream.url, plugin="ks-exit"))
    gateway = Gateway(
        Options(
            config_path=str(path),
            plugin_servers=[slow_start],
            port=0,
            prefix=str(tmp_path / "k"),
            rpc_timeout=2.0,
        )
    )
    await gateway.start()
    try:
        status, _, body = await fetch(gateway.base_url, "/r")
        # the instance cannot be started: Kong's get_instance_id raises, the client gets 500
        assert status == 500 and b"An unexpected error occurred" in body
        await gateway.servers["ks-exit"].wait_ready(20)
        status, headers, _ = await fetch(gateway.base_url, "/r")
        assert status == 200 and headers["X-Ks-Exit"] == "miss"
    finally:
        await gateway.stop()


def _flaky(fail: int) -> PluginServerSpec:
    script = PLUGINS / "ks_flaky_instances.py"
    return PluginServerSpec(
        "ks-flaky",
        f"{{python}} {script} -p {{prefix}} --fail {fail}",
        f"{{python}} {script} --dump",
    )


async def test_no_plugin_instance_is_retried_without_a_limit(
    tmp_path: Path, upstream: Upstream
) -> None:
    path = write_config(tmp_path, CONFIG.format(upstream=upstream.url, plugin="ks-flaky"))
    async with KongSim(path, plugin_servers=[_flaky(4)]) as sim:
        status, headers, body = await fetch(sim.base_url, "/r")
        assert (status, body, headers["X-Flaky"]) == (200, b"recovered after 4", "1")
        assert sim.issues == []
        assert sum("no plugin instance" in w for w in sim.warnings) == 4


async def test_a_server_that_always_loses_its_instances_hangs_the_request_on_kong(
    tmp_path: Path, upstream: Upstream
) -> None:
    path = write_config(tmp_path, CONFIG.format(upstream=upstream.url, plugin="ks-flaky"))
    async with KongSim(path, plugin_servers=[_flaky(-1)], strict=False, rpc_timeout=0.5) as sim:
        status, _, _ = await fetch(sim.base_url, "/r")
        assert status == 200  # kongsim gives up and fails open; Kong would loop for ever
        issues = sim.issues
    assert [i["kind"] for i in issues] == ["rpc_timeout"]
    assert "without a limit" in issues[0]["message"]
