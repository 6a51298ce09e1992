"""Problems an operator must see, sent to Kong's error log through ``kong.log``.

Kong logs a plugin server's stdout and stderr at INFO level
(``kong/runloop/plugin_servers/process.lua`` ``grab_logs``), which its default ``log_level``
(``notice``) hides: a plugin that only prints its errors is silent on Kong. So the handler
reports what matters (a rejected configuration, an unreachable sidecar, a failed phase)
with ``kong.log.err``/``kong.log.warn`` as well as to its own log.

Each report costs one PDK round trip, so `Reporter` lets one message per kind through every
`interval_s` seconds per plugin-server process and counts the rest; the next report says how
many were suppressed.

Not guaranteed: a report can only be sent from inside a phase, before the phase ends the
request (nothing may call the PDK after ``kong.response.exit``); the first occurrence in each
interval is reported, not every one.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

log = logging.getLogger("strata.plugin")

#: Seconds between two reports of the same kind.
INTERVAL_S = 30.0


class Reporter:
    """Rate-limited ``kong.log`` reports, one budget per kind (thread-safe)."""

    def __init__(
        self, interval_s: float = INTERVAL_S, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._interval = interval_s
        self._clock = clock
        self._next: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}
        self._lock = threading.Lock()

    def due(self, kind: str) -> int | None:
        """``None`` if `kind` was reported too recently (and count it), else how many
        reports of that kind were suppressed since the last one."""
        now = self._clock()
        with self._lock:
            if now < self._next.get(kind, 0.0):
                self._suppressed[kind] = self._suppressed.get(kind, 0) + 1
                return None
            self._next[kind] = now + self._interval
            return self._suppressed.pop(kind, 0)

    def report(self, kong: Any, level: str, kind: str, message: str, *, local: bool = True) -> None:
        """Log `message` here (unless `local` is false: the caller logs it, rate-limited),
        and through ``kong.log.<level>`` unless rate-limited.

        Never raises: a failing report must not turn a handled problem into a hang.
        """
        if local:
            log.log(logging.ERROR if level == "err" else logging.WARNING, "%s", message)
        suppressed = self.due(kind)
        if suppressed is None:
            return
        text = f"[strata-cache] {message}"
        if suppressed:
            text += f" ({suppressed} similar reports suppressed)"
        try:
            getattr(kong.log, level)(text)
        except Exception:
            log.debug("kong.log.%s failed", level, exc_info=True)
