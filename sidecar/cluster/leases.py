"""Cluster-wide fill leases in Redis, so that one request across all sidecars fills a key.

The lease on cache key ``K`` (namespace ``ns``) is the Redis key ``ns:l:K``, taken with
``SET ns:l:K <token> NX PX ttl_ms``; the token is random per acquisition and remembered in
this process, and `release` deletes the key only if it still holds that token (a Lua
compare-and-delete), so a non-holder, or a holder whose lease expired and was taken by
someone else, never deletes another's lease. TTLs are kept by the server, so clock skew
between sidecars does not matter.

Waiting: the waiters of one key in this process share one `_Watch` (an event and a single
polling task) that sends ``EXISTS ns:l:K`` every `poll_interval_s` until the key is gone
(released, or expired) or the last waiter leaves. A release in this process wakes its
local waiters at once; waiters elsewhere notice within one interval.

Cost (RTT = one network round trip, bounded by `timeout_s`):

* try_acquire: 1 RTT (SET NX PX); none while this process already holds the key's lease.
* wait: one ``EXISTS`` per key per `poll_interval_s` while anyone in this process waits on
  that key (not per waiter); e.g. 10 ms -> 100 commands/s per contended key per sidecar.
* release: 1 RTT (EVAL) when this process holds the lease, else none.
* sweep: no I/O (Redis expires leases itself); it forgets expired local state.

Fail open: any Redis error (connection refused, timeout, pool exhausted, cluster errors) is
wrapped as `TierError`, reported to the observer as ``tier_error("redis_lease", op)`` and
logged at most once per second; then `try_acquire` and `wait` use a node-local
`LocalLeases` instead (coalescing still works per node), and for `RETRY_AFTER_S` after an
error Redis is not asked by `try_acquire` and `wait`, so lookups pay at most one
`timeout_s` per `RETRY_AFTER_S` for an outage (`release` of a lease taken in Redis still
tries its delete, bounded by `timeout_s`). Only `open` and `close` raise (`TierError`).

What is NOT guaranteed:

* Mutual exclusion under Redis failover or data loss: a lease written to a primary that
  dies before replicating it, a FLUSH, or maxmemory eviction lets a second holder in
  (leases are a stampede brake, not a lock; a duplicate fill is harmless).
* A single holder across an outage: leases taken locally while Redis was failing coexist
  with leases other sidecars take in Redis (up to one filler per node meanwhile).
* That waiters wake as soon as a holder elsewhere releases (up to one `poll_interval_s`
  later), or at all if the lease is released and taken again between two polls (they then
  wait for the new holder, bounded by their own wait). A wait that starts after the lease
  is gone (released between a failed `try_acquire` and the first poll) returns False at
  once, like a wait on no lease; the engine then answers with its miss.
* That a lease outlives its holder's work: it expires after `ttl_ms` even if the fill is
  still running.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from dataclasses import dataclass, field

from sidecar.cluster.outage import Outage
from sidecar.core.clock import Clock
from sidecar.core.errors import TierError
from sidecar.core.observer import NullObserver, Observer
from sidecar.engine.coalesce import LocalLeases
from sidecar.tiers.redis_conn import DRIVER_ERRORS, connect

log = logging.getLogger("strata.sidecar.leases")

#: After a Redis error, leases stay node-local for this long before Redis is tried again.
RETRY_AFTER_S = 1.0
#: At most one log line per this many seconds about failing Redis leases.
LOG_EVERY_S = 1.0
#: Connections to Redis (per node on a cluster); a checkout waits at most `timeout_s`.
MAX_CONNECTIONS = 32
OBSERVER_TIER = "redis_lease"

# KEYS[1] = lease key, ARGV[1] = the holder's token.
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


@dataclass(slots=True, eq=False)
class _Watch:
    """The shared wait of this process's waiters on one key's lease."""

    done: asyncio.Event = field(default_factory=asyncio.Event)
    released: bool = False
    waiters: int = 0


class RedisLeases:
    """`Leases` shared by every sidecar through Redis. See the module docstring."""

    def __init__(
        self,
        url: str,
        clock: Clock,
        *,
        namespace: str = "strata",
        ttl_ms: int = 10_000,
        timeout_s: float = 0.05,
        poll_interval_s: float = 0.01,
        observer: Observer | None = None,
    ) -> None:
        if ttl_ms <= 0 or timeout_s <= 0 or poll_interval_s <= 0:
            raise ValueError("ttl_ms, timeout_s and poll_interval_s must be positive")
        self._clock = clock
        self._observer = observer or NullObserver()
        self._prefix = namespace.encode() + b":l:"
        self._ttl_ms = ttl_ms
        self._interval = poll_interval_s
        self._local = LocalLeases(clock, ttl_ms)
        self._held: dict[bytes, tuple[bytes, float]] = {}  # key -> (token, local expiry)
        self._watches: dict[bytes, _Watch] = {}
        self._pollers: set[asyncio.Task[None]] = set()  # strong refs until they end
        self._outage = Outage(
            self._clock,
            self._observer,
            label=OBSERVER_TIER,
            what="redis lease",
            consequence="coalescing is node-local until redis answers",
            action="lease_redis_error",
            logger=log,
            retry_after_s=RETRY_AFTER_S,
            log_every_s=LOG_EVERY_S,
        )
        self._client = connect(url, timeout_s, MAX_CONNECTIONS)

    async def open(self) -> None:
        """PING once; `TierError` if unreachable (leases are local until Redis answers)."""
        try:
            await self._client.ping()
        except DRIVER_ERRORS as exc:
            raise self._failed("open", exc) from exc

    async def close(self) -> None:
        """End every wait (waiters get False), let the polls stop (each within one
        `timeout_s`) and close the connections."""
        for key, watch in list(self._watches.items()):
            self._finish(key, watch, released=False)
        await asyncio.gather(*self._pollers, return_exceptions=True)
        try:
            await self._client.aclose()
        except DRIVER_ERRORS as exc:
            raise self._failed("close", exc) from exc

    async def try_acquire(self, key: bytes) -> bool:
        """SET NX PX; False without I/O while this process holds the key's lease (in Redis,
        or locally since an error); local on a Redis error or shortly after one."""
        now = self._clock.monotonic()
        if self._local.is_held(key):
            return False
        held = self._held.get(key)
        if held is not None and held[1] > now:
            return False
        if self._outage.is_down():
            return await self._local.try_acquire(key)
        token = secrets.token_hex(16).encode()
        try:
            won = await self._client.set(self._prefix + key, token, nx=True, px=self._ttl_ms)
        except DRIVER_ERRORS as exc:
            self._failed("acquire", exc)
            return await self._local.try_acquire(key)
        if won:
            self._held[key] = (token, now + self._ttl_ms / 1000.0)
        return bool(won)

    async def wait(self, key: bytes, timeout_s: float) -> bool:
        """Join (or start) this process's poll of the key's lease; see `Leases.wait`. A
        lease held locally (since a Redis error) is waited for locally, and while Redis is
        failing there is nothing to wait for unless one is."""
        if self._local.is_held(key) or self._outage.is_down():
            return await self._local.wait(key, timeout_s)
        watch = self._watches.get(key)
        if watch is None:
            watch = self._watches[key] = _Watch()
            task = asyncio.create_task(self._poll(key, watch), name="strata-lease-poll")
            self._pollers.add(task)
            task.add_done_callback(self._pollers.discard)
        watch.waiters += 1
        try:
            await asyncio.wait_for(watch.done.wait(), timeout_s)
        except TimeoutError:
            return False
        finally:
            watch.waiters -= 1
            if watch.waiters == 0 and not watch.done.is_set():
                self._finish(key, watch, released=False)  # nobody left: stop polling
        return watch.released

    async def release(self, key: bytes) -> int:
        """Delete the Redis lease if this process holds it (compare-and-delete), end any
        local lease, and wake this process's waiters on `key` (whoever held the lease: a
        store here means the tiers have the entry)."""
        woken = await self._local.release(key)
        held = self._held.pop(key, None)
        if held is not None:
            try:
                await self._client.eval(_RELEASE, 1, self._prefix + key, held[0])
            except DRIVER_ERRORS as exc:
                self._failed("release", exc)  # the lease expires after its TTL instead
        watch = self._watches.get(key)
        if watch is not None:
            woken += watch.waiters
            self._finish(key, watch, released=True)
        return woken

    async def sweep(self) -> int:
        """Forget expired local leases and the tokens of expired Redis leases."""
        now = self._clock.monotonic()
        expired = [k for k, (_, until) in self._held.items() if until <= now]
        for k in expired:
            del self._held[k]
        return await self._local.sweep() + len(expired)

    # -- internals ---------------------------------------------------------------------

    async def _poll(self, key: bytes, watch: _Watch) -> None:
        """EXISTS every interval until the lease is gone (released=True if it was seen
        live first, False if there was none to begin with or Redis failed) or the watch
        ends otherwise. Never cancelled, so no command is cut off mid-reply (which would
        cost the connection)."""
        seen = False
        try:
            while not watch.done.is_set() and await self._client.exists(self._prefix + key):
                seen = True
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(watch.done.wait(), self._interval)
        except DRIVER_ERRORS as exc:
            if not watch.done.is_set():
                self._failed("poll", exc)
            seen = False
        self._finish(key, watch, released=seen)

    def wake_all(self) -> int:
        """Wake every waiter in this process (see `Leases.wake_all`)."""
        woken = self._local.wake_all()
        for key, watch in list(self._watches.items()):
            woken += watch.waiters
            self._finish(key, watch, released=True)
        return woken

    def _finish(self, key: bytes, watch: _Watch, *, released: bool) -> None:
        """Wake the watch's waiters with `released` and forget it (idempotent)."""
        if watch.done.is_set():
            return
        watch.released = released
        watch.done.set()
        if self._watches.get(key) is watch:
            del self._watches[key]

    def _failed(self, op: str, exc: BaseException) -> TierError:
        """Record a Redis failure (back off, report, log at most once per LOG_EVERY_S)."""
        return self._outage.failed(op, exc)
