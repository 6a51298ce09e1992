"""A circuit breaker around any tier: a dead tier is skipped at once instead of costing a
timeout per call, re-probed, and used again as soon as it answers. A wrapper with the
same `Tier` interface (as pymemcache does features), not a flag on the tiers.

States, reported to the observer as 'closed', 'open' and 'half_open':

* closed: calls go to the inner tier. `failure_threshold` consecutive `TierError`s, from
  any operation, open the circuit; any success resets the count.
* open: every call raises `TierError("<name>: circuit open")` without touching the inner
  tier, for `open_for_s` seconds of `clock.monotonic()`.
* half_open: the first call after that is the probe and reaches the inner tier; calls
  arriving while it is in flight fail fast. Probe success closes the circuit, probe
  failure opens it again for `open_for_s`. The period is fixed, no back-off: a probe costs
  at most one inner timeout per period, and a tier that comes back is used again within
  `open_for_s`.

`open()` always reaches the inner tier and its result counts like any call (a failure
towards the threshold or as a failed probe, a success resets the count or closes the
circuit); `close()` always reaches it and is not counted; `snapshot()` delegates, no I/O;
`usage()` (byte budgets) is a call like any other, or None when the inner tier has none.
Logs: a WARNING when the circuit trips (closed -> open), an INFO when it closes, a DEBUG
when a failed probe re-opens it; never one per call.

What is NOT guaranteed:

* A deadline of its own: a slow call is a failure only when the inner tier gives up (its
  `timeout_s`); a probe that hangs keeps the circuit half-open, failing fast, as long.
* Timed transitions: open becomes half-open lazily, at the first call after `open_for_s`
  (the state and its gauge say open until then).
* Verdicts from calls that started before the last state change: they neither count nor
  decide (a success from before the trip does not close the circuit, a late failure from
  before the recovery does not count).
* A verdict from a probe that is cancelled or raises anything but `TierError`: the circuit
  stays half-open and the next call probes. Other exceptions pass through uncounted.
* Thread safety (one event loop; state changes happen between awaits, without locks), or
  any coordination between sidecars: each process has its own breaker per tier.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar, cast

from sidecar.clock import Clock
from sidecar.errors import TierError
from sidecar.model import CachedResponse, TierSnapshot
from sidecar.observability.observer import NullObserver, Observer
from sidecar.tiers.base import SetStatus, Tier

CLOSED = "closed"
OPEN = "open"
HALF_OPEN = "half_open"

log = logging.getLogger("strata.sidecar.breaker")

_T = TypeVar("_T")


class CircuitBreakerTier:
    """`inner` behind a circuit breaker. See the module docstring for the states."""

    def __init__(
        self,
        inner: Tier,
        clock: Clock,
        *,
        failure_threshold: int = 5,
        open_for_s: float = 2.0,
        observer: Observer | None = None,
    ) -> None:
        if failure_threshold < 1:
            raise ValueError("failure_threshold must be at least 1")
        if open_for_s < 0:
            raise ValueError("open_for_s must not be negative")
        self._inner = inner
        self._clock = clock
        self._threshold = failure_threshold
        self._open_for_s = open_for_s
        self._observer = observer or NullObserver()
        self._state = CLOSED
        self._failures = 0
        self._opened_at = 0.0
        self._generation = 0  # bumped on every state change; older calls are not counted
        self._probing = False
        self._observer.circuit(inner.name, CLOSED)  # so the metric series exist from start

    @property
    def name(self) -> str:
        return self._inner.name

    @property
    def capabilities(self) -> frozenset[str]:
        return self._inner.capabilities

    @property
    def state(self) -> str:
        """'closed', 'open' or 'half_open' (open until a call notices `open_for_s` passed)."""
        return self._state

    async def open(self) -> None:
        await self._call(self._inner.open, gated=False)

    async def get(self, key: bytes) -> CachedResponse | None:
        return await self._call(lambda: self._inner.get(key))

    async def set(self, key: bytes, entry: CachedResponse) -> SetStatus:
        return await self._call(lambda: self._inner.set(key, entry))

    async def delete(self, key: bytes) -> bool:
        return await self._call(lambda: self._inner.delete(key))

    async def delete_prefix(self, prefix: bytes) -> int:
        return await self._call(lambda: self._inner.delete_prefix(prefix))

    async def delete_tag(self, tag: str) -> int:
        return await self._call(lambda: self._inner.delete_tag(tag))

    async def sweep(self) -> int:
        return await self._call(self._inner.sweep)

    async def usage(self) -> int | None:
        """The inner tier's `usage()` through the breaker (None if it has none)."""
        read = getattr(self._inner, "usage", None)
        if read is None:
            return None
        return cast(int | None, await self._call(read))

    def snapshot(self) -> TierSnapshot:
        return self._inner.snapshot()

    async def close(self) -> None:
        await self._inner.close()

    # -- the breaker ---------------------------------------------------------------------

    async def _call(self, call: Callable[[], Awaitable[_T]], gated: bool = True) -> _T:
        probe = self._admit() if gated else False
        generation = self._generation
        try:
            result = await call()
        except TierError as exc:
            if generation == self._generation:
                self._failed(exc)
            raise
        finally:
            if probe:
                self._probing = False
        if generation == self._generation:
            self._succeeded()
        return result

    def _admit(self) -> bool:
        """Whether this call is the probe; raises `TierError` if it may not go through."""
        if self._state == CLOSED:
            return False
        if self._state == OPEN:
            if self._clock.monotonic() - self._opened_at < self._open_for_s:
                raise TierError(f"{self.name}: circuit open")
            self._move(HALF_OPEN)
        if self._probing:
            raise TierError(f"{self.name}: circuit open")
        self._probing = True
        return True

    def _failed(self, exc: TierError) -> None:
        if self._state == CLOSED:
            self._failures += 1
            if self._failures < self._threshold:
                return
            log.warning(
                "tier failing; circuit opened, skipping it for %.3gs between probes",
                self._open_for_s,
                extra={
                    "event.action": "circuit_open",
                    "strata.tier": self.name,
                    "error.message": str(exc),
                },
            )
        elif self._state == HALF_OPEN:
            log.debug(
                "tier probe failed; circuit opened again",
                extra={"event.action": "circuit_reopen", "strata.tier": self.name},
            )
        self._move(OPEN)  # from open (a failed open()): the period starts again

    def _succeeded(self) -> None:
        self._failures = 0
        if self._state != CLOSED:
            log.info(
                "tier answers again; circuit closed",
                extra={"event.action": "circuit_close", "strata.tier": self.name},
            )
            self._move(CLOSED)

    def _move(self, state: str) -> None:
        self._generation += 1
        self._failures = 0
        if state == OPEN:
            self._opened_at = self._clock.monotonic()
        if state != self._state:
            self._state = state
            self._observer.circuit(self.name, state)
