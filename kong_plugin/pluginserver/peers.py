"""Notices between the workers of one plugin server: one-way messages over the workers'
private sockets, for state that must agree across a node's workers (which origins are
down, `kong_plugin.origin`).

A notice is a MessagePack-RPC notification ``[2, label, args]`` sent to every other
worker; the receiving worker hands ``args`` to the handler registered for ``label``.
`notify` may be called from any thread; sending happens on the worker's loop.

Not guaranteed: delivery -- a notice to a worker that is down or restarting is lost (a
worker started again begins with empty state); order between notices of two workers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

import msgpack  # type: ignore[import-untyped]

log = logging.getLogger("strata.pluginserver")

Handler = Callable[[Any], None]


class Peers:
    """This worker's side of the notices (see the module doc)."""

    def __init__(self, index: int, count: int, path_of: Callable[[int], str]) -> None:
        self.index = index
        self.count = count
        self._path_of = path_of
        self._loop: asyncio.AbstractEventLoop | None = None
        self._writers: dict[int, asyncio.StreamWriter] = {}
        self._connecting: dict[int, list[bytes]] = {}
        self.handlers: dict[str, Handler] = {}
        self.sent = self.lost = self.received = 0

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop

    def notify(self, label: str, args: Any) -> None:
        """Send ``[2, label, args]`` to every other worker (from any thread)."""
        loop = self._loop
        if loop is None or self.count < 2:
            return
        payload = msgpack.packb([2, label, args], use_bin_type=True)
        try:
            loop.call_soon_threadsafe(self._send, payload)
        except RuntimeError:  # the loop is closed: the worker is stopping
            self.lost += 1

    def receive(self, label: Any, args: Any) -> None:
        """A notice from another worker: run its handler (an unknown label is ignored)."""
        handler = self.handlers.get(label) if isinstance(label, str) else None
        if handler is None:
            return
        self.received += 1
        try:
            handler(args)
        except Exception:
            log.exception("notice %s from another worker failed", label)

    def _send(self, payload: bytes) -> None:
        for peer in range(self.count):
            if peer == self.index:
                continue
            writer = self._writers.get(peer)
            if writer is not None and not writer.is_closing():
                writer.write(payload)
                self.sent += 1
            elif peer in self._connecting:
                self._connecting[peer].append(payload)
            else:
                self._connecting[peer] = [payload]
                assert self._loop is not None
                self._loop.create_task(self._connect(peer))

    async def _connect(self, peer: int) -> None:
        try:
            _, writer = await asyncio.open_unix_connection(self._path_of(peer))
        except OSError as exc:
            dropped = self._connecting.pop(peer, [])
            self.lost += len(dropped)
            log.debug("worker %d unreachable for notices: %s", peer, exc)
            return
        old = self._writers.pop(peer, None)
        if old is not None:
            with contextlib.suppress(Exception):
                old.close()
        self._writers[peer] = writer
        for payload in self._connecting.pop(peer, []):
            writer.write(payload)
            self.sent += 1

    def close(self) -> None:
        for writer in self._writers.values():
            with contextlib.suppress(Exception):
                writer.close()
        self._writers.clear()
