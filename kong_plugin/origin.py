"""Origin health learned from the requests this process sends upstream.

Kong does not run an external plugin's ``response`` phase when the upstream cannot be
reached (connection refused, reset, timed out): ``Kong.response`` gets a truncated
subrequest and answers with its own 502/504 (``kong/init.lua``). The plugin learns of such a
failure in its ``log`` phase instead, and of an upstream 502/503/504 in ``response``. One
failure marks the origin down; while it is down, a request that has a stored entry usable
under ``stale-if-error`` is answered from it in ``access`` without contacting the origin, and
one request per back-off interval goes through as a probe. Any answer that is not a
502/503/504 marks the origin up again. The back-off starts at `BASE_BACKOFF_S` and doubles
per failed probe up to `MAX_BACKOFF_S`.

An "origin" is whatever key the caller uses (the plugin uses the matched route's id). State
is per plugin-server process: each process learns on its own.

What this does not guarantee: that the origin is really down (one failed request marks it
so; the cost of being wrong is stale-if-error answers for at most one back-off interval),
nor that a request without a usable stored entry is spared the failing origin.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

#: An upstream answer with one of these statuses counts as the origin failing.
FAILURE_STATUSES = frozenset({502, 503, 504})
BASE_BACKOFF_S = 1.0
MAX_BACKOFF_S = 30.0
#: Origins remembered at most (the oldest healthy ones are forgotten first).
MAX_ORIGINS = 4096


@dataclass(slots=True)
class _State:
    down_until: float = 0.0  # 0: up
    backoff_s: float = 0.0
    probing: bool = False


class OriginHealth:
    """Up/down state per origin, thread-safe."""

    def __init__(
        self,
        base_backoff_s: float = BASE_BACKOFF_S,
        max_backoff_s: float = MAX_BACKOFF_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._base = base_backoff_s
        self._max = max_backoff_s
        self._clock = clock
        self._states: dict[str, _State] = {}
        self._lock = threading.Lock()

    def is_down(self, origin: str) -> bool:
        """True while `origin` is marked down (a probe may be due: see `admit`)."""
        state = self._states.get(origin)
        return state is not None and state.down_until > 0.0

    def admit(self, origin: str) -> bool:
        """Whether a request may go to `origin` now: always while it is up; while it is down,
        only the first caller after each back-off interval (the probe)."""
        state = self._states.get(origin)
        if state is None or state.down_until == 0.0:
            return True
        with self._lock:
            now = self._clock()
            if state.down_until == 0.0:
                return True
            if now < state.down_until:  # a probe that never answered expires with it
                return False
            state.probing = True
            state.down_until = now + state.backoff_s  # nobody else until the probe answers
            return True

    def failed(self, origin: str) -> bool:
        """Record a failed upstream request; True if this marked the origin down."""
        with self._lock:
            state = self._states.get(origin)
            if state is None:
                self._forget_some()
                state = self._states[origin] = _State()
            was_down = state.down_until > 0.0
            if not was_down:
                state.backoff_s = self._base
            elif state.probing:
                state.backoff_s = min(state.backoff_s * 2, self._max)
            state.probing = False
            state.down_until = self._clock() + state.backoff_s
            return not was_down

    def succeeded(self, origin: str) -> bool:
        """Record an upstream answer; True if this marked the origin up again."""
        state = self._states.get(origin)
        if state is None or state.down_until == 0.0:
            return False
        with self._lock:
            was_down = state.down_until > 0.0
            state.down_until = 0.0
            state.backoff_s = 0.0
            state.probing = False
            return was_down

    def _forget_some(self) -> None:
        if len(self._states) < MAX_ORIGINS:
            return
        for origin in [o for o, s in self._states.items() if s.down_until == 0.0]:
            del self._states[origin]
        if len(self._states) >= MAX_ORIGINS:  # all down: forget the oldest half
            for origin in list(self._states)[: MAX_ORIGINS // 2]:
                del self._states[origin]
