"""Connections to a plugin-server worker: Kong's (RPCs) and the other workers' (relayed
RPCs and notices; the supervisor's metrics requests), and `serve`, which accepts both on
the worker's loop.

Kong sends one request per connection at a time; a client that pipelines is answered in
order. A message that is not a request (or, from a peer, a notice) closes its connection.

Not guaranteed: anything about a connection once it closed (its pending answer is dropped).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections import deque
from typing import Any

from kong_plugin.pluginserver.framing import PACKER, new_unpacker
from kong_plugin.pluginserver.worker import METRICS_METHOD, Reply, Worker, relay_path

log = logging.getLogger("strata.pluginserver")


class RpcConnection(asyncio.Protocol):
    """One connection from Kong, or (`peer`) from another worker: relayed calls and
    notices ``[2, label, args]``."""

    def __init__(self, worker: Worker, *, peer: bool = False) -> None:
        self.worker = worker
        self.peer = peer
        self.transport: asyncio.Transport | None = None
        self._unpacker = new_unpacker()
        self._packer = PACKER
        self._queue: deque[Any] = deque()
        self._busy = False
        self._pumping = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self._unpacker.feed(data)
        try:
            self._queue.extend(self._unpacker)
        except Exception as exc:
            log.warning("closing a plugin-server connection: unreadable message (%r)", exc)
            self._close()
            return
        self._pump()

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None

    def _pump(self) -> None:
        if self._pumping:
            return
        self._pumping = True
        try:
            while self._queue and not self._busy and self.transport is not None:
                message = self._queue.popleft()
                notice = isinstance(message, list) and len(message) == 3 and message[0] == 2
                if self.peer and notice:
                    self.worker.peers.receive(message[1], message[2])
                    continue
                if not (isinstance(message, list) and len(message) == 4 and message[0] == 0):
                    log.warning("closing a plugin-server connection: not a request %.80r", message)
                    self._close()
                    return
                _, msgid, method, args = message
                self._busy = True
                if self.peer and method == METRICS_METHOD:  # the supervisor's scrape
                    self.worker.metrics(self._replier(msgid))
                else:
                    self.worker.call(method, args, self._replier(msgid))
        finally:
            self._pumping = False

    def _replier(self, msgid: Any) -> Reply:
        def reply(err: Any, result: Any) -> None:
            self._busy = False
            if self.transport is not None:
                try:
                    payload = self._packer.pack([1, msgid, err, result])
                except Exception as exc:
                    log.exception("answer to message %s cannot be encoded", msgid)
                    payload = self._packer.pack([1, msgid, f"cannot encode answer: {exc}", None])
                self.transport.write(payload)
            if self._queue:
                self._pump()

        return reply

    def _close(self) -> None:
        if self.transport is not None:
            self.transport.close()
            self.transport = None


async def serve(
    worker: Worker, listener: socket.socket, *, relay: bool, backlog: int = 4096
) -> None:
    """Serve Kong on `listener` (and peers on the worker's relay socket) until cancelled."""
    loop = asyncio.get_running_loop()
    worker.loop = loop
    worker.peers.bind(loop)
    # asyncio listens again on a socket it is handed: give it the backlog asked for
    servers = [
        await loop.create_unix_server(lambda: RpcConnection(worker), sock=listener, backlog=backlog)
    ]
    if relay:
        path = relay_path(worker.socket_path, worker.index)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        servers.append(
            await loop.create_unix_server(
                lambda: RpcConnection(worker, peer=True), path=path, backlog=backlog
            )
        )
    log.info(
        "worker %d/%d (pid %d) serving %s",
        worker.index,
        worker.count,
        os.getpid(),
        worker.socket_path,
    )
    sweeper = loop.create_task(worker.sweep_forever())
    try:
        await asyncio.Future()  # until cancelled
    finally:
        sweeper.cancel()
        for server in servers:
            server.close()
        worker.close()
