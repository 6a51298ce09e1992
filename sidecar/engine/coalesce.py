"""Request coalescing: single-flight reads and fill leases.

`SingleFlight` makes concurrent callers of one key share one in-flight call (groupcache's
singleflight). A `Leases` implementation hands one caller per missing key a *fill lease* -
the right to fetch it from the origin - and lets the others wait a bounded time for that
fill. `LocalLeases` does so within this process; the cluster-wide one
in Redis is `sidecar.cluster.leases.RedisLeases`.

What this does not guarantee: coalescing across sidecars with `LocalLeases`; that a lease
holder ever fills (leases expire after their TTL, and waiters give up after their own
wait); that an expired lease wakes its waiters before `sweep` or the next `try_acquire` of
its key; fairness among waiters.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass, field
from typing import Generic, Protocol, TypeVar

from sidecar.core.clock import Clock

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class SingleFlight(Generic[K, V]):
    """Concurrent `do(key, fn)` calls for one key run `fn` once and share its result."""

    def __init__(self) -> None:
        self._calls: dict[K, asyncio.Future[V]] = {}

    async def do(self, key: K, fn: Callable[[], Awaitable[V]]) -> V:
        pending = self._calls.get(key)
        if pending is not None:
            return await asyncio.shield(pending)
        fut: asyncio.Future[V] = asyncio.get_running_loop().create_future()
        self._calls[key] = fut
        try:
            result = await fn()
        except BaseException as exc:
            fut.set_exception(exc)
            fut.exception()  # mark retrieved: followers re-raise it, nobody else must
            raise
        else:
            fut.set_result(result)
            return result
        finally:
            del self._calls[key]

    def __len__(self) -> int:
        return len(self._calls)


class Leases(Protocol):
    """Fill leases per key: one holder at a time, others wait (bounded) for its fill.

    Implementations never raise for their own failures (a lookup must not fail because
    coalescing does); at worst they coalesce less.
    """

    async def try_acquire(self, key: bytes) -> bool:
        """True if the caller now holds the lease for `key` (none was live)."""
        ...

    async def wait(self, key: bytes, timeout_s: float) -> bool:
        """Wait for the live lease on `key` to end: True if it was released (filled or
        given up) within `timeout_s`; False on timeout or if no lease was live."""
        ...

    async def release(self, key: bytes) -> int:
        """End the lease on `key` (filled or given up); the waiters woken in this process."""
        ...

    async def sweep(self) -> int:
        """Forget expired leases (waking their local waiters); the number forgotten."""
        ...

    def wake_all(self) -> int:
        """Wake every waiter in this process now, as if its lease had ended (the sidecar is
        draining: a fill may now go to the sidecar that took over). Returns how many."""
        ...


@dataclass(slots=True)
class _Lease:
    expires_at: float
    released: asyncio.Event = field(default_factory=asyncio.Event)
    waiters: int = 0


class LocalLeases:
    """Fill leases per key in this process, expiring after `ttl_ms` on the monotonic clock.

    The methods are coroutines only to satisfy `Leases`: none of them awaits anything but
    the waiters' event, so `try_acquire`, `release` and `sweep` are atomic on the loop."""

    def __init__(self, clock: Clock, ttl_ms: int) -> None:
        self._clock = clock
        self._ttl = ttl_ms / 1000.0
        self._leases: dict[bytes, _Lease] = {}

    async def try_acquire(self, key: bytes) -> bool:
        """True if the caller now holds the lease for `key` (none was live)."""
        lease = self._leases.get(key)
        now = self._clock.monotonic()
        if lease is not None and lease.expires_at > now:
            return False
        if lease is not None:
            lease.released.set()  # wake anyone still waiting on the dead lease
        self._leases[key] = _Lease(expires_at=now + self._ttl)
        return True

    def is_held(self, key: bytes) -> bool:
        lease = self._leases.get(key)
        return lease is not None and lease.expires_at > self._clock.monotonic()

    async def wait(self, key: bytes, timeout_s: float) -> bool:
        """Wait for the live lease on `key` to be released; False on timeout or no lease."""
        lease = self._leases.get(key)
        if lease is None or lease.expires_at <= self._clock.monotonic():
            return False
        lease.waiters += 1
        try:
            await asyncio.wait_for(lease.released.wait(), timeout_s)
        except TimeoutError:
            return False
        finally:
            lease.waiters -= 1
        return True

    async def release(self, key: bytes) -> int:
        """End the lease on `key` (filled or given up); returns how many were waiting."""
        lease = self._leases.pop(key, None)
        if lease is None:
            return 0
        lease.released.set()
        return lease.waiters

    async def sweep(self) -> int:
        """Forget expired leases (waking their waiters); the number removed."""
        now = self._clock.monotonic()
        dead = [k for k, lease in self._leases.items() if lease.expires_at <= now]
        for k in dead:
            self._leases.pop(k).released.set()
        return len(dead)

    def wake_all(self) -> int:
        """Wake every waiter (see `Leases.wake_all`); the leases themselves stay."""
        woken = 0
        for lease in self._leases.values():
            if lease.waiters:
                woken += lease.waiters
                lease.released.set()
        return woken

    def __len__(self) -> int:
        return len(self._leases)
