"""Time for the engine, injectable so tests control it (Caffeine's Ticker, in small).

`now_ms()` is wall-clock Unix time in milliseconds (entries carry Unix times so that every
sidecar and the plugin agree on them); `monotonic()` is for measuring intervals. Neither
is guaranteed to be monotonic across NTP steps for `now_ms`.
"""

from __future__ import annotations

import time
from typing import Protocol


class Clock(Protocol):
    """Source of time for the engine and the tiers."""

    def now_ms(self) -> int:
        """Wall-clock Unix time in milliseconds."""
        ...

    def monotonic(self) -> float:
        """Seconds from an arbitrary origin, never going backwards."""
        ...


class SystemClock:
    """The real clock."""

    def now_ms(self) -> int:
        return time.time_ns() // 1_000_000

    def monotonic(self) -> float:
        return time.monotonic()


class ManualClock:
    """A clock that moves only when told to; for tests and simulations."""

    def __init__(self, start_ms: int = 1_700_000_000_000) -> None:
        self._now_ms = start_ms
        self._mono = 0.0

    def now_ms(self) -> int:
        return self._now_ms

    def monotonic(self) -> float:
        return self._mono

    def advance(self, ms: int) -> None:
        """Move both clocks forward by `ms` milliseconds (negative values are refused)."""
        if ms < 0:
            raise ValueError("a ManualClock only moves forward")
        self._now_ms += ms
        self._mono += ms / 1000.0
