"""Wires kongsim together: plugin servers, config, workers, the HTTP listener; start/stop/reload.

Start-up order, as Kong: query every plugin server (``--dump``) → load and validate kong.yml
against the plugins' schemas (a :class:`~kongsim.errors.ConfigError` stops everything) → start
the plugin servers → listen for HTTP. Like Kong, the gateway does not wait for the plugin
servers' sockets: a request that arrives first fails to start its plugin instance (500). A test
harness can ask to wait (``Options.wait_for_plugin_servers``, :class:`kongsim.testing.KongSim`
does) -- that is a convenience of kongsim's, not Kong's behaviour.

:meth:`Gateway.reload` re-reads kong.yml: a config that does not validate is refused and the old
one stays; a valid one replaces it for new requests and, like Kong rebuilding its plugins
iterator, gives every plugin a new ``__seq__``, so each instance is restarted (``StartInstance``
then ``CloseInstance`` of the old one) on its next use.

``workers`` simulates nginx workers: each has its own RPC clients (message ids, connection pool)
and its own instance table, so one plugin config has one instance per worker on the plugin
server, as with Kong. Requests are spread round-robin.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import socket
import tempfile
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from kongsim.config.plugins import PluginInfo
from kongsim.errors import PluginServerError
from kongsim.http import admin, keyauth
from kongsim.http.interim import InterimAwareResponse
from kongsim.http.proxy import Proxy, ProxyServices
from kongsim.http.runtime import Runtime, load_runtime
from kongsim.loglevels import NOTICE
from kongsim.pdk import CLIENT_BODY_BUFFER_SIZE
from kongsim.protocol.bridge import Bridge, Worker
from kongsim.protocol.process import PluginServerProcess
from kongsim.protocol.rpc import RpcClient
from kongsim.protocol.spec import PluginServerSpec, default_spec
from kongsim.recorder import Issue, Recorder

log = logging.getLogger("kongsim")

#: Header lines kongsim accepts in a request or an upstream response (nginx counts bytes,
#: not lines; this is far above what those byte limits allow).
MAX_HEADER_LINES = 20000
STRICT_RPC_TIMEOUT = 5.0
KONG_RPC_TIMEOUT = 60.0


@dataclass
class Options:
    """Everything that configures a :class:`Gateway`."""

    config_path: str
    strict: bool = False
    plugin_servers: Sequence[PluginServerSpec] | None = None
    """``None``: the repository default (``strata-cache``); ``[]``: none."""
    host: str = "127.0.0.1"
    port: int = 8000
    workers: int = 1
    rpc_timeout: float | None = None
    """Seconds; default 5 in strict mode, Kong's 60 otherwise."""
    rpc_pooled: bool = True
    """Keep-alive pool (Kong) or one connection per RPC."""
    prefix: str | None = None
    """Directory for sockets and logs; a temporary one when ``None``."""
    client_body_buffer_size: int = CLIENT_BODY_BUFFER_SIZE
    passthrough_env: Sequence[str] = ()
    """Environment variables plugin servers receive (Kong: ``nginx_main_env``); by default
    none but ``TZ``, as nginx workers clear their environment."""
    wait_for_plugin_servers: bool = False
    """Wait for every plugin server's socket before listening (not Kong; for harnesses)."""

    @property
    def effective_rpc_timeout(self) -> float:
        if self.rpc_timeout is not None:
            return self.rpc_timeout
        return STRICT_RPC_TIMEOUT if self.strict else KONG_RPC_TIMEOUT


class Gateway:
    """A running kongsim."""

    def __init__(self, options: Options) -> None:
        self.options = options
        self.strict = options.strict
        self.node_id = str(uuid.uuid4())
        self.recorder = Recorder()
        self.workers = [Worker(i) for i in range(max(1, options.workers))]
        self.bridge = Bridge(self.workers, self.recorder)
        self.servers: dict[str, PluginServerProcess] = {}
        self.catalog: dict[str, PluginInfo] = {}
        self._runtime: Runtime | None = None
        self._seq = itertools.count(1)
        self._rr = itertools.cycle(self.workers)
        self._tasks: set[asyncio.Task[None]] = set()
        self._tmpdir: tempfile.TemporaryDirectory[str] | None = None
        self._http: aiohttp.ClientSession | None = None
        self._runner: web.ServerRunner | None = None
        self.port = 0

    # --- properties --------------------------------------------------------------------------

    @property
    def runtime(self) -> Runtime:
        assert self._runtime is not None, "gateway not started"
        return self._runtime

    @property
    def http(self) -> aiohttp.ClientSession:
        assert self._http is not None, "gateway not started"
        return self._http

    @property
    def base_url(self) -> str:
        return f"http://{self.options.host}:{self.port}"

    def next_worker(self) -> Worker:
        return next(self._rr)

    # --- lifecycle ---------------------------------------------------------------------------

    async def check(self) -> None:
        """Query the plugin servers and validate the config; start nothing."""
        prefix = self._prefix()
        specs = self.options.plugin_servers
        if specs is None:
            specs = [default_spec()]
        names = [s.name for s in specs]
        if len(set(names)) != len(names):
            raise PluginServerError(f"duplicate plugin server names: {names}")
        for spec in specs:
            self.servers[spec.name] = PluginServerProcess(
                spec,
                prefix,
                os.path.join(prefix, "logs"),
                on_exit=self._server_exited,
                passthrough_env=self.options.passthrough_env,
            )
        infos = await asyncio.gather(*(s.query() for s in self.servers.values()))
        self.catalog = {keyauth.INFO.name: keyauth.INFO}
        for info in infos:
            if info.name in self.catalog:
                raise PluginServerError(f"plugin '{info.name}' is provided twice")
            self.catalog[info.name] = info
        self._runtime = self._load(self.options.config_path)

    async def start(self) -> None:
        """Query plugin servers, load the config, start the servers, then listen."""
        try:
            await self.check()
            for worker in self.workers:
                for server in self.servers.values():
                    worker.rpc[server.name] = RpcClient(
                        server.socket_path,
                        timeout=self.options.effective_rpc_timeout,
                        pooled=self.options.rpc_pooled,
                        on_server_pid_change=self._pid_changed(worker, server),
                    )
            wait = self.options.wait_for_plugin_servers
            await asyncio.gather(*(s.start(wait=wait) for s in self.servers.values()))
            self._http = aiohttp.ClientSession(
                # Kong reads upstream headers into proxy_buffer_size (160k), no line limit
                max_headers=MAX_HEADER_LINES,
                max_field_size=16384,
                connector=aiohttp.TCPConnector(limit=0, ssl=False),
                auto_decompress=False,
                cookie_jar=aiohttp.DummyCookieJar(),
                # keeps the 1xx responses aiohttp reads past (nginx does not skip them)
                response_class=InterimAwareResponse,
            )
            await self._listen()
        except BaseException:
            await self.stop()
            raise
        log.log(NOTICE, "kongsim listening on %s (strict=%s)", self.base_url, self.strict)

    async def _listen(self) -> None:
        proxy = Proxy(
            ProxyServices(
                recorder=self.recorder,
                bridge=self.bridge,
                http=self.http,
                strict=self.strict,
                current_runtime=lambda: self.runtime,
                next_worker=self.next_worker,
                track=self.track,
            )
        )
        hooks = admin.AdminHooks(recorder=self.recorder, reload=self.reload, status=self.status)

        async def handler(request: web.BaseRequest) -> web.StreamResponse:
            if request.path.startswith(admin.PREFIX):
                return await admin.handle(hooks, request)
            return await proxy.handle(request)

        # nginx has no limit on the number of header lines, only on their size
        # (large_client_header_buffers 4 8k, checked in Proxy.handle): aiohttp's own
        # limits (128 lines, 8190 bytes a line) must not answer first
        server = web.Server(handler, max_headers=MAX_HEADER_LINES, max_field_size=65536)
        self._runner = web.ServerRunner(server, handle_signals=False)
        await self._runner.setup()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((self.options.host, self.options.port))
        except OSError:
            sock.close()
            raise
        self.port = sock.getsockname()[1]
        site = web.SockSite(self._runner, sock)
        await site.start()

    async def stop(self) -> None:
        """Stop listening, finish log tasks (bounded), stop plugin servers, close clients."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        await self.wait_idle(5.0)
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await asyncio.gather(*(s.stop() for s in self.servers.values()))
        for worker in self.workers:
            for client in worker.rpc.values():
                await client.close()
        if self._http is not None:
            await self._http.close()
            self._http = None
        if self._tmpdir is not None:
            self._tmpdir.cleanup()
            self._tmpdir = None

    async def reload(self, path: str | None = None) -> None:
        """Load kong.yml again (or ``path``); raise ConfigError and keep the old one if invalid."""
        self._runtime = self._load(path or self.options.config_path)
        if path:
            self.options.config_path = path
        log.log(NOTICE, "configuration reloaded from %s", self.options.config_path)

    async def wait_idle(self, timeout: float = 10.0) -> None:
        """Wait (bounded) until every scheduled ``log`` phase has finished."""
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=timeout)

    def track(self, task: asyncio.Task[None]) -> None:
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def status(self) -> dict[str, Any]:
        """Plugin servers and per-worker instance tables, for humans and tests
        (``GET /_kongsim/status``)."""
        return {
            "strict": self.strict,
            "node_id": self.node_id,
            "plugin_servers": {
                name: {
                    "pid": s.pid,
                    "spawns": s.spawns,
                    "restarts": s.restarts,
                    "ready": s.ready,
                    "exit_codes": s.exit_codes,
                    "socket": s.socket_path,
                    "log": s.log_path,
                    "plugin": s.info.name if s.info else None,
                }
                for name, s in self.servers.items()
            },
            "workers": [
                {
                    "index": w.index,
                    "instances": w.instances.instance_ids(),
                    "rpc": {
                        n: {"calls": c.calls, "connects": c.connects} for n, c in w.rpc.items()
                    },
                }
                for w in self.workers
            ],
        }

    # --- helpers -----------------------------------------------------------------------------

    def _prefix(self) -> str:
        if self.options.prefix:
            Path(self.options.prefix).mkdir(parents=True, exist_ok=True)
            return self.options.prefix
        # unix socket paths are limited to ~107 bytes: keep the prefix short
        self._tmpdir = tempfile.TemporaryDirectory(prefix="kongsim-", dir="/tmp")
        return self._tmpdir.name

    def _load(self, path: str) -> Runtime:
        return load_runtime(
            path,
            self.catalog,
            self._seq,
            node_id=self.node_id,
            client_body_buffer_size=self.options.client_body_buffer_size,
        )

    def _pid_changed(
        self, worker: Worker, server: PluginServerProcess
    ) -> Callable[[float, float | None], None]:
        """plugin.lua ``rpc_notifications:serverPid``: a new pid drops the instances this
        worker holds for the server's plugin (the Python server never sends it)."""

        def changed(_old: float, _new: float | None) -> None:
            if server.info is not None:
                worker.instances.reset_plugin(server.info.name)

        return changed

    def _server_exited(self, server: PluginServerProcess, rc: int) -> None:
        log.warning("plugin server %r (pid %s) exited with %s", server.name, server.pid, rc)
        self.recorder.issue(
            None, Issue("plugin_server", f"plugin server {server.name!r} exited with {rc}")
        )
        for worker in self.workers:
            client = worker.rpc.get(server.name)
            if client is not None:
                client.drop_idle()
