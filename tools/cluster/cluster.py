"""`Cluster`: NGINX in front of N gateway nodes on loopback, what `make cluster` runs and what
the cluster tests drive.

Start order: the origin (the example upstream, in this event loop, counting requests), every
node's sidecar (started together, then waited for), every node's kongsim + plugin server
(likewise), then NGINX (configuration written and checked with ``nginx -t`` first). `stop`
goes in reverse and then stops any process still naming the run folder, so nothing is
left running. A part that fails to start stops what started before it.

Modes: ``shared`` (the default) wires every sidecar to the shared Redis, Memcached,
PostgreSQL and Kafka broker of `make services-up` (`tools.cluster.shared`), under a
namespace and invalidation topic of this run's own; ``memory`` gives each sidecar its
in-process memory tier only.

Not guaranteed: free ports stay free until bound; NGINX's view of a node (passive checks:
it learns a node is down from failed requests); that `stop_node` leaves no request of that
node unanswered (NGINX passes failed idempotent requests to another node).
"""

from __future__ import annotations

import asyncio
import enum
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tools.cluster.nginx import Balancing, Nginx
from tools.cluster.node import GatewayNode, NodeSpec
from tools.cluster.origin import CountingOrigin
from tools.cluster.processes import START_TIMEOUT_S, kill_leftovers, leftovers
from tools.cluster.shared import run_id, run_settings, shared_settings
from tools.services.procs import free_port


class Mode(enum.Enum):
    SHARED = "shared"
    MEMORY = "memory"


class Cluster:
    """NGINX + `nodes` gateway nodes + the counting origin, everything under `workdir`
    (created 0700; keep its path short: unix socket paths are limited to 107 bytes).

    `gateway` / `upstream`: ``host:port`` of NGINX and the origin (default: free loopback
    ports). `memory_max_bytes`: each sidecar's memory tier. `plugin` / `plugin_sidecar`:
    extra keys for every strata-cache plugin's config / its ``sidecar`` settings (e.g.
    ``{"timeout_ms": 250}``). `sidecar_env`: the sidecars' environment (default: this
    process's). `services_run_dir`: where `make services-up` wrote services.env.
    `nginx=False` runs the nodes without NGINX (`gateway_url` is then unusable).
    Use as ``async with Cluster(...) as cluster:``, or `start` / `stop`.
    """

    def __init__(
        self,
        workdir: Path,
        *,
        nodes: int = 2,
        mode: Mode = Mode.SHARED,
        gateway: str | None = None,
        upstream: str | None = None,
        memory_max_bytes: int | None = None,
        plugin: Mapping[str, Any] | None = None,
        plugin_sidecar: Mapping[str, Any] | None = None,
        plugin_workers: str = "auto",
        sidecar_env: Mapping[str, str] | None = None,
        sidecar_settings: Mapping[str, str] | None = None,
        services_run_dir: str | os.PathLike[str] | None = None,
        slow_ms: int = 300,
        balancing: Balancing | None = None,
        nginx: bool = True,
    ) -> None:
        if nodes < 1:
            raise ValueError("a cluster needs at least one node")
        self.workdir = workdir
        self.mode = mode
        self.run = run_id()
        self.origin = CountingOrigin(upstream or f"127.0.0.1:{free_port()}", slow_ms=slow_ms)
        self._count = nodes
        self._memory = memory_max_bytes
        self._plugin = dict(plugin or {})
        self._plugin_sidecar = dict(plugin_sidecar or {})
        self._plugin_workers = plugin_workers
        self._sidecar_env = sidecar_env
        self._extra_settings = dict(sidecar_settings or {})
        self._services_run_dir = services_run_dir
        self._gateway = gateway or f"127.0.0.1:{free_port()}"
        self._balancing = balancing
        self._with_nginx = nginx
        self.settings: dict[str, str] = {}
        self.nodes: list[GatewayNode] = []
        self.nginx: Nginx | None = None

    # ------------------------------------------------------------------ addresses

    @property
    def gateway_url(self) -> str:
        return f"http://{self._gateway}"

    @property
    def gateway_listen(self) -> str:
        return self._gateway

    def node(self, i: int) -> GatewayNode:
        return self.nodes[i]

    # ------------------------------------------------------------------ start / stop

    def _sidecar_settings(self) -> dict[str, str]:
        settings: dict[str, str] = {}
        if self.mode is Mode.SHARED:
            settings = run_settings(shared_settings(self._services_run_dir), self.run)
        if self._memory is not None:
            settings["memory_max_bytes"] = str(self._memory)
        return {**settings, **self._extra_settings}

    def _build(self) -> None:
        self.workdir.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(self.workdir, 0o700)
        self.settings = self._sidecar_settings()
        self.nodes = []
        for i in range(1, self._count + 1):
            directory = self.workdir / f"node-{i}"
            directory.mkdir(mode=0o700, exist_ok=True)
            spec = NodeSpec(
                index=i,
                directory=directory,
                origin_url=self.origin.url,
                sidecar_settings=self.settings,
                plugin=self._plugin,
                plugin_sidecar=self._plugin_sidecar,
                plugin_workers=self._plugin_workers,
                sidecar_env=self._sidecar_env,
            )
            self.nodes.append(GatewayNode(spec))
        if self._with_nginx:
            prefix = self.workdir / "nginx"
            prefix.mkdir(mode=0o700, exist_ok=True)
            listens = [n.proxy_listen for n in self.nodes]
            self.nginx = Nginx(self._gateway, listens, prefix, self._balancing)

    async def start(self, timeout: float = START_TIMEOUT_S) -> None:
        """Origin, sidecars, gateways, NGINX (see the module docstring); `ServicesDownError`
        in shared mode when the services are not up (nothing is started then)."""
        self._build()
        try:
            await self.origin.start()
            for node in self.nodes:
                node.write_config()
                node.spawn_sidecar()
            await asyncio.gather(*(asyncio.to_thread(n.start_sidecar, timeout) for n in self.nodes))
            for node in self.nodes:
                node.spawn_gateway()
            await asyncio.gather(*(asyncio.to_thread(n.start_gateway, timeout) for n in self.nodes))
            if self.nginx is not None:
                await asyncio.to_thread(self.nginx.start)
        except BaseException:
            await self.stop()
            raise

    async def stop(self) -> None:
        """NGINX, every gateway, every sidecar, the origin; then any process still naming
        the run folder is stopped (SIGTERM, then SIGKILL)."""
        if self.nginx is not None:
            await asyncio.to_thread(self.nginx.stop)
        await asyncio.gather(*(asyncio.to_thread(n.stop_gateway) for n in self.nodes))
        await asyncio.gather(*(asyncio.to_thread(n.stop_sidecar) for n in self.nodes))
        await self.origin.stop()
        await asyncio.to_thread(kill_leftovers, self.workdir)

    def leftovers(self) -> list[tuple[int, str]]:
        """Processes still naming the run folder (pid, command line): none after `stop`."""
        return leftovers(self.workdir)

    async def __aenter__(self) -> Cluster:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # ------------------------------------------------------------------ faults
    # `i` is a position in `nodes`: 0 is node-1.

    async def stop_sidecar(self, i: int) -> None:
        """Stop node `i`'s sidecar (SIGTERM; its plugin fails open while it is away)."""
        await asyncio.to_thread(self.nodes[i].stop_sidecar)

    async def kill_sidecar(self, i: int) -> None:
        """SIGKILL node `i`'s sidecar."""
        await asyncio.to_thread(self.nodes[i].kill_sidecar)

    async def start_sidecar(self, i: int) -> None:
        """Start node `i`'s sidecar again and wait until it serves."""
        await asyncio.to_thread(self.nodes[i].start_sidecar)

    async def stop_node(self, i: int) -> None:
        """Stop node `i` whole: kongsim with its plugin server, then its sidecar."""
        await asyncio.to_thread(self.nodes[i].stop)

    async def kill_node(self, i: int) -> None:
        """SIGKILL node `i`'s kongsim, plugin server and sidecar."""
        await asyncio.to_thread(self.nodes[i].kill_gateway)
        await asyncio.to_thread(self.nodes[i].kill_sidecar)

    async def start_node(self, i: int) -> None:
        """Start node `i` again (sidecar, then kongsim) and wait until both serve."""
        await asyncio.to_thread(self.nodes[i].start)
