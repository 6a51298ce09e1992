"""The caller's deadline for tier calls, carried in a context variable.

The engine sets one around the tier reads of a lookup (`until`), from its lookup budget
and, when the transport knows it, what is left of the client's own deadline; the circuit
breaker (`sidecar.tiers.breaker`) bounds every call to its tier by what is left of it, so
a call costs at most the smaller of the tier's own timeout and the caller's remaining time,
and a tier that cannot answer in time is counted as failing even when the client is the
one that gave up. Code outside any `until` block has no deadline (stores, sweeps, budget
samples): their tier calls are bounded by each tier's own timeout only.

Times are `asyncio` loop times (`loop.time()`, monotonic seconds), not the injectable
`Clock`: a deadline is about real time passing on this event loop.

What is NOT guaranteed: that a deadline reaches work started in another context before it
was set (a task created earlier, a thread of a tier's pool: an abandoned thread runs on
until its own socket timeout), or a deadline for tiers that are not behind a breaker (the
memory tier never waits).
"""

from __future__ import annotations

import asyncio
from contextvars import ContextVar, Token

_DEADLINE: ContextVar[float | None] = ContextVar("strata_tier_deadline", default=None)


def now() -> float:
    """The running loop's time, the clock deadlines are measured on."""
    return asyncio.get_running_loop().time()


def current() -> float | None:
    """The deadline of the calls made here (loop time), or None when there is none."""
    return _DEADLINE.get()


def until(at: float | None) -> Until:
    """Tier calls made inside ``with until(at):`` have until `at` (loop time; None: no new
    limit). An earlier deadline already in force stays in force: a deadline can only be
    narrowed."""
    return Until(at)


class Until:
    """The context manager `until` returns (a class: a lookup enters one on every call, and
    this costs a fraction of a generator-based one)."""

    __slots__ = ("_at", "_token")

    def __init__(self, at: float | None) -> None:
        self._at = at
        self._token: Token[float | None] | None = None

    def __enter__(self) -> None:
        at = self._at
        if at is not None:
            held = _DEADLINE.get()
            if held is None or at < held:
                self._token = _DEADLINE.set(at)

    def __exit__(self, *exc_info: object) -> None:
        if self._token is not None:
            _DEADLINE.reset(self._token)
            self._token = None
