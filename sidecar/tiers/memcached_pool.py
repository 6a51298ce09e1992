"""The Memcached tier's servers: one pymemcache client each, a thread pool, health per server.

Each key belongs to one server, chosen by `RendezvousHash` over "host:port" ids; each
server has its own pymemcache `PooledClient` (``no_delay``, connect and I/O timeout
``timeout_s``, at most ``pool_size`` connections, no retries inside pymemcache). pymemcache
is blocking, so every call runs on a small thread pool owned by `ServerPool` (``pool_size``
threads, so a server's connection pool can never be exhausted).

Health. A server that refuses connections, or fails (reset, timed out) `DOWN_AFTER_FAILURES`
times in a row, is marked down for ``dead_retry_s`` (a `sidecar.core.backoff.Backoff`):
calls for its keys raise `TierError` at once instead of each paying a timeout, and the
first call after that window probes it (the window starts again meanwhile, so the others
keep failing fast until the probe answers). "In a row" counts failure episodes, not
calls: a failure of a call that started before the previous failure was seen belongs to
the same episode (calls in flight together all time out together when the process
stalls). Any answer, an error reply included, marks the server up. A pooled connection the
server has closed fails instantly; it is discarded and the call moves on to the next
connection - fresh ones included - so a restarted server is used again without
recreating the pool.

What is NOT guaranteed: a hard deadline (see `sidecar.tiers.memcached`), or that keys move
to another server while theirs is down (they never do).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TypeVar

from pymemcache.client.base import PooledClient
from pymemcache.exceptions import MemcacheError, MemcacheUnexpectedCloseError

from sidecar.core.backoff import Backoff
from sidecar.core.clock import Clock
from sidecar.core.errors import TierError
from sidecar.tiers.hashing import RendezvousHash

T = TypeVar("T")

#: A pooled connection the server already closed fails at once with one of these.
_STALE_CONNECTION = (MemcacheUnexpectedCloseError, ConnectionResetError, BrokenPipeError)
#: The server is unreachable or broken: mark it down for a while.
_SERVER_DOWN = (OSError, MemcacheUnexpectedCloseError)
#: Failure episodes in a row (see the module docstring) after which a server is marked down;
#: a refused connection marks it down at once.
DOWN_AFTER_FAILURES = 2


def server_id(server: tuple[str, int]) -> str:
    """The stable id a server is hashed under: ``host:port`` or ``[v6]:port``."""
    host, port = server
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


@dataclass(slots=True)
class Server:
    """One server and what the event-loop thread knows of its health (only it touches these)."""

    id: str
    client: PooledClient
    down: Backoff
    failures: int = 0  # failure episodes in a row
    failed_at: float = field(default=float("-inf"))  # clock.monotonic() of the last failure

    def failed(self, started: float, now: float, refused: bool) -> bool:
        """Note a failure of a call started at `started`; True if the server is now down."""
        if started >= self.failed_at:  # not a call caught in the same episode
            self.failures += 1
        self.failed_at = now
        return refused or self.failures >= DOWN_AFTER_FAILURES

    def answered(self) -> None:
        self.down.succeeded()
        self.failures = 0


class ServerPool:
    """The servers of one Memcached tier, the thread pool their calls run on, their health."""

    def __init__(
        self,
        servers: Iterable[tuple[str, int]],
        clock: Clock,
        *,
        timeout_s: float,
        pool_size: int,
        dead_retry_s: float,
    ) -> None:
        self._clock = clock
        self._pool_size = pool_size
        self.servers = [
            Server(
                server_id(s),
                PooledClient(
                    s,
                    connect_timeout=timeout_s,
                    timeout=timeout_s,
                    no_delay=True,
                    max_pool_size=pool_size,
                    default_noreply=False,
                ),
                Backoff(dead_retry_s),
            )
            for s in servers
        ]
        self._ring = RendezvousHash(s.id for s in self.servers)
        # Threads start on first use; one per possible connection of a server's pool.
        self._executor = ThreadPoolExecutor(pool_size, thread_name_prefix="strata-memcached")
        self._closed = False

    def server_for(self, storage_key: bytes) -> Server:
        """The server that holds `storage_key` (a Memcached key)."""
        return self.servers[self._ring.index_for(storage_key)]

    def server_id_for(self, storage_key: bytes) -> str:
        return self._ring.node_for(storage_key)

    async def call(
        self, server: Server, op: str, fn: Callable[[PooledClient], T], *, probe: bool = False
    ) -> T:
        """Run `fn(client)` on the thread pool; every failure becomes `TierError`. A server
        marked down fails at once unless `probe` (then it is asked whatever its state)."""
        if self._closed:
            raise TierError("memcached tier is closed")
        now = self._clock.monotonic()
        if server.down.tripped and not probe:
            if server.down.is_down(now):
                raise TierError(
                    f"memcached {server.id} is marked down for another "
                    f"{server.down.remaining(now):.2f} s after a failure"
                )
            server.down.failed(now)  # this call probes; the others fail fast meanwhile
        loop = asyncio.get_running_loop()
        try:
            result = await loop.run_in_executor(self._executor, self._attempts, server, fn)
        except _SERVER_DOWN as exc:
            later = self._clock.monotonic()
            if server.failed(now, later, isinstance(exc, ConnectionRefusedError)):
                server.down.failed(later)
            raise TierError(f"memcached {server.id}: {op} failed: {exc!r}") from exc
        except (MemcacheError, RuntimeError) as exc:  # RuntimeError: pool or executor closed
            server.answered()  # it answered, if only with an error
            raise TierError(f"memcached {server.id}: {op} failed: {exc!r}") from exc
        server.answered()
        return result

    def _attempts(self, server: Server, fn: Callable[[PooledClient], T]) -> T:
        """In a worker thread: `fn`, moving past pooled connections the server closed.

        Such a connection fails at once and is discarded by the pool, so this costs no
        timeout; after ``pool_size`` of them the next attempt uses a new connection."""
        for _ in range(self._pool_size):
            try:
                return fn(server.client)
            except _STALE_CONNECTION:
                continue
        return fn(server.client)

    async def close(self) -> None:
        """Wait for calls in flight (each bounded by the timeout), then drop connections.
        Idempotent."""
        if self._closed:
            return
        self._closed = True
        await asyncio.to_thread(self._executor.shutdown, wait=True)
        for server in self.servers:
            server.client.close()
