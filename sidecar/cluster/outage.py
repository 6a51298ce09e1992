"""Fail-open bookkeeping for helpers that use Redis but must never block on it.

`Outage` remembers that Redis failed, tells the caller to stay away from it for
`retry_after_s` (so a hung Redis costs one deadline per interval, not one per call),
reports every failure to the observer and logs at most once per `log_every_s` with the
number of failures it did not log. It does not retry anything itself.
"""

from __future__ import annotations

import logging

from sidecar.core.clock import Clock
from sidecar.core.errors import TierError
from sidecar.core.observer import Observer


class Outage:
    def __init__(
        self,
        clock: Clock,
        observer: Observer,
        *,
        label: str,
        what: str,
        consequence: str,
        action: str,
        logger: logging.Logger,
        retry_after_s: float = 1.0,
        log_every_s: float = 1.0,
    ) -> None:
        self._clock = clock
        self._observer = observer
        self._label = label
        self._what = what
        self._consequence = consequence
        self._action = action
        self._log = logger
        self._retry_after = retry_after_s
        self._log_every = log_every_s
        self.down_until = float("-inf")
        self._last_log = float("-inf")
        self._unlogged = 0

    def is_down(self) -> bool:
        """True while callers should not ask Redis (inside the back-off after a failure)."""
        return self._clock.monotonic() < self.down_until

    def failed(self, op: str, exc: BaseException) -> TierError:
        """Record a failure of `op`: back off, report, maybe log. Returns the error to raise
        or to swallow."""
        error = TierError(f"{self._what} {op} failed: {type(exc).__name__}: {exc}")
        now = self._clock.monotonic()
        self.down_until = now + self._retry_after
        self._observer.tier_error(self._label, op)
        if now - self._last_log >= self._log_every:
            self._log.warning(
                f"{self._what} failing; {self._consequence}",
                extra={
                    "event.action": self._action,
                    "error.message": str(error),
                    "strata.suppressed": self._unlogged,
                },
            )
            self._last_log = now
            self._unlogged = 0
        else:
            self._unlogged += 1
        return error
