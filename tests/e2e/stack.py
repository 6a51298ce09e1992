"""The whole product on loopback for end-to-end tests: example upstream (in the test's event
loop), a sidecar process, and kongsim driving the real strata-cache plugin server.

The repository's `kong.yml` is used as it is, except that the upstream URL and each
strata-cache plugin's `sidecar.address` point at this stack's own upstream and sidecar.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml
from aiohttp import web

from deploy.upstream.app import State, build_app
from kongsim.testing import KongSim
from sidecar.cli import probe
from sidecar.rpc.unix_socket import inspect as inspect_socket
from tests.conftest import free_port

REPO = Path(__file__).resolve().parents[2]


def stack_config(
    upstream_url: str, sidecar_address: str, **plugin_overrides: Any
) -> dict[str, Any]:
    """The repository's kong.yml pointed at this stack."""
    config: dict[str, Any] = yaml.safe_load((REPO / "kong.yml").read_text())
    for service in config["services"]:
        service["url"] = upstream_url
        for route in service.get("routes", []):
            for plugin in route.get("plugins", []):
                if plugin["name"] == "strata-cache":
                    plugin.setdefault("config", {})
                    plugin["config"]["sidecar"] = {"address": sidecar_address, "timeout_ms": 200}
                    plugin["config"].update(plugin_overrides)
    return config


class Sidecar:
    """A sidecar subprocess on a unix socket (start, kill, restart).

    `start` returns once this very process answers at the socket path (another sidecar
    may still hold the path while this one starts and takes it over). `args` are extra
    command-line settings; `log` receives its stdout and stderr (else they are inherited).
    """

    def __init__(
        self,
        socket_path: Path,
        env: Mapping[str, str],
        metrics_listen: str = "off",
        args: Sequence[str] = (),
        log: Path | None = None,
    ) -> None:
        self.socket_path = socket_path
        self.address = f"unix:{socket_path}"
        self.env = dict(env)
        self.metrics_listen = metrics_listen
        self.args = list(args)
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 20.0) -> None:
        out = self.log.open("ab") if self.log is not None else None
        try:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "sidecar",
                    "--listen",
                    self.address,
                    "--metrics-listen",
                    self.metrics_listen,
                    "--log-level",
                    "WARNING",
                    *self.args,
                ],
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT if out is not None else None,
            )
        finally:
            if out is not None:
                out.close()
        deadline = time.monotonic() + timeout
        while not self.serving():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("sidecar did not start")
            time.sleep(0.02)

    def serving(self) -> bool:
        """This process owns the socket path and its health service says SERVING."""
        if self.proc is None:
            return False
        try:
            owner = inspect_socket(str(self.socket_path)).owner_pid
        except OSError:
            return False
        return owner == self.proc.pid and probe(self.address, 0.3)

    def terminate(self) -> None:
        """SIGTERM without waiting."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


class Stack:
    """Upstream + sidecar + kongsim; use as `async with Stack(tmp) as s:`."""

    def __init__(self, tmp: Path, strict: bool = True, **plugin_overrides: Any) -> None:
        self.tmp = tmp
        self.strict = strict
        self.plugin_overrides = plugin_overrides
        env = {k: v for k, v in os.environ.items() if not k.startswith("STRATA_")}
        self.sidecar = Sidecar(tmp / "sidecar.sock", env)
        self.upstream_state = State(slow_ms=300)
        self._runner: web.AppRunner | None = None
        self.sim: KongSim | None = None
        self.base_url = ""

    async def __aenter__(self) -> Stack:
        port = free_port()
        self._runner = web.AppRunner(build_app(self.upstream_state), access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", port).start()
        await asyncio.to_thread(self.sidecar.start)
        config = stack_config(
            f"http://127.0.0.1:{port}", self.sidecar.address, **self.plugin_overrides
        )
        path = self.tmp / "kong.yml"
        path.write_text(yaml.safe_dump(config))
        self.sim = KongSim(path, strict=self.strict, prefix=str(self.tmp / "kong"))
        await self.sim.__aenter__()
        self.base_url = self.sim.base_url
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.sim is not None:
            await self.sim.__aexit__(None, None, None)
        await asyncio.to_thread(self.sidecar.stop)
        if self._runner is not None:
            await self._runner.cleanup()
