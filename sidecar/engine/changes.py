"""What changed in this sidecar's cache, queued for each watcher (the near-caches of the
plugin servers, through the `Watch` stream, `sidecar.rpc.watch`).

The engine tells its `Broadcaster` every time an answer it could give for a key may have
changed: a store (`changed_keys`), an invalidation by key, prefix or route, a purge of tags
(hard or soft, made here or read from the bus: `sidecar.engine.watched_generations`), and
anything broader (`flushed`: a purge of everything, a new generation epoch). Each watcher
has its own queue, bounded in items and bytes; a watcher that falls behind loses its queue
and gets one flush instead, so a slow or stopped reader costs at most `max_bytes` of
memory and never blocks the engine (publishing is a few appends, never an await).

Pure bookkeeping on the event loop: not thread-safe. `Watcher.ready` is an
`asyncio.Event` (created unbound; it binds to the loop that first waits on it).

Not guaranteed: delivery (a watcher whose queue overflowed, or whose stream ended, is told
to flush, or must assume it); that a change was real (a store of the same entry, a purge
of a tag no entry carries, are sent all the same); order between watchers.
"""

from __future__ import annotations

import asyncio
import secrets
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass

__all__ = [
    "ITEM_OVERHEAD_BYTES",
    "MAX_QUEUE_BYTES",
    "MAX_QUEUE_ITEMS",
    "Batch",
    "Broadcaster",
    "Watcher",
]

#: Bytes of queued changes one watcher may hold (beyond: one flush instead).
MAX_QUEUE_BYTES = 256 * 1024
#: Queued changes one watcher may hold.
MAX_QUEUE_ITEMS = 4096
#: What one queued item costs beyond its key, prefix or tag (deque slot, tuple, object
#: headers of the value; CPython 3.11, 64-bit), counted against `MAX_QUEUE_BYTES`.
ITEM_OVERHEAD_BYTES = 112

_KEY, _PREFIX, _TAG = 0, 1, 2


@dataclass(frozen=True, slots=True)
class Batch:
    """Changes taken from a watcher's queue at once. With `flush` (its reason) set, the
    watcher must drop everything and the other fields are empty."""

    keys: tuple[bytes, ...] = ()
    prefixes: tuple[bytes, ...] = ()
    tags: tuple[str, ...] = ()
    flush: str = ""


class Watcher:
    """One watcher's queue of changes (see the module doc)."""

    __slots__ = ("_bytes", "_flush", "_items", "max_bytes", "max_items", "overflows", "ready")

    def __init__(self, max_bytes: int = MAX_QUEUE_BYTES, max_items: int = MAX_QUEUE_ITEMS) -> None:
        self.max_bytes = max_bytes
        self.max_items = max_items
        self._items: deque[tuple[int, bytes | str]] = deque()
        self._bytes = 0
        self._flush = ""
        #: Set while something is waiting to be taken.
        self.ready = asyncio.Event()
        #: Times this watcher's queue overflowed (turned into a flush).
        self.overflows = 0

    @property
    def queued_bytes(self) -> int:
        """Bytes charged for the changes queued now."""
        return self._bytes

    def __len__(self) -> int:
        return len(self._items)

    def put(self, kind: int, value: bytes | str) -> None:
        if self._flush:
            return  # a flush is due: it covers this change too
        size = len(value) + ITEM_OVERHEAD_BYTES
        if self._bytes + size > self.max_bytes or len(self._items) >= self.max_items:
            self.overflows += 1
            self.flush("overflow")
            return
        self._items.append((kind, value))
        self._bytes += size
        self.ready.set()

    def flush(self, reason: str) -> None:
        """Replace whatever is queued by one flush (the first reason is kept)."""
        self._items.clear()
        self._bytes = 0
        self._flush = self._flush or reason
        self.ready.set()

    def take(self, max_bytes: int) -> Batch | None:
        """What is queued, oldest first, up to about `max_bytes` of keys, prefixes and tags
        (at least one item); a due flush alone; None when nothing is queued."""
        if self._flush:
            reason, self._flush = self._flush, ""
            self._settle()
            return Batch(flush=reason)
        if not self._items:
            self._settle()
            return None
        keys: list[bytes] = []
        prefixes: list[bytes] = []
        tags: list[str] = []
        taken = 0
        items = self._items
        while items and (taken == 0 or taken + len(items[0][1]) <= max_bytes):
            kind, value = items.popleft()
            taken += len(value)
            self._bytes -= len(value) + ITEM_OVERHEAD_BYTES
            if kind == _KEY:
                keys.append(value)  # type: ignore[arg-type]
            elif kind == _PREFIX:
                prefixes.append(value)  # type: ignore[arg-type]
            else:
                tags.append(value)  # type: ignore[arg-type]
        self._settle()
        return Batch(tuple(keys), tuple(prefixes), tuple(tags))

    def _settle(self) -> None:
        if not self._items and not self._flush:
            self.ready.clear()


class Broadcaster:
    """The engine's side: publishes each change to every watcher's queue."""

    def __init__(self, instance_id: str | None = None) -> None:
        """`instance_id`: what the hello names this process by (default: random, so a
        restarted sidecar is told apart from the one before)."""
        self.instance_id = instance_id or secrets.token_hex(8)
        self._watchers: set[Watcher] = set()
        #: Changes published (keys, prefixes and tags count one each; a flush one).
        self.published = 0

    def subscribe(
        self, max_bytes: int = MAX_QUEUE_BYTES, max_items: int = MAX_QUEUE_ITEMS
    ) -> Watcher:
        """A new watcher: it gets every change published from now on."""
        watcher = Watcher(max_bytes, max_items)
        self._watchers.add(watcher)
        return watcher

    def unsubscribe(self, watcher: Watcher) -> None:
        self._watchers.discard(watcher)

    @property
    def watchers(self) -> int:
        return len(self._watchers)

    def changed_keys(self, keys: Iterable[bytes]) -> None:
        """These exact keys (their variants included) changed or were dropped."""
        self._put(_KEY, keys)

    def changed_prefixes(self, prefixes: Iterable[bytes]) -> None:
        """Every key starting with one of `prefixes` may have changed."""
        self._put(_PREFIX, prefixes)

    def changed_tags(self, tags: Iterable[str]) -> None:
        """Every entry carrying one of `tags` may have changed."""
        self._put(_TAG, tags)

    def flushed(self, reason: str) -> None:
        """Anything may have changed."""
        self.published += 1
        for watcher in self._watchers:
            watcher.flush(reason)

    def _put(self, kind: int, values: Iterable[bytes | str]) -> None:
        watchers = self._watchers
        for value in values:
            self.published += 1
            for watcher in watchers:
                watcher.put(kind, value)
