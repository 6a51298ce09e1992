"""Origin health learned from the requests this process sends upstream.

Kong does not run an external plugin's ``response`` phase when the upstream cannot be
reached (connection refused, reset, timed out): ``Kong.response`` gets a truncated
subrequest and answers with its own 502/504 (``kong/init.lua``). The plugin learns of such a
failure in its ``log`` phase instead, and of an upstream 502/503/504 in ``response``.

Health is kept at two levels, so that one bad URL does not freeze a healthy route:

* **per key**: a key whose own upstream request failed is *down*: its next requests that
  have a stored copy usable under ``stale-if-error`` are answered from it, and one request
  per back-off interval goes through as a probe;
* **per origin** (the plugin uses the matched route): failures of `DISTINCT_KEYS` different
  keys with no success in between mark the whole origin down, with the same rules for every
  key of it -- what a dead or overloaded origin looks like.

Any answer that is not a 502/503/504 marks the key and its origin up again (an origin that
comes back up takes every key that failed during its outage with it). The back-off
starts at `BASE_BACKOFF_S` and doubles per failed probe up to `MAX_BACKOFF_S`. State is
bounded (`MAX_TRACKED` keys and origins each). Each failure and each recovery is also
handed to `on_change`, which the plugin server uses to tell its other workers
(`apply` replays it there), so that a node's workers agree on what is down.

What this does not guarantee: one probe per back-off interval per node (each worker
admits its own); that another worker learns of a change before its next request (the
notice crosses a socket); that an origin marked down really is (the cost of being wrong
is stale-if-error answers for at most one back-off interval); that a request without a
usable stored copy is spared the failing origin; that the probe's own client is spared the
failure (Kong answers it 502/504).
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

#: An upstream answer with one of these statuses counts as the origin failing.
FAILURE_STATUSES = frozenset({502, 503, 504})
BASE_BACKOFF_S = 1.0
MAX_BACKOFF_S = 30.0
#: Failures of this many different keys (no success between) mark the whole origin down.
DISTINCT_KEYS = 3
#: Keys and origins tracked at most, each (the least recently failed are forgotten first).
MAX_TRACKED = 4096


@dataclass(slots=True)
class _Down:
    """Back-off state of one key or origin."""

    down_until: float = 0.0  # 0: up
    backoff_s: float = 0.0
    probing: bool = False
    origin: str = ""  # of a key: the origin it belongs to
    unreachable: bool = False  # its last failure: no answer at all (not a 502/503/504)


@dataclass(slots=True)
class _Origin:
    down: _Down = field(default_factory=_Down)
    failed_keys: set[str] = field(default_factory=set)  # since the last success


class _Table:
    """Name -> state, least recently failed first, bounded."""

    def __init__(self, factory: Callable[[], object], limit: int) -> None:
        self._items: OrderedDict[str, object] = OrderedDict()
        self._factory = factory
        self._limit = limit

    def get(self, name: str) -> object | None:
        return self._items.get(name)

    def touch(self, name: str) -> object:
        item = self._items.get(name)
        if item is None:
            item = self._items[name] = self._factory()
            while len(self._items) > self._limit:
                self._items.popitem(last=False)
        else:
            self._items.move_to_end(name)
        return item

    def pop(self, name: str) -> None:
        self._items.pop(name, None)

    def drop_where(self, keep: Callable[[object], bool]) -> None:
        for name in [n for n, item in self._items.items() if not keep(item)]:
            del self._items[name]


class OriginHealth:
    """Up/down state per key and per origin, thread-safe."""

    def __init__(
        self,
        base_backoff_s: float = BASE_BACKOFF_S,
        max_backoff_s: float = MAX_BACKOFF_S,
        distinct_keys: int = DISTINCT_KEYS,
        clock: Callable[[], float] = time.monotonic,
        max_tracked: int = MAX_TRACKED,
    ) -> None:
        self._base = base_backoff_s
        self._max = max_backoff_s
        self._distinct = distinct_keys
        self._clock = clock
        self._origins = _Table(_Origin, max_tracked)
        self._keys = _Table(_Down, max_tracked)
        self._lock = threading.Lock()
        #: Told every change (`failed`, a `succeeded` that changed something), as a list
        #: `apply` takes; None: nobody.
        self.on_change: Callable[[list[Any]], None] | None = None

    def is_down(self, origin: str, key: str | None = None) -> bool:
        """True while `origin` (or, given, `key`) is marked down."""
        o = self._origins.get(origin)
        if isinstance(o, _Origin) and o.down.down_until > 0.0:
            return True
        k = self._keys.get(key) if key is not None else None
        return isinstance(k, _Down) and k.down_until > 0.0

    def unreachable(self, key: str) -> bool:
        """True while `key` is down because its own last request got no answer at all
        (RFC 9111 §5.2.2.2's "cannot reach": a 502/503/504 answer is not that). Per key
        only: other URLs of the origin timing out (a slow endpoint) say nothing of this one."""
        k = self._keys.get(key)
        return isinstance(k, _Down) and k.down_until > 0.0 and k.unreachable

    def admit(self, origin: str, key: str) -> bool:
        """Whether a request for `key` may go to `origin` now: always while both are up;
        while either is down, only the first caller after each back-off interval (the
        probe)."""
        o = self._origins.get(origin)
        k = self._keys.get(key)
        origin_down = isinstance(o, _Origin) and o.down.down_until > 0.0
        key_down = isinstance(k, _Down) and k.down_until > 0.0
        if not origin_down and not key_down:
            return True
        with self._lock:
            now = self._clock()
            state = o.down if origin_down and isinstance(o, _Origin) else k
            assert isinstance(state, _Down)
            if state.down_until == 0.0:
                return True
            if now < state.down_until:  # a probe that never answered expires with it
                return False
            state.probing = True
            state.down_until = now + state.backoff_s  # nobody else until the probe answers
            return True

    def failed(self, origin: str, key: str, *, unreachable: bool = False) -> bool:
        """Record a failed upstream request for `key` (`unreachable`: no answer at all, not
        a 502/503/504); True if this marked `origin` down."""
        marked = self._failed(origin, key, unreachable)
        if self.on_change is not None:
            self.on_change(["failed", origin, key, unreachable])
        return marked

    def succeeded(self, origin: str, key: str) -> bool:
        """Record an upstream answer for `key`; True if this marked `origin` up again."""
        changed, was_down = self._succeeded(origin, key)
        if changed and self.on_change is not None:
            self.on_change(["succeeded", origin, key])
        return was_down

    def apply(self, event: Any) -> None:
        """Replay a change another worker's `on_change` reported (not reported again);
        anything else is ignored."""
        match event:
            case ["failed", str(origin), str(key), bool(unreachable)]:
                self._failed(origin, key, unreachable)
            case ["succeeded", str(origin), str(key)]:
                self._succeeded(origin, key)
            case _:
                pass

    def _failed(self, origin: str, key: str, unreachable: bool) -> bool:
        with self._lock:
            now = self._clock()
            k = self._keys.touch(key)
            assert isinstance(k, _Down)
            k.origin = origin
            k.unreachable = unreachable
            self._mark(k, now)
            o = self._origins.touch(origin)
            assert isinstance(o, _Origin)
            o.failed_keys.add(key)
            if o.down.down_until > 0.0:
                self._mark(o.down, now)
                return False
            if len(o.failed_keys) < self._distinct:
                return False
            self._mark(o.down, now)
            return True

    def _succeeded(self, origin: str, key: str) -> tuple[bool, bool]:
        """(whether anything was tracked for them, whether `origin` was down)."""
        o = self._origins.get(origin)
        if self._keys.get(key) is None and (
            not isinstance(o, _Origin) or (not o.failed_keys and o.down.down_until == 0.0)
        ):
            return False, False
        with self._lock:
            self._keys.pop(key)
            o = self._origins.get(origin)
            if not isinstance(o, _Origin):
                return True, False
            was_down = o.down.down_until > 0.0
            self._origins.pop(origin)
            if was_down:  # what failed during the outage is up again with it
                self._keys.drop_where(lambda k: not (isinstance(k, _Down) and k.origin == origin))
            return True, was_down

    def _mark(self, state: _Down, now: float) -> None:
        if state.down_until == 0.0:
            state.backoff_s = self._base
        elif state.probing:
            state.backoff_s = min(state.backoff_s * 2, self._max)
        state.probing = False
        state.down_until = now + state.backoff_s
