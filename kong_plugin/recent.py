"""Keys seen recently, forgotten after a while: the plugin's "hit-for-miss" memory.

A key whose last response could not be stored (``private``, ``Set-Cookie``, too large, ...)
is remembered for `TTL_S`, and its lookups then do not ask to coalesce: concurrent requests
for a response nobody can share must not queue behind one another for a fill that never
comes. A stored response for the key forgets it at once.

Bounded by `MAX_KEYS` (the oldest are forgotten first). Per plugin-server process.

What this does not guarantee: that a key is remembered for its whole `TTL_S` (it may be
pushed out by newer ones), or that an uncacheable response is never waited for once (the
first request that finds it so is a coalescing fill like any other).
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable

TTL_S = 30.0
MAX_KEYS = 16384


class RecentKeys:
    """A thread-safe set of keys whose members expire `ttl_s` after their last `add`."""

    def __init__(
        self,
        ttl_s: float = TTL_S,
        max_keys: int = MAX_KEYS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._ttl = ttl_s
        self._max = max_keys
        self._clock = clock
        self._until: OrderedDict[str, float] = OrderedDict()
        self._lock = threading.Lock()

    def add(self, key: str) -> None:
        with self._lock:
            self._until[key] = self._clock() + self._ttl
            self._until.move_to_end(key)
            while len(self._until) > self._max:
                self._until.popitem(last=False)

    def discard(self, key: str) -> None:
        if key in self._until:
            with self._lock:
                self._until.pop(key, None)

    def __contains__(self, key: object) -> bool:
        if not isinstance(key, str):
            return False
        until = self._until.get(key)
        if until is None:
            return False
        if until > self._clock():
            return True
        with self._lock:
            if self._until.get(key, until) <= self._clock():
                self._until.pop(key, None)
        return False

    def __len__(self) -> int:
        return len(self._until)
