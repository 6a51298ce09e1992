"""Back-off after failures, and log lines limited to one per interval: pure bookkeeping.

`Backoff` is the one rule every part of the sidecar that stays away from a failing server
follows (the circuit breaker, each Memcached server, the PostgreSQL tier's re-opening,
the Redis helpers of `sidecar.cluster`): after a failure at time ``t`` the server is down
while ``now - t < interval_s``; a success ends that at once. The interval is fixed (no
exponential growth, no jitter): a dead server costs at most one attempt per interval, and
one that comes back is used again within one interval.

`LogLimit` lets a caller log at most once per interval, saying how many lines it held back.

Both take the time as an argument (seconds of whatever monotonic clock the caller uses:
`Clock.monotonic()`, the event loop's time); they read no clock, do no I/O and start no
tasks. What they do NOT do: decide what counts as a failure, or how many failures in a row
make a server down (each caller keeps its own rule, see its module), retry anything, or
coordinate processes or threads (one owner, one thread).
"""

from __future__ import annotations

_NEVER = float("-inf")


class Backoff:
    """Down for `interval_s` after each failure, up again at the first success."""

    __slots__ = ("_failed_at", "_interval_s")

    def __init__(self, interval_s: float) -> None:
        if interval_s < 0:
            raise ValueError("a back-off interval must not be negative")
        self._interval_s = interval_s
        self._failed_at = _NEVER

    @property
    def interval_s(self) -> float:
        return self._interval_s

    @property
    def tripped(self) -> bool:
        """Whether a failure was seen since the last success (down or not any more)."""
        return self._failed_at != _NEVER

    def failed(self, now: float) -> None:
        """A failure at `now`: down from now for one interval (a later failure restarts it)."""
        self._failed_at = now

    def succeeded(self) -> None:
        """The server answered: up at once, nothing left of earlier failures."""
        self._failed_at = _NEVER

    def is_down(self, now: float) -> bool:
        """True while `now` is within one interval of the last failure."""
        return now - self._failed_at < self._interval_s

    def remaining(self, now: float) -> float:
        """Seconds until the server may be tried again (0 when it may be now)."""
        return max(0.0, self._interval_s - (now - self._failed_at))


class LogLimit:
    """At most one log line per `every_s`; counts the lines it held back meanwhile."""

    __slots__ = ("_every_s", "_held", "_logged_at")

    def __init__(self, every_s: float) -> None:
        self._every_s = every_s
        self._logged_at = _NEVER
        self._held = 0

    def take(self, now: float) -> int | None:
        """The number of lines held back since the last one if a line may be logged at
        `now` (the caller logs it: the count starts again from 0), else None (the line is
        held back and counted)."""
        if now - self._logged_at >= self._every_s:
            held, self._held, self._logged_at = self._held, 0, now
            return held
        self._held += 1
        return None
