"""At most one log line per kind every few seconds, so that a flood of refused admin
requests (wrong tokens, garbage, idle connections) cannot flood the log.

`LogGate.allow(kind)` answers whether a line for `kind` may be written now and, if so, how
many were held back since the last one (the line carries that count as
``strata.suppressed``). Kinds must come from a closed set (the metrics' result labels), so
the table stays small. Metrics count every request; only the log lines are thinned.

Not guaranteed: the count of the last lines held back is written only when the same kind
happens again after the interval (a flood that stops leaves it unlogged; the metric
``strata_admin_requests_total`` has every one).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["INTERVAL_S", "LogGate"]

#: Seconds between two lines of the same kind.
INTERVAL_S = 5.0


@dataclass(slots=True)
class _Kind:
    logged_at: float
    held: int = 0


class LogGate:
    """Decides which lines of each kind are written (see the module doc)."""

    def __init__(
        self, interval_s: float = INTERVAL_S, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._interval = interval_s
        self._clock = clock
        self._kinds: dict[str, _Kind] = {}

    def allow(self, kind: str) -> int | None:
        """None: hold this line back (counted for the next one). Otherwise write it now,
        with the returned number of lines held back since the last one of `kind`."""
        now = self._clock()
        seen = self._kinds.get(kind)
        if seen is not None and now - seen.logged_at < self._interval:
            seen.held += 1
            return None
        self._kinds[kind] = _Kind(now)
        return seen.held if seen is not None else 0
