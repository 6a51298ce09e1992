"""A helper for test suites: kongsim in-process, on a free loopback port.

::

    from kongsim.testing import KongSim

    async with KongSim("tests/e2e/kong.yml", strict=True) as sim:   # default: strata-cache
        async with aiohttp.ClientSession() as http:
            async with http.get(sim.base_url + "/users/1") as resp:
                ...
        stats = await sim.last_request()          # RPCs / PDK calls of that request
        assert sim.issues == []                   # nothing Kong would have logged

``plugin_servers`` takes :class:`~kongsim.protocol.process.PluginServerSpec` objects or
``"NAME=START;QUERY"`` strings (placeholders ``{python}``, ``{prefix}``, ``{socket}``,
``{name}``); ``None`` means the repository's ``strata-cache`` server. Everything binds
127.0.0.1. Start-up and shutdown are bounded (plugin servers: 30 s query, 20 s ready, 5 s stop).

The same data is available over HTTP from a separate kongsim process
(``python -m kongsim``): ``GET /_kongsim/requests/last`` and friends, see :mod:`kongsim.http.admin`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

from kongsim.http.gateway import Gateway, Options
from kongsim.protocol.process import PluginServerProcess
from kongsim.protocol.spec import PluginServerSpec
from kongsim.recorder import RequestRecord


class KongSim:
    """Async context manager running a :class:`~kongsim.http.gateway.Gateway` for a test."""

    def __init__(
        self,
        config_path: str | Path,
        *,
        strict: bool = True,
        plugin_servers: Sequence[PluginServerSpec | str] | None = None,
        workers: int = 1,
        rpc_timeout: float | None = None,
        rpc_pooled: bool = True,
        prefix: str | None = None,
        port: int = 0,
        passthrough_env: Sequence[str] = (),
    ) -> None:
        specs = None
        if plugin_servers is not None:
            specs = [
                s if isinstance(s, PluginServerSpec) else PluginServerSpec.parse(s)
                for s in plugin_servers
            ]
        self.options = Options(
            config_path=str(config_path),
            strict=strict,
            plugin_servers=specs,
            host="127.0.0.1",
            port=port,
            workers=workers,
            rpc_timeout=rpc_timeout,
            rpc_pooled=rpc_pooled,
            prefix=prefix,
            passthrough_env=tuple(passthrough_env),
            # a test needs a ready plugin server; Kong itself does not wait (see gateway)
            wait_for_plugin_servers=True,
        )
        self.gateway = Gateway(self.options)

    async def __aenter__(self) -> KongSim:
        await self.gateway.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.gateway.stop()

    @property
    def base_url(self) -> str:
        return self.gateway.base_url

    @property
    def issues(self) -> list[dict[str, Any]]:
        """Everything Kong would only have logged (plus hard errors), as dicts."""
        return [vars(i).copy() for i in self.gateway.recorder.issues]

    @property
    def warnings(self) -> list[str]:
        return list(self.gateway.recorder.warnings)

    @property
    def requests(self) -> list[RequestRecord]:
        return list(self.gateway.recorder.requests)

    @property
    def rpc_counts(self) -> list[int]:
        """RPCs sent to plugin servers, per request, oldest first."""
        return [r.rpc_count for r in self.gateway.recorder.requests]

    async def last_request(self, wait: float = 5.0) -> dict[str, Any]:
        """The last request's record, after its ``log`` phase finished (bounded wait)."""
        record = self.gateway.recorder.last()
        if record is None:
            raise LookupError("no request recorded yet")
        await self.gateway.wait_idle(wait)
        return record.to_dict()

    def clear(self) -> None:
        """Forget recorded requests, issues and warnings."""
        self.gateway.recorder.clear()

    async def wait_idle(self, timeout: float = 10.0) -> None:
        await self.gateway.wait_idle(timeout)

    async def reload(self, config_path: str | Path | None = None) -> None:
        await self.gateway.reload(str(config_path) if config_path else None)

    def plugin_server(self, name: str) -> PluginServerProcess:
        return self.gateway.servers[name]

    def status(self) -> dict[str, Any]:
        return self.gateway.status()
