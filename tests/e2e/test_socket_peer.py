"""A second local user against the sidecar's socket, with real processes: it cannot have
the sidecar take its socket over, and a socket it put at the path first gets nothing from
the plugin -- neither through `SidecarClient` nor through a request on kongsim.

The other user is a forked child running as uid 65534 (`tests.other_user`); the path is in
a sticky world-writable folder (like /tmp), where that user can create it.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from aiohttp import web
from strata.v1 import cache_pb2 as pb

from deploy.upstream.app import State, build_app
from kong_plugin.client import SidecarClient, SidecarUntrustedError
from kongsim.testing import KongSim
from tests.other_user import OTHER_UID, Impostor, needs_root, shared_folder
from tests.support.sidecar import stack_config, unix_sidecar
from tools.stack import SidecarProcess, free_port

pytestmark = pytest.mark.e2e


@pytest.fixture
def folder() -> Iterator[Path]:
    with shared_folder() as f:
        yield f


def entry() -> pb.Entry:
    return pb.Entry(status=200, body=b"x", ttl_ms=60_000)


@needs_root
def test_the_plugin_sends_nothing_to_another_users_socket(folder: Path) -> None:
    path = folder / "sidecar.sock"
    with Impostor(path) as impostor:
        client = SidecarClient(f"unix:{path}", timeout_s=1.0)
        try:
            with pytest.raises(SidecarUntrustedError) as info:
                client.lookup(b"k", [(b"authorization", b"Bearer secret")])
            message = str(info.value)
            assert str(path) in message
            assert f"pid {impostor.pid} uid {OTHER_UID}" in message
            assert f"expected uid {os.geteuid()}" in message
        finally:
            client.close()
        connections, received = impostor.stop()
    assert connections >= 1 and received == 0


@needs_root
def test_a_socket_taken_while_the_sidecar_was_down_gets_nothing_on_reconnect(
    folder: Path, sidecar_env: dict[str, str]
) -> None:
    path = folder / "sidecar.sock"
    sidecar = unix_sidecar(path, sidecar_env, log=folder / "sidecar.log")
    sidecar.start()
    client = SidecarClient(sidecar.address, timeout_s=2.0)
    try:
        client.store(b"k", entry())
        assert client.lookup(b"k").outcome == pb.OUTCOME_HIT
        sidecar.stop()  # SIGTERM: it drains and removes its socket
        assert not path.exists()
        with Impostor(path) as impostor:
            for _ in range(5):
                with pytest.raises(SidecarUntrustedError, match=f"uid {OTHER_UID}"):
                    client.lookup(b"k", [(b"cookie", b"session=secret")])
            connections, received = impostor.stop()
        assert received == 0, "the plugin sent bytes to another user's socket"
        assert connections >= 1
        # The impostor's dead socket is another user's file: a new sidecar does not touch
        # it; once the operator removes it, the sidecar starts and the client comes back.
        err = start_refused(sidecar.address, sidecar_env)
        assert f"left by uid {OTHER_UID}" in err and path.exists()
        path.unlink()
        sidecar.start()
        assert client.lookup(b"k").outcome == pb.OUTCOME_MISS  # memory tier: a new process
    finally:
        client.close()
        sidecar.stop()


def start_refused(listen: str, env: dict[str, str], *args: str) -> str:
    """Start a sidecar that must refuse to start: its one line of stderr."""
    sidecar = SidecarProcess(listen, env=env, metrics_listen="off", args=args)
    refused = sidecar.expect_refusal()
    assert refused.returncode == 1, refused
    err = refused.stderr
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    return err


def test_socket_takeover_false_refuses_to_start_beside_a_running_sidecar(
    short_tmp: Path, sidecar_env: dict[str, str]
) -> None:
    path = short_tmp / "sidecar.sock"
    running = unix_sidecar(path, sidecar_env, log=short_tmp / "a.log")
    running.start()
    try:
        err = start_refused(f"unix:{path}", sidecar_env, "--socket-takeover", "false")
        assert str(path) in err and "socket_takeover is false" in err, err
        assert running.proc is not None and f"pid {running.proc.pid}" in err, err
        assert running.serving()  # untouched
    finally:
        running.stop()


@needs_root
def test_the_sidecar_never_takes_over_another_users_live_socket(
    folder: Path, sidecar_env: dict[str, str]
) -> None:
    path = folder / "sidecar.sock"
    with Impostor(path) as impostor:
        inode = path.lstat().st_ino
        err = start_refused(f"unix:{path}", sidecar_env)
        assert str(path) in err and f"pid {impostor.pid}" in err and f"uid {OTHER_UID}" in err
        assert path.lstat().st_ino == inode
        _, received = impostor.stop()
    assert received == 0


@needs_root
async def test_a_request_through_kongsim_bypasses_an_impostor(folder: Path) -> None:
    path = folder / "sidecar.sock"
    port = free_port()
    runner = web.AppRunner(build_app(State(slow_ms=300)), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    impostor = Impostor(path).start()
    try:
        config: dict[str, Any] = stack_config(f"http://127.0.0.1:{port}", f"unix:{path}")
        kong_yml = folder / "kong.yml"
        kong_yml.write_text(yaml.safe_dump(config))
        async with (
            KongSim(kong_yml, strict=True, prefix=str(folder / "kong")) as sim,
            aiohttp.ClientSession() as http,
        ):
            for _ in range(2):
                async with http.get(
                    sim.base_url + "/products/1", headers={"Authorization": "Bearer secret"}
                ) as resp:
                    assert resp.status == 200
                    assert resp.headers["X-Cache-Status"] == "Bypass"
                    assert "detail=sidecar-untrusted" in resp.headers["Cache-Status"]
    finally:
        connections, received = await asyncio.to_thread(impostor.stop)
        await runner.cleanup()
    assert received == 0, "the plugin sent bytes to another user's socket"
    assert connections >= 1
