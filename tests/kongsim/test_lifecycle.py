"""kongsim lifecycles: reload, plugin-server crash, non-strict fail-open, workers, CLI."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from kongsim.errors import ConfigError, PluginServerError
from kongsim.testing import KongSim
from tools.stack import free_port

from .conftest import Upstream, plugin_spec, write_config

EXIT_CONFIG = """
_format_version: "3.0"
services:
- name: echo
  url: {upstream}
  routes:
  - name: exit
    paths: [/exit]
    plugins: [{{name: ks-exit, config: {{tag: {tag}}}}}]
"""

BOOM_CONFIG = """
_format_version: "3.0"
services:
- name: echo
  url: {upstream}
  routes:
  - name: raise
    paths: [/raise]
    plugins: [{{name: ks-boom, config: {{mode: raise_after_call}}}}]
  - {{name: bad-phase, paths: [/bad], plugins: [{{name: ks-boom, config: {{mode: bad_phase}}}}]}}
  - name: unknown
    paths: [/unknown]
    plugins: [{{name: ks-boom, config: {{mode: unknown_pdk}}}}]
"""


async def fetch(sim: KongSim, path: str, **kw: Any) -> tuple[int, dict[str, str], bytes]:
    async with aiohttp.ClientSession() as http, http.get(sim.base_url + path, **kw) as resp:
        return resp.status, dict(resp.headers), await resp.read()


async def test_reload_restarts_instances_with_the_new_config(
    tmp_path: Path, upstream: Upstream
) -> None:
    path = write_config(tmp_path, EXIT_CONFIG.format(upstream=upstream.url, tag="one"))
    async with KongSim(path, plugin_servers=[plugin_spec("ks-exit")]) as sim:
        _, headers, _ = await fetch(sim, "/exit", headers={"x-exit": "1"})
        assert headers["X-Tag"] == "one"
        first = (await sim.last_request())["events"][0]
        assert first["rpc_methods"][:2] == ["plugin.StartInstance", "plugin.HandleEvent"]

        write_config(tmp_path, EXIT_CONFIG.format(upstream=upstream.url, tag="two"))
        await sim.reload()
        _, headers, _ = await fetch(sim, "/exit", headers={"x-exit": "1"})
        assert headers["X-Tag"] == "two"
        event = (await sim.last_request())["events"][0]
        assert event["rpc_methods"][:3] == [
            "plugin.StartInstance",
            "plugin.CloseInstance",
            "plugin.HandleEvent",
        ]
        assert event["instance_id"] == 1
        assert sim.status()["workers"][0]["instances"] == {
            sim.gateway.runtime.decl.plugins[0].id: 1
        }

        write_config(tmp_path, EXIT_CONFIG.format(upstream=upstream.url, tag="''"))
        with pytest.raises(ConfigError, match=r"config.tag: length must be at least 1"):
            await sim.reload()
        _, headers, _ = await fetch(sim, "/exit", headers={"x-exit": "1"})
        assert headers["X-Tag"] == "two"  # the old config stays
        assert sim.issues == []


async def test_plugin_server_crash_is_respawned_and_instances_restarted(
    tmp_path: Path, upstream: Upstream
) -> None:
    path = write_config(tmp_path, EXIT_CONFIG.format(upstream=upstream.url, tag="t"))
    async with KongSim(path, plugin_servers=[plugin_spec("ks-exit")]) as sim:
        status, _, _ = await fetch(sim, "/exit", headers={"x-exit": "1"})
        assert status == 200
        await sim.wait_idle()  # let its log phase finish before the crash
        server = sim.plugin_server("ks-exit")
        old_pid = server.pid
        server.kill(signal.SIGKILL)
        deadline = time.monotonic() + 10
        while (server.spawns < 2 or not server.ready) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        assert server.spawns == 2 and server.pid != old_pid and server.exit_codes == [-9]

        status, headers, body = await fetch(sim, "/exit", headers={"x-exit": "2"})
        assert (status, body, headers["X-Tag"]) == (200, b"exited:2", "t")
        event = (await sim.last_request())["events"][0]
        # the stale instance id is refused by the new process, then a new instance starts
        assert event["rpc_methods"][:3] == [
            "plugin.HandleEvent",
            "plugin.StartInstance",
            "plugin.HandleEvent",
        ]
        assert any("no plugin instance" in w for w in sim.warnings)
        assert [i["kind"] for i in sim.issues] == ["plugin_server"]


async def test_non_strict_mode_fails_open_like_kong(tmp_path: Path, upstream: Upstream) -> None:
    path = write_config(tmp_path, BOOM_CONFIG.format(upstream=upstream.url))
    async with KongSim(
        path, strict=False, plugin_servers=[plugin_spec("ks-boom")], rpc_timeout=0.5
    ) as sim:
        started = time.monotonic()
        status, headers, body = await fetch(sim, "/raise/x")
        assert status == 200 and json.loads(body)["path"] == "/x"  # proxied anyway
        assert time.monotonic() - started >= 0.5
        assert "X-Kongsim-Error" not in headers

        status, headers, _ = await fetch(sim, "/unknown")
        assert status == 200 and headers["X-Boom"] == "after-unknown"

        status, headers, body = await fetch(sim, "/bad")
        assert status == 500 and "X-Kongsim-Error" not in headers
        assert json.loads(body)["message"] == "An unexpected error occurred"
        assert [i["kind"] for i in sim.issues] == ["rpc_timeout", "unknown_pdk_method", "lua_error"]


async def test_workers_have_their_own_instances_and_per_call_connections(
    tmp_path: Path, upstream: Upstream
) -> None:
    path = write_config(tmp_path, EXIT_CONFIG.format(upstream=upstream.url, tag="w"))
    async with KongSim(
        path, plugin_servers=[plugin_spec("ks-exit")], workers=2, rpc_pooled=False
    ) as sim:
        for i in range(4):
            status, _, body = await fetch(sim, "/exit", headers={"x-exit": str(i)})
            assert (status, body) == (200, f"exited:{i}".encode())
        await sim.wait_idle()
        workers = sim.status()["workers"]
        assert sorted(next(iter(w["instances"].values())) for w in workers) == [0, 1]
        for w in workers:
            rpc = w["rpc"]["ks-exit"]
            assert rpc["calls"] == rpc["connects"]  # one connection per RPC


@pytest.mark.parametrize(
    ("routes", "message"),
    [
        (
            "plugins: [{name: ks-exit, config: {status: 99}}]",
            "plugin 'ks-exit' on route 'r': config.status: value should be between 100 and 599",
        ),
        (
            "plugins: [{name: ks-exit, config: {colour: red}}]",
            "plugin 'ks-exit' on route 'r': config.colour: unknown field",
        ),
        ("plugins: [{name: nope}]", "plugin 'nope' on route 'r': unknown plugin 'nope'"),
    ],
)
async def test_invalid_configs_stop_start_up(tmp_path: Path, routes: str, message: str) -> None:
    text = f"""
    _format_version: "3.0"
    services:
    - name: s
      url: http://127.0.0.1:1
      routes:
      - name: r
        paths: [/r]
        {routes}
    """
    path = write_config(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        async with KongSim(path, plugin_servers=[plugin_spec("ks-exit")]):
            pass
    assert any(message in m for m in info.value.messages), info.value.messages


def run_cli(*args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "kongsim", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=Path(__file__).parents[2],
        check=False,
    )


def test_cli_check_exits_2_on_invalid_config(tmp_path: Path) -> None:
    path = write_config(
        tmp_path,
        """
    _format_version: "3.0"
    routes:
    - {name: r, paths: [/r], service: missing}
    """,
    )
    result = run_cli("--config", str(path), "--check", "--no-default-plugin-server")
    assert result.returncode == 2
    assert "route 'r': service: unknown service 'missing'" in result.stderr

    path = write_config(
        tmp_path,
        """
    _format_version: "3.0"
    plugins: [{name: ks-exit, config: {status: 1000}}]
    """,
    )
    result = run_cli("--config", str(path), "--check", "--plugin-server", plugin_spec("ks-exit"))
    assert result.returncode == 2
    assert "plugin 'ks-exit' (global): config.status: value should be between 100 and 599" in (
        result.stderr
    )


def test_cli_serves_and_stops_on_sigterm(tmp_path: Path) -> None:
    port = free_port()
    path = write_config(
        tmp_path,
        """
    _format_version: "3.0"
    services:
    - name: s
      url: http://127.0.0.1:1
      routes: [{name: r, paths: [/r], plugins: [{name: ks-exit}]}]
    """,
    )
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "kongsim",
            "--config",
            str(path),
            "--listen",
            f"127.0.0.1:{port}",
            "--strict",
            "--plugin-server",
            plugin_spec("ks-exit"),
            "--log-level",
            "WARNING",
        ],
        cwd=Path(__file__).parents[2],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        body = b""
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                req = urllib.request.Request(
                    f"http://127.0.0.1:{port}/r", headers={"x-exit": "cli"}
                )
                with urllib.request.urlopen(req, timeout=2) as resp:
                    body = resp.read()
                break
            except OSError:
                time.sleep(0.1)
        assert body == b"exited:cli"
    finally:
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=15)
    assert proc.returncode == 0, stderr


async def test_a_plugin_server_that_cannot_start_is_reported_with_its_output(
    tmp_path: Path,
) -> None:
    path = write_config(tmp_path, '_format_version: "3.0"\n')
    dump = plugin_spec("ks-exit").split(";", 1)[1]
    crash = "ks-exit={python} -c \"print('cannot import the plugin') or exit(3)\";" + dump
    started = time.monotonic()
    with pytest.raises(PluginServerError) as info:
        async with KongSim(path, plugin_servers=[crash]):
            pass
    assert time.monotonic() - started < 10
    assert "exited with 3 before becoming ready" in str(info.value)
    assert "cannot import the plugin" in str(info.value)

    bad_dump = "ks-exit={python} -c pass;{python} -c \"print('not json')\""
    with pytest.raises(PluginServerError, match="failed decoding plugin info"):
        async with KongSim(path, plugin_servers=[bad_dump]):
            pass
