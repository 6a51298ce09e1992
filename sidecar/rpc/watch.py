"""The `Watch` stream of `strata.v1.CacheService`: what changed in this sidecar's cache,
pushed to the near-caches of its clients (`kong_plugin.near_feed`).

A stream sends a hello (this process's `instance_id`), then one `WatchEvent` per batch of
changes its watcher's queue holds (`sidecar.engine.changes`): keys, prefixes and tags
together in one `changed` event of at most `MESSAGE_BYTES` of them, or a `flush`. Each
event carries `seq`, one more than the one before on this stream.

Bounds: at most `max_watch_streams` streams at once (one more is refused with
RESOURCE_EXHAUSTED, counted as `too_many_watchers`); each holds its watcher's queue
(`changes.MAX_QUEUE_BYTES`, then one flush instead) and at most one event being written
(grpc.aio's write waits for the client to read: a stopped reader stops its stream here,
while its queue overflows into a flush). The request carries nothing and is not parsed.
Streams end with status OK when the sidecar drains (`end_all`).

Not guaranteed: delivery (a client must treat the stream ending, a gap in `seq` or a new
`instance_id` as "anything may have changed"); how soon an event is written (after the
engine's change, on the same event loop: measured in the README).
"""

from __future__ import annotations

import asyncio
from typing import Any

import grpc
from strata.v1 import cache_pb2 as _pb

from sidecar.engine.changes import Batch, Broadcaster, Watcher
from sidecar.rpc.bounds import Gate
from sidecar.rpc.operations import Operations

__all__ = ["MESSAGE_BYTES", "WatchStreams", "event_of", "watch_request"]

#: Bytes of keys, prefixes and tags one `changed` event carries at most (one item more
#: when a single one is larger).
MESSAGE_BYTES = 60 * 1024


def watch_request(_data: bytes) -> _pb.WatchRequest:
    """The `Watch` request deserializer: the request carries nothing, so nothing is parsed
    (whatever a client sends costs no parse)."""
    return _pb.WatchRequest()


def event_of(batch: Batch, seq: int) -> _pb.WatchEvent:
    """The `WatchEvent` of one batch of changes."""
    if batch.flush:
        return _pb.WatchEvent(seq=seq, flush=_pb.WatchFlush(reason=batch.flush))
    return _pb.WatchEvent(
        seq=seq,
        changed=_pb.WatchChanged(keys=batch.keys, prefixes=batch.prefixes, tags=batch.tags),
    )


class WatchStreams:
    """The open `Watch` streams."""

    def __init__(
        self, ops: Operations, changes: Broadcaster, max_streams: int, closing: asyncio.Event
    ) -> None:
        self._ops = ops
        self._changes = changes
        self._gate = Gate(max_streams)
        self._closing = closing
        self._watchers: set[Watcher] = set()

    @property
    def open(self) -> int:
        return self._gate.active

    def end_all(self) -> None:
        """End every stream (the sidecar drains): each returns, status OK, after waking."""
        for watcher in self._watchers:
            watcher.ready.set()

    async def serve(self, request: Any, context: grpc.aio.ServicerContext) -> None:
        """Hello, then the watcher's batches until the client leaves or the sidecar
        drains."""
        if self._closing.is_set():
            return
        if not self._gate.try_enter():
            message = (
                f"{self._gate.limit} Watch streams are open, the most max_watch_streams "
                "allows; retry later"
            )
            self._ops.refuse_call(context, "watch", "too_many_watchers", message)
            return
        watcher = self._changes.subscribe()
        self._watchers.add(watcher)
        try:
            seq = 1
            hello = _pb.WatchHello(instance_id=self._changes.instance_id)
            await context.write(_pb.WatchEvent(seq=seq, hello=hello))
            while not self._closing.is_set():
                batch = watcher.take(MESSAGE_BYTES)
                if batch is None:
                    await watcher.ready.wait()
                    continue
                seq += 1
                await context.write(event_of(batch, seq))
        finally:
            self._watchers.discard(watcher)
            self._changes.unsubscribe(watcher)
            self._gate.leave()
