"""Request coalescing: single-flight reads and fill leases (node-local).

`SingleFlight` makes concurrent callers of one key share one in-flight call (groupcache's
singleflight). `LeaseTable` hands one caller per missing key a *fill lease* - the right to
fetch it from the origin - and lets the others wait a bounded time for that fill.

What this does not guarantee: coalescing across sidecars (a cluster-wide lease in Redis
arrives with the shared tiers); that a lease holder ever fills (leases expire after their
TTL, and waiters give up after their own wait); fairness among waiters.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from sidecar.clock import Clock

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


@dataclass(slots=True)
class _Lease:
    expires_at: float
    released: asyncio.Event = field(default_factory=asyncio.Event)
    waiters: int = 0


class LeaseTable:
    """Fill leases per key, expiring after `ttl_ms` on the monotonic clock."""

    def __init__(self, clock: Clock, ttl_ms: int) -> None:
        self._clock = clock
        self._ttl = ttl_ms / 1000.0
        self._leases: dict[bytes, _Lease] = {}

    def try_acquire(self, key: bytes) -> bool:
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

    def release(self, key: bytes) -> int:
        """End the lease on `key` (filled or given up); returns how many were waiting."""
        lease = self._leases.pop(key, None)
        if lease is None:
            return 0
        lease.released.set()
        return lease.waiters

    def sweep(self) -> int:
        """Forget expired leases (waking their waiters); the number removed."""
        now = self._clock.monotonic()
        dead = [k for k, lease in self._leases.items() if lease.expires_at <= now]
        for k in dead:
            self._leases.pop(k).released.set()
        return len(dead)

    def __len__(self) -> int:
        return len(self._leases)
