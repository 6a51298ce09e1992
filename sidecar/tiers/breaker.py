"""A circuit breaker around any tier: a dead tier is skipped at once instead of costing a
timeout per call, re-probed, and used again as soon as it answers. A wrapper with the
same `Tier` interface (as pymemcache does features), not a flag on the tiers.

States, reported to the observer as 'closed', 'open' and 'half_open':

* closed: calls go to the inner tier. `failure_threshold` failures in a row, from any
  operation, open the circuit; any success resets the count. A failure is a `TierError`
  from the inner tier, a call still unanswered at the caller's deadline, or a call
  cancelled while in the tier (its caller gave up first): whoever gives up first, the tier
  did not answer in time. "In a row" counts failure episodes, not calls: a failure counts
  only if its call started after the last counted failure was seen. Calls in flight
  together when the tier (or this process) stalls fail together and count once; a tier
  that stays dead fails every new call, one episode each. So a tier that refuses
  connections trips the circuit within milliseconds, a hung one after `failure_threshold`
  timeouts one after the other (about `failure_threshold` x the callers' deadline), and a
  healthy one that stalls once does not.
* open: every call raises `TierSkippedError` ("<name>: circuit open", reason ``circuit_open``)
  without touching the inner tier, for `open_for_s` seconds of `clock.monotonic()`.
* half_open: the first call after that is the probe and reaches the inner tier; calls
  arriving while it is in flight are skipped the same way. Probe success closes the
  circuit, probe failure (a timeout or a cancellation included) opens it again for
  `open_for_s` (`sidecar.core.backoff.Backoff`, the fixed interval every back-off in the
  sidecar uses; nothing grows): a probe costs at most one inner timeout (or what is left
  of its caller's deadline) per period, and a tier that comes back is used again within
  `open_for_s`.

Deadlines (`sidecar.tiers.deadline`): a call made under a caller's deadline is bounded by
it (`asyncio.timeout_at`), so it costs the smaller of the inner tier's own timeout and the
caller's remaining time; a call that would start with nothing left is skipped (reason
``deadline``, not a failure, the tier is not asked). Calls outside any deadline are bounded
by the inner tier's timeout only.

Callers count a `TierSkippedError` as a skip (the engine: ``observer.tier_skipped(name,
reason)``), not as a tier error: no I/O was attempted. `open()` always reaches the inner
tier, with no deadline, and its result counts like any call (a failure towards the
threshold or as a failed probe, a success resets the count or closes the circuit);
`close()` always reaches it and is not counted; `snapshot()` delegates, no I/O; `usage()`
(byte budgets) is a call like any other, or None without a call when the inner tier is not
`MEASURABLE`. Logs: a WARNING when the circuit trips (closed -> open), an INFO when it
closes, a DEBUG when a failed probe re-opens it; never one per call.

What is NOT guaranteed:

* That a failure is the tier's fault: a sidecar whose event loop lags past the callers'
  deadlines (CPU starvation) makes healthy tiers miss them too, and may open their
  circuits; they close again after one successful probe.
* That an abandoned call stops at once: the inner tier's own cleanup (a query cancelled in
  the background, a worker thread finishing its socket operation) runs on after the
  caller has moved on.
* Timed transitions: open becomes half-open lazily, at the first call after `open_for_s`
  (the state and its gauge say open until then).
* Verdicts from calls that started before the last state change: they neither count nor
  decide (a success from before the trip does not close the circuit, a late failure from
  before the recovery does not count).
* A verdict from exceptions other than `TierError`, a timeout or a cancellation: they pass
  through uncounted (a probe that raises one leaves the circuit half-open for the next
  call to probe).
* Thread safety (one event loop; state changes happen between awaits, without locks), or
  any coordination between sidecars: each process has its own breaker per tier.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

from sidecar.core.backoff import Backoff
from sidecar.core.clock import Clock
from sidecar.core.errors import TierError
from sidecar.core.model import CachedResponse, TierSnapshot
from sidecar.core.observer import NullObserver, Observer
from sidecar.tiers import deadline
from sidecar.tiers.base import MEASURABLE, SetStatus, Tier, TierSkippedError, WrappedTier

CLOSED = "closed"
OPEN = "open"
HALF_OPEN = "half_open"

log = logging.getLogger("strata.sidecar.breaker")

_T = TypeVar("_T")


class CircuitBreakerTier(WrappedTier):
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
        super().__init__(inner)
        self._clock = clock
        self._threshold = failure_threshold
        self._open_for = Backoff(open_for_s)  # failed() when the circuit opens
        self._observer = observer or NullObserver()
        self._state = CLOSED
        self._failures = 0
        self._generation = 0  # bumped on every state change; older calls are not counted
        self._streak_at = float("-inf")  # clock.monotonic() of the last counted failure
        self._probing = False
        self._observer.circuit(inner.name, CLOSED)  # so the metric series exist from start

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
        """The inner tier's `usage()` through the breaker; None, without a call, if the
        inner tier is not `MEASURABLE`."""
        if MEASURABLE not in self._inner.capabilities:
            return None
        return await self._call(self._inner.usage)

    def snapshot(self) -> TierSnapshot:
        return self._inner.snapshot()

    async def close(self) -> None:
        await self._inner.close()

    # -- the breaker ---------------------------------------------------------------------

    async def _call(self, call: Callable[[], Awaitable[_T]], gated: bool = True) -> _T:
        at = deadline.current() if gated else None
        probe = self._admit(at) if gated else False
        generation = self._generation
        started = self._clock.monotonic()
        bound = asyncio.timeout_at(at) if at is not None else None
        try:
            async with bound if bound is not None else contextlib.nullcontext():
                result = await call()
        except TierError as exc:
            self._verdict_failed(generation, started, str(exc))
            raise
        except TimeoutError as exc:
            if bound is None or not bound.expired():
                raise
            message = f"{self.name}: no answer within the caller's deadline"
            self._verdict_failed(generation, started, message)
            raise TierError(message) from exc
        except asyncio.CancelledError:
            message = f"{self.name}: call cancelled by its caller"
            self._verdict_failed(generation, started, message)
            raise
        finally:
            if probe:
                self._probing = False
        if generation == self._generation:
            self._succeeded()
        return result

    def _admit(self, at: float | None) -> bool:
        """Whether this call is the probe; raises `TierSkippedError` if it may not go through
        (circuit open, a probe in flight, or the caller's deadline `at` already passed)."""
        if self._state == OPEN and self._open_for.is_down(self._clock.monotonic()):
            raise self._skip("circuit_open")
        if self._state != CLOSED and self._probing:
            raise self._skip("circuit_open")
        if at is not None and at <= deadline.now():
            raise self._skip("deadline")
        if self._state == CLOSED:
            return False
        if self._state == OPEN:
            self._move(HALF_OPEN)
        self._probing = True
        return True

    def _skip(self, reason: str) -> TierSkippedError:
        return TierSkippedError(self.name, reason)

    def _verdict_failed(self, generation: int, started: float, message: str) -> None:
        """Count a failure of a call that started in the current state (older: ignored)."""
        if generation == self._generation:
            self._failed(started, message)

    def _failed(self, started: float, message: str) -> None:
        if self._state == CLOSED:
            if started < self._streak_at:
                return  # in flight with the last counted failure: the same episode
            self._streak_at = self._clock.monotonic()
            self._failures += 1
            if self._failures < self._threshold:
                return
            log.warning(
                "tier failing; circuit opened, skipping it for %.3gs between probes",
                self._open_for.interval_s,
                extra={
                    "event.action": "circuit_open",
                    "strata.tier": self.name,
                    "error.message": message,
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
        self._streak_at = float("-inf")
        if state == OPEN:
            self._open_for.failed(self._clock.monotonic())
        elif state == CLOSED:
            self._open_for.succeeded()
        if state != self._state:
            self._state = state
            self._observer.circuit(self.name, state)
