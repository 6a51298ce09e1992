"""`Stack`: the example stack (upstream, sidecar, kongsim and its plugin server) on loopback,
as `make run` and the end-to-end tests assemble it, and `kong_config`, the repository's
kong.yml pointed at such a stack.

Not guaranteed: that a port picked free is still free when the upstream or kongsim binds it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from tools.services.procs import free_port
from tools.stack.sidecar import SidecarProcess

if TYPE_CHECKING:
    from aiohttp import web

    from kongsim.testing import KongSim

REPO = Path(__file__).resolve().parents[2]


def kong_config(
    upstream_url: str,
    sidecar: Mapping[str, Any],
    plugin: Mapping[str, Any] | None = None,
    path: Path = REPO / "kong.yml",
) -> dict[str, Any]:
    """The repository's kong.yml with every service pointed at `upstream_url`, and each
    strata-cache plugin's ``sidecar`` settings updated with `sidecar` and its config with
    `plugin`."""
    config: dict[str, Any] = yaml.safe_load(path.read_text())
    for service in config.get("services", []):
        service["url"] = upstream_url
        for route in service.get("routes", []):
            for entry in route.get("plugins", []):
                if entry.get("name") == "strata-cache":
                    settings = entry.setdefault("config", {})
                    settings["sidecar"] = {**settings.get("sidecar", {}), **sidecar}
                    settings.update(plugin or {})
    return config


class Stack:
    """The example stack on loopback: the example upstream (`deploy/upstream`, in this event
    loop, its counters in `upstream_state`), `sidecar` (started and stopped here), and kongsim
    in this event loop (`sim`), which starts the repository's strata-cache plugin server, with
    kong.yml pointed at them (`kong_config`, written to ``workdir/kong.yml``).

    `upstream` / `gateway`: ``host:port`` to listen on (default: free loopback ports; kongsim
    always listens on 127.0.0.1, at the port of `gateway`).
    `upstream_app`: builds the upstream instead of the example one (tests' scripted origins).
    `external_upstream`: the caller serves `upstream` itself (a raw socket origin that
    aiohttp could not be); none is started here.
    `sidecar_settings`: extra keys for each plugin's ``sidecar`` settings (the address is
    the sidecar's). Use as ``async with Stack(...) as stack:``. Not guaranteed: that a port
    picked free is still free when the upstream or kongsim binds it.
    """

    def __init__(
        self,
        workdir: Path,
        sidecar: SidecarProcess,
        *,
        strict: bool = True,
        plugin: Mapping[str, Any] | None = None,
        sidecar_settings: Mapping[str, Any] | None = None,
        upstream: str | None = None,
        gateway: str | None = None,
        slow_ms: int = 300,
        passthrough_env: Sequence[str] = (),
        upstream_app: Callable[[], web.Application] | None = None,
        external_upstream: bool = False,
    ) -> None:
        from deploy.upstream.app import State  # noqa: PLC0415

        self.workdir = workdir
        self.sidecar = sidecar
        self.strict = strict
        self.plugin = dict(plugin or {})
        self.sidecar_settings = dict(sidecar_settings or {})
        self.upstream = upstream or f"127.0.0.1:{free_port()}"
        self.gateway = gateway
        self.passthrough_env = tuple(passthrough_env)
        self.upstream_state = State(slow_ms=slow_ms)
        self.upstream_app = upstream_app
        self.external_upstream = external_upstream
        self.sim: KongSim | None = None
        self.base_url = ""
        self._runner: web.AppRunner | None = None

    @property
    def upstream_url(self) -> str:
        return f"http://{self.upstream}"

    async def start(self) -> None:
        """Upstream, then sidecar (until serving), then kongsim (until its plugin server
        answers). Whatever started is stopped again if a later part fails."""
        from aiohttp import web  # noqa: PLC0415

        from deploy.upstream.app import build_app  # noqa: PLC0415
        from kongsim.testing import KongSim  # noqa: PLC0415

        try:
            if not self.external_upstream:
                app = self.upstream_app() if self.upstream_app else build_app(self.upstream_state)
                self._runner = web.AppRunner(app, access_log=None)
                await self._runner.setup()
                host, _, port = self.upstream.rpartition(":")
                await web.TCPSite(self._runner, host, int(port)).start()
            await asyncio.to_thread(self.sidecar.start)
            sidecar = {**self.sidecar_settings, "address": self.sidecar.address}
            path = self.workdir / "kong.yml"
            path.write_text(yaml.safe_dump(kong_config(self.upstream_url, sidecar, self.plugin)))
            self.sim = KongSim(
                path,
                strict=self.strict,
                prefix=str(self.workdir / "kong"),
                port=int(self.gateway.rpartition(":")[2]) if self.gateway else 0,
                passthrough_env=self.passthrough_env,
            )
            await self.sim.__aenter__()
            self.base_url = self.sim.base_url
        except BaseException:
            await self.stop()
            raise

    async def stop(self) -> None:
        """kongsim, then the sidecar (SIGTERM, then SIGKILL after 15 s), then the upstream."""
        if self.sim is not None:
            sim, self.sim = self.sim, None
            await sim.__aexit__(None, None, None)
        await asyncio.to_thread(self.sidecar.stop)
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()

    async def __aenter__(self) -> Stack:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()
