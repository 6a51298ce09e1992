"""Log lines for refused requests, rate-limited so a flood of bad calls cannot flood the log.

Per (operation, reason) - closed sets, so the table stays small - the first refusal is
logged at once; later ones within `interval_s` of the last line are only counted, and the
next line logged for that pair carries their count (`strata.refusals_suppressed`).

Not guaranteed: a count of suppressed refusals is written only when the pair is refused
again after the interval (a flood that stops leaves its last count unlogged; the metric
`strata_rejected_requests_total` has every one).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

#: Default time between two lines for the same operation and reason.
INTERVAL_S = 10.0


@dataclass(slots=True)
class _Pair:
    logged_at: float
    suppressed: int = 0


class RefusalLog:
    """`refused(...)` logs "request refused" at INFO, at most once per `interval_s` per
    (operation, reason)."""

    def __init__(
        self,
        logger: logging.Logger,
        interval_s: float = INTERVAL_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._log = logger
        self._interval = interval_s
        self._clock = clock
        self._pairs: dict[tuple[str, str], _Pair] = {}

    def refused(self, operation: str, reason: str, message: str) -> bool:
        """Note one refusal; True if it was logged now (False: counted for the next line)."""
        now = self._clock()
        pair = self._pairs.get((operation, reason))
        if pair is not None and now - pair.logged_at < self._interval:
            pair.suppressed += 1
            return False
        suppressed = pair.suppressed if pair is not None else 0
        self._pairs[(operation, reason)] = _Pair(now)
        self._log.info(
            "request refused",
            extra={
                "event.action": operation,
                "event.reason": reason,
                "error.message": message,
                "strata.refusals_suppressed": suppressed,
            },
        )
        return True
