"""Fail-open bookkeeping for helpers that use Redis but must never block on it.

`Outage` remembers that Redis failed, tells the caller to stay away from it for
`retry_after_s` (so a hung Redis costs one deadline per interval, not one per call),
reports every failure to the observer and logs at most once per `log_every_s` with the
number of failures it did not log (`sidecar.core.backoff`: `Backoff` and `LogLimit`, on
`clock.monotonic()`). It does not retry anything itself; callers ask `is_down()`.
"""

from __future__ import annotations

import logging

from sidecar.core.backoff import Backoff, LogLimit
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
        self._backoff = Backoff(retry_after_s)
        self._log_limit = LogLimit(log_every_s)

    def is_down(self) -> bool:
        """True while callers should not ask Redis (inside the back-off after a failure)."""
        return self._backoff.is_down(self._clock.monotonic())

    def failed(self, op: str, exc: BaseException) -> TierError:
        """Record a failure of `op`: back off, report, maybe log. Returns the error to raise
        or to swallow."""
        error = TierError(f"{self._what} {op} failed: {type(exc).__name__}: {exc}")
        now = self._clock.monotonic()
        self._backoff.failed(now)
        self._observer.tier_error(self._label, op)
        held = self._log_limit.take(now)
        if held is not None:
            self._log.warning(
                f"{self._what} failing; {self._consequence}",
                extra={
                    "event.action": self._action,
                    "error.message": str(error),
                    "strata.suppressed": held,
                },
            )
        return error
