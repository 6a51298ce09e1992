"""`GatewayNode`: one gateway node of a loopback cluster, as Kong + sidecar would run on one
host: a sidecar (`tools.stack.SidecarProcess`, its own unix socket, metrics port and node
id) and a kongsim process (``python -m kongsim``) with the repository's kong.yml pointed at
that sidecar and the origin, which starts the strata-cache plugin server with a socket
prefix of its own.

Each part can be stopped and started again on its own (`stop_sidecar`, `start_sidecar`,
`stop_gateway`, `start_gateway`); `stop` stops the whole node, gateway first.

Not guaranteed: that the ports picked free are still free when the processes bind them;
that the plugin server's ``/metrics`` exists (only when `python -m kong_plugin --help`
offers ``--metrics-listen``; `plugin_metrics_url` is then None).
"""

from __future__ import annotations

import functools
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from tools.cluster.processes import START_TIMEOUT_S, Child, kill_leftovers, leftovers
from tools.services.procs import free_port
from tools.stack import REPO, SidecarProcess, kong_config


@functools.cache
def plugin_server_has_metrics(python: str = sys.executable) -> bool:
    """Whether this checkout's plugin server accepts ``--metrics-listen``."""
    done = subprocess.run(
        [python, "-m", "kong_plugin", "--help"],
        capture_output=True,
        text=True,
        check=False,
        cwd=REPO,
        timeout=60,
    )
    return "--metrics-listen" in done.stdout


@dataclass(frozen=True)
class NodeSpec:
    """What one node runs with (the same for every node of a cluster, but `index`)."""

    index: int
    directory: Path
    origin_url: str
    #: sidecar settings (shared tiers, namespace, topic, memory budget ...); node_id is added
    sidecar_settings: Mapping[str, str]
    #: extra keys of each strata-cache plugin's config / of its ``sidecar`` settings
    plugin: Mapping[str, Any]
    plugin_sidecar: Mapping[str, Any]
    #: plugin-server worker processes: "auto" (one per usable CPU) or a number
    plugin_workers: str = "auto"
    sidecar_env: Mapping[str, str] | None = None
    sidecar_log_level: str = "warning"


class GatewayNode:
    """Sidecar + kongsim (+ its plugin server) of node `spec.index` (``node-<index>``)."""

    def __init__(self, spec: NodeSpec) -> None:
        self.spec = spec
        self.index = spec.index
        self.node_id = f"node-{spec.index}"
        self.directory = spec.directory
        self.metrics_port = free_port()
        #: the sidecar's admin purge API (`strata purge`); it runs only with a token
        #: (STRATA_ADMIN_TOKEN or STRATA_ADMIN_TOKEN_FILE in the environment)
        self.admin_port = free_port()
        self.proxy_port = free_port()
        self.plugin_metrics_port = free_port() if plugin_server_has_metrics() else None
        self.sidecar = SidecarProcess(
            f"unix:{self.directory / 'sidecar.sock'}",
            env=spec.sidecar_env,
            metrics_listen=f"127.0.0.1:{self.metrics_port}",
            log_level=spec.sidecar_log_level,
            settings={
                **spec.sidecar_settings,
                "node_id": self.node_id,
                "admin_listen": f"127.0.0.1:{self.admin_port}",
            },
            log=self.directory / "sidecar.log",
            cwd=REPO,
            new_session=True,
        )
        self.kong_prefix = self.directory / "kong"
        self.gateway = Child(
            f"{self.node_id} kongsim",
            self._kongsim_argv(),
            log=self.directory / "kongsim.log",
            cwd=REPO,
        )

    # ------------------------------------------------------------------ addresses

    @property
    def proxy_listen(self) -> str:
        return f"127.0.0.1:{self.proxy_port}"

    @property
    def proxy_url(self) -> str:
        return f"http://{self.proxy_listen}"

    @property
    def sidecar_metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.metrics_port}/metrics"

    @property
    def admin_url(self) -> str:
        return f"http://127.0.0.1:{self.admin_port}"

    @property
    def plugin_metrics_url(self) -> str | None:
        if self.plugin_metrics_port is None:
            return None
        return f"http://127.0.0.1:{self.plugin_metrics_port}/metrics"

    # ------------------------------------------------------------------ set-up

    def _plugin_server(self) -> str:
        """kongsim's ``--plugin-server`` value: the repository's plugin server with this
        node's workers and metrics port (kongsim fills in ``{python}`` and ``{prefix}``)."""
        start = (
            "{python} -m kong_plugin -p {prefix} --socket-name strata-cache.socket"
            f" --workers {self.spec.plugin_workers}"
        )
        if self.plugin_metrics_port is not None:
            start += f" --metrics-listen 127.0.0.1:{self.plugin_metrics_port}"
        return f"strata-cache={start};{{python}} -m kong_plugin --dump"

    def _kongsim_argv(self) -> list[str]:
        return [
            sys.executable, "-m", "kongsim",
            "--config", str(self.directory / "kong.yml"),
            "--listen", self.proxy_listen,
            "--prefix", str(self.kong_prefix),
            "--wait",
            "--plugin-server", self._plugin_server(),
        ]  # fmt: skip

    def write_config(self) -> None:
        sidecar = {**self.spec.plugin_sidecar, "address": self.sidecar.address}
        config = kong_config(self.spec.origin_url, sidecar, self.spec.plugin)
        (self.directory / "kong.yml").write_text(yaml.safe_dump(config))
        self.kong_prefix.mkdir(mode=0o700, exist_ok=True)

    # ------------------------------------------------------------------ parts

    def spawn_sidecar(self) -> None:
        self.sidecar.spawn()

    def start_sidecar(self, timeout: float = START_TIMEOUT_S) -> None:
        """Start the sidecar (again) and wait until it serves."""
        if not self.sidecar.alive():
            self.sidecar.spawn()
        self.sidecar.wait_serving(timeout)

    def stop_sidecar(self) -> None:
        """SIGTERM the sidecar and wait for it (SIGKILL after 15 s)."""
        self.sidecar.stop()

    def kill_sidecar(self) -> None:
        self.sidecar.kill()

    def spawn_gateway(self) -> None:
        self.gateway.spawn()

    def start_gateway(self, timeout: float = START_TIMEOUT_S) -> None:
        """Start kongsim (again; it starts the plugin server and waits for its socket)
        and wait until it listens."""
        if not self.gateway.alive():
            self.gateway.spawn()
        self.gateway.wait_listening(self.proxy_listen, timeout)

    def restart_gateway(self, timeout: float = START_TIMEOUT_S) -> None:
        """Start kongsim again after it exited: what is left of its plugin server is
        stopped first (it exits by itself when kongsim goes, within a second)."""
        kill_leftovers(self.kong_prefix)
        self.start_gateway(timeout)

    def stop_gateway(self) -> None:
        """Stop kongsim, which stops its plugin server; any plugin-server process left
        (kongsim killed) is stopped too."""
        self.gateway.stop()
        kill_leftovers(self.kong_prefix)

    def kill_gateway(self) -> None:
        self.gateway.kill()
        kill_leftovers(self.kong_prefix)

    def start(self, timeout: float = START_TIMEOUT_S) -> None:
        self.start_sidecar(timeout)
        self.start_gateway(timeout)

    def stop(self) -> None:
        """kongsim and its plugin server, then the sidecar."""
        self.stop_gateway()
        self.stop_sidecar()

    def running(self) -> list[tuple[int, str]]:
        """Processes of this node still alive (pid, command line)."""
        return leftovers(self.directory)
