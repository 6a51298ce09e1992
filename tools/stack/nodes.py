"""`SidecarNodes`: several sidecars on one machine, as the nodes of one cluster.

Each node is a `SidecarProcess` with a unix socket and a metrics port of its own and a node
id of its own (``node-<i>``); the settings given to `SidecarNodes` (shared Redis, the
broker, a topic...) are passed to every node. `Node` adds a small gRPC client (store, lookup,
invalidate) for tests and benchmarks: it talks to the sidecar as the plugin does, through
``strata.v1``.

Not guaranteed: that the nodes share anything but what the settings say (no settings: each
node has only its memory tier); start order or a start time.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType

import grpc
from strata.v1 import cache_pb2 as pb
from strata.v1 import cache_pb2_grpc as pb_grpc

from tools.services.procs import free_port
from tools.stack.sidecar import START_TIMEOUT_S, SidecarProcess

__all__ = ["Node", "SidecarNodes"]


class Node:
    """One sidecar of the cluster and a client of it."""

    def __init__(self, index: int, process: SidecarProcess, metrics_port: int) -> None:
        self.index = index
        self.node_id = f"node-{index}"
        self.process = process
        self.metrics_port = metrics_port
        self._channel: grpc.Channel | None = None
        self._stub: pb_grpc.CacheServiceStub | None = None

    @property
    def stub(self) -> pb_grpc.CacheServiceStub:
        if self._stub is None:
            self._channel = grpc.insecure_channel(self.process.address)
            self._stub = pb_grpc.CacheServiceStub(self._channel)
        return self._stub

    def store(
        self,
        key: bytes,
        tags: Sequence[str] = (),
        *,
        ttl_ms: int = 600_000,
        stale_ms: int = 0,
        body: bytes = b"x",
    ) -> int:
        """Store a 200 response under `key` with `tags` (fresh for `ttl_ms`, then served
        stale for `stale_ms` under stale-while-revalidate); the `StoreResult` value."""
        entry = pb.Entry(
            format_version=1,
            status=200,
            body=body,
            stored_at_ms=int(time.time() * 1000),
            ttl_ms=ttl_ms,
            stale_while_revalidate_ms=stale_ms,
            tags=list(tags),
        )
        reply = self.stub.Store(pb.StoreRequest(key=key, entry=entry), timeout=10)
        return int(reply.result)

    def lookup(self, key: bytes, timeout: float = 5.0) -> pb.LookupResponse:
        reply: pb.LookupResponse = self.stub.Lookup(pb.LookupRequest(key=key), timeout=timeout)
        return reply

    def outcome(self, key: bytes) -> str:
        """``HIT``, ``STALE`` or ``MISS``."""
        return str(pb.Outcome.Name(self.lookup(key).outcome)).removeprefix("OUTCOME_")

    def release(self, key: bytes) -> None:
        """Give up the fill lease a miss took (so the next lookup does not wait)."""
        self.stub.Release(pb.ReleaseRequest(key=key), timeout=5)

    def invalidate_tag(self, tag: str) -> int:
        return int(self.stub.Invalidate(pb.InvalidateRequest(tag=tag), timeout=10).dropped)

    def close(self) -> None:
        if self._channel is not None:
            self._channel.close()
            self._channel, self._stub = None, None


class SidecarNodes:
    """`count` sidecars started together (see the module docstring); a context manager."""

    def __init__(
        self,
        count: int,
        directory: Path,
        settings: Mapping[str, str] | None = None,
        *,
        env: Mapping[str, str] | None = None,
        log_level: str = "warning",
    ) -> None:
        self.nodes: list[Node] = []
        for i in range(count):
            port = free_port()
            node_settings = {"node_id": f"node-{i}", **(settings or {})}
            process = SidecarProcess(
                f"unix:{directory / f'node-{i}.sock'}",
                env=env,
                metrics_listen=f"127.0.0.1:{port}",
                log_level=log_level,
                settings=node_settings,
                log=directory / f"node-{i}.log",
            )
            self.nodes.append(Node(i, process, port))

    def start(self, timeout: float = START_TIMEOUT_S) -> SidecarNodes:
        for node in self.nodes:
            node.process.spawn()
        try:
            for node in self.nodes:
                node.process.wait_serving(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        for node in self.nodes:
            node.close()
            node.process.stop()

    def __enter__(self) -> SidecarNodes:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
