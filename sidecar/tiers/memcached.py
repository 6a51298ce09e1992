"""L2 on Memcached: entries shared by every sidecar, spread over servers by rendezvous hash.

Keys. Memcached keys are at most 250 bytes of printable non-space ASCII, Strata keys are
arbitrary bytes of any length. A Strata key is therefore stored under
``{namespace}:`` + base64url(sha256(key)) and the key itself travels inside the value:

    value = key_len (4 bytes, big-endian) + key + codec.encode(entry)

`get` compares the stored key with the requested one, so a SHA-256 collision (or a value
some other program wrote under our name) is a miss, never another key's entry. A value
that cannot be read (bad framing, other key, `CorruptEntryError`) is deleted, reported as
``evicted("memcached", "corrupt", 1)`` and answered as a miss.

Servers (`sidecar.tiers.memcached_pool`). Each key belongs to one server, chosen by
rendezvous hash; pymemcache is blocking, so every call runs on a small thread pool
(encoding and decoding run there too, keeping the event loop free). A server that refuses
connections, or fails twice in a row, is marked down for ``dead_retry_s`` (1 s): calls for
its keys raise `TierError` at once, and the first call after that window probes it again.
A server that answers ``SERVER_ERROR out of memory storing object`` (its slab class for
that size is full and nothing can be evicted, e.g. ``-M``) is healthy: that set is
NOT_ADMITTED, not an error. A restarted server is used again without recreating the tier.

What this tier does NOT guarantee:

* That an entry is still there: Memcached evicts by LRU whenever it likes, and expiry has
  1 s granularity (entries are sent with ceil(seconds left), so Memcached may keep one up
  to ~1 s longer - `get` drops those itself - or, by its coarse clock, drop it up to ~1 s
  earlier). Lifetimes above 30 days are sent as absolute Unix times, so they rely on the
  server's clock agreeing with ours.
* Any enumeration: Memcached cannot list keys, so `capabilities` has neither
  ``PREFIX_DELETE`` nor ``TAG_DELETE`` and `delete_prefix` / `delete_tag` drop nothing and
  answer 0. The engine purges those by other
  means (tag generation counters), not through this tier.
* Availability of a key while its server is down: keys are never moved to another server
  (a moved key would miss invalidations sent while its owner was away, then serve stale
  data when the owner returns); the engine treats the `TierError` as "no answer".
* Exact counts: `delete` may answer False for a key it did delete when a closed connection
  made it resend; purging a corrupt value may race with a concurrent good write and drop it.
  `snapshot` reports only what this process saw (no entry or byte counts: those would need
  I/O).
* A hard deadline. Connecting and each socket read or write are bounded by ``timeout_s``,
  so one call to a hung server costs about ``timeout_s`` (up to twice that if it must also
  connect); calls beyond ``pool_size`` at once queue for a thread. Host names that need a
  slow DNS lookup are not covered by ``timeout_s`` at all: give IP addresses.
* That `set` answers TOO_LARGE while the key's server is marked down: it raises `TierError`
  like every other call. A refused (too large) entry also deletes the value it would have
  replaced, as the memory tier does, and that delete needs the server.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import struct

from pymemcache.client.base import PooledClient
from pymemcache.exceptions import MemcacheServerError

from sidecar.core.clock import Clock
from sidecar.core.errors import TierError
from sidecar.core.model import CachedResponse, TierSnapshot, Written, logical_bytes
from sidecar.core.observer import NullObserver, Observer
from sidecar.tiers import codec
from sidecar.tiers.base import MEASURABLE, SHARED_RAM, SetStatus
from sidecar.tiers.codec import CorruptEntryError
from sidecar.tiers.memcached_pool import Server, ServerPool

#: Memcached reads an expiry above this many seconds as an absolute Unix time.
MAX_RELATIVE_EXPIRY_S = 30 * 24 * 3600
MAX_KEY_BYTES = 250
_KEY_LEN = struct.Struct(">I")
_DIGEST_KEY_CHARS = 43  # base64url of 32 bytes, unpadded


class ServerListError(ValueError):
    """One item of a server list is refused. ``str()`` quotes the item; `position`
    (1-based) and `reason` (a phrase such as "is not HOST:PORT") name it without quoting it,
    for messages that must not echo what may be a password."""

    def __init__(self, position: int, item: str, reason: str) -> None:
        super().__init__(f"memcached server {item!r} {reason}")
        self.position = position
        self.reason = reason


def parse_servers(text: str) -> list[tuple[str, int]]:
    """``"host:port,host:port"`` (IPv6 as ``[::1]:11211``) as ``(host, port)`` pairs: the
    one parser of the ``memcached_servers`` setting (the configuration calls it too).

    Raises `ServerListError` naming the offending item. Whitespace around items is ignored;
    an empty item, a missing or out-of-range port, an unbracketed IPv6 address, a user or
    password (``user:pw@host``) or a duplicate server is refused. Host names are not
    resolved here.
    """
    servers: list[tuple[str, int]] = []
    for position, raw in enumerate(text.split(","), 1):
        item = raw.strip()
        reason = _server_problem(item)
        if reason is None and _host_port(item) in servers:
            reason = "is listed twice"
        if reason is not None:
            raise ServerListError(position, item, reason)
        servers.append(_host_port(item))
    return servers


def _server_problem(item: str) -> str | None:
    """Why `item` is not a ``host:port`` server (a phrase), or None if it is one."""
    if not item:
        return "is empty"
    if "@" in item:
        return "takes no user or password (expected HOST:PORT)"
    host, sep, port = item.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
        if not host or "[" in host or "]" in host:
            return "has a bad IPv6 address"
    elif ":" in host:
        return "has an IPv6 address without brackets (write [addr]:port)"
    if not sep or not host or any(c.isspace() or c in "[]/" for c in host):
        return "is not HOST:PORT"
    if not port.isascii() or not port.isdigit() or not 0 < int(port) < 65536:
        return "has a port outside 1-65535"
    return None


def _host_port(item: str) -> tuple[str, int]:
    """A ``host:port`` item `_server_problem` accepted, as a pair (IPv6 unbracketed)."""
    host, _, port = item.rpartition(":")
    return host.removeprefix("[").removesuffix("]"), int(port)


def storage_key(namespace: str, key: bytes) -> bytes:
    """The Memcached key of Strata key `key`: ``{namespace}:`` + base64url(sha256(key))."""
    digest = base64.urlsafe_b64encode(hashlib.sha256(key).digest()).rstrip(b"=")
    return namespace.encode("ascii") + b":" + digest


def expiry_seconds(expires_at_ms: int, now_ms: int) -> int | None:
    """The Memcached ``exptime`` for an entry, or None if it has already expired.

    Seconds left, rounded up; beyond 30 days the absolute Unix time (rounded up), which
    is how Memcached reads values that large.
    """
    left_ms = expires_at_ms - now_ms
    if left_ms <= 0:
        return None
    seconds = -(-left_ms // 1000)
    if seconds > MAX_RELATIVE_EXPIRY_S:
        return -(-expires_at_ms // 1000)
    return seconds


def pack_value(key: bytes, entry: CachedResponse) -> bytes:
    """The stored value: the Strata key (length-prefixed) followed by the encoded entry."""
    return _KEY_LEN.pack(len(key)) + key + codec.encode(entry)


def unpack_value(key: bytes, data: bytes) -> CachedResponse:
    """The entry in `data` if it was stored for `key`; `CorruptEntryError` otherwise."""
    if len(data) < _KEY_LEN.size:
        raise CorruptEntryError("value shorter than its key header")
    (key_len,) = _KEY_LEN.unpack_from(data)
    start = _KEY_LEN.size
    if key_len != len(key) or data[start : start + key_len] != key:
        raise CorruptEntryError("value was stored for another key")
    return codec.decode(data[start + key_len :])


class MemcachedTier:
    """The shared Memcached tier. See the module docstring for what it does not guarantee."""

    def __init__(
        self,
        servers: list[tuple[str, int]],
        clock: Clock,
        *,
        namespace: str = "strata",
        timeout_s: float = 0.05,
        max_item_bytes: int = 1024 * 1024 - 512,
        pool_size: int = 16,
        observer: Observer | None = None,
        dead_retry_s: float = 1.0,
    ) -> None:
        if not servers:
            raise ValueError("memcached: no servers given")
        if not namespace.isascii() or not namespace.isprintable() or " " in namespace:
            raise ValueError(f"memcached namespace {namespace!r}: printable ASCII, no spaces")
        if len(namespace) + 1 + _DIGEST_KEY_CHARS > MAX_KEY_BYTES:
            raise ValueError(f"memcached namespace {namespace!r} is too long")
        if timeout_s <= 0 or pool_size < 1 or max_item_bytes < 1 or dead_retry_s < 0:
            raise ValueError("memcached: timeout_s, pool_size, max_item_bytes must be > 0, "
                             "dead_retry_s >= 0")  # fmt: skip
        self._clock = clock
        self._namespace = namespace
        self._max_item_bytes = max_item_bytes
        self._observer = observer or NullObserver()
        self._server_limit: int | None = None
        self._pool = ServerPool(
            servers, clock, timeout_s=timeout_s, pool_size=pool_size, dead_retry_s=dead_retry_s
        )
        self._hits = 0
        self._misses = 0
        self._corrupt = 0
        self._too_large = 0

    @property
    def name(self) -> str:
        return "memcached"

    @property
    def capabilities(self) -> frozenset[str]:
        return frozenset({SHARED_RAM, MEASURABLE})

    def storage_key(self, key: bytes) -> bytes:
        """The Memcached key `key` is stored under."""
        return storage_key(self._namespace, key)

    def server_for(self, key: bytes) -> str:
        """The id of the server that holds `key`."""
        return self._pool.server_id_for(self.storage_key(key))

    async def open(self) -> None:
        """Ask every server for its version (even one marked down). `TierError` only if
        none answers; those that fail are marked down and probed again later."""
        results = await asyncio.gather(
            *(
                self._pool.call(s, "open", lambda c: c.version(), probe=True)
                for s in self._pool.servers
            ),
            return_exceptions=True,
        )
        failures = [r for r in results if isinstance(r, BaseException)]
        for failure in failures:
            if not isinstance(failure, TierError):
                raise failure
        if len(failures) == len(self._pool.servers):
            raise TierError(f"no memcached server answered: {failures[0]}") from failures[0]

    async def get(self, key: bytes) -> CachedResponse | None:
        server, mkey = self._route(key)

        def fetch(client: PooledClient) -> tuple[CachedResponse | None, bool]:
            data = client.get(mkey)
            if data is None:
                return None, False
            try:
                return unpack_value(key, data), False
            except CorruptEntryError:
                client.delete(mkey)
                return None, True

        entry, corrupt = await self._pool.call(server, "get", fetch)
        if corrupt:
            self._corrupt += 1
            self._observer.evicted(self.name, "corrupt", 1)
        if entry is None or entry.expires_at_ms <= self._clock.now_ms():
            self._misses += 1
            return None
        self._hits += 1
        return entry

    async def set(self, key: bytes, entry: CachedResponse) -> SetStatus:
        expire = expiry_seconds(entry.expires_at_ms, self._clock.now_ms())
        if expire is None:
            return SetStatus.NOT_ADMITTED
        server, mkey = self._route(key)
        packed: list[bytes] = []

        def store(client: PooledClient) -> SetStatus:
            value = pack_value(key, entry)
            packed.append(value)
            if len(value) > self._max_item_bytes:
                client.delete(mkey)  # a replaced entry must not outlive its refusal
                return SetStatus.TOO_LARGE
            try:
                client.set(mkey, value, expire=expire)
            except MemcacheServerError as exc:
                if "too large" in str(exc):
                    return SetStatus.TOO_LARGE  # the server's -I is below max_item_bytes
                if "out of memory" not in str(exc):
                    raise
                client.delete(mkey)  # no room now: the old value must not outlive the refusal
                return SetStatus.NOT_ADMITTED
            return SetStatus.STORED

        status = await self._pool.call(server, "set", store)
        if status is SetStatus.TOO_LARGE:
            self._too_large += 1
        if status is not SetStatus.STORED:
            self._observer.evicted(self.name, "rejected", 1)
        else:
            value, raw = packed[-1], len(entry.body)
            stored = codec.stored_body_len(value, _KEY_LEN.size + len(key))
            logical = logical_bytes(key, entry)
            self._observer.written(self.name, Written(logical, raw, raw, stored, len(value)))
        return status

    async def delete(self, key: bytes) -> bool:
        server, mkey = self._route(key)
        return bool(await self._pool.call(server, "delete", lambda c: c.delete(mkey)))

    async def delete_prefix(self, prefix: bytes) -> int:
        """Not possible on Memcached (no key listing): drops nothing, answers 0."""
        return 0

    async def delete_tag(self, tag: str) -> int:
        """Not possible on Memcached (no key listing): drops nothing, answers 0."""
        return 0

    async def sweep(self) -> int:
        """Memcached expires entries by itself: nothing to do, answers 0."""
        return 0

    async def usage(self) -> int:
        """Bytes of items the servers hold now: ``stats`` ``bytes`` summed over every
        server (1 RTT each, concurrently; the whole servers', not only this namespace's).
        A server that fails is left out unless all fail (then `TierError`). For byte
        budgets (`sidecar.engine.budgets`)."""

        def read(client: PooledClient) -> tuple[int, int]:
            stats = client.stats()
            used = stats.get(b"bytes", stats.get("bytes", 0))
            limit = stats.get(b"limit_maxbytes", stats.get("limit_maxbytes", 0))
            return int(used), int(limit)

        results = await asyncio.gather(
            *(self._pool.call(s, "stats", read) for s in self._pool.servers),
            return_exceptions=True,
        )
        counted = [r for r in results if isinstance(r, tuple)]
        if not counted:
            failure = next((r for r in results if isinstance(r, BaseException)), None)
            raise TierError(f"memcached usage: no server answered: {failure!r}")
        complete = len(counted) == len(results) and all(limit > 0 for _, limit in counted)
        self._server_limit = sum(limit for _, limit in counted) if complete else None
        return sum(used for used, _ in counted)

    @property
    def server_limit_bytes(self) -> int | None:
        """The servers' summed ``limit_maxbytes`` (``-m``) as the last `usage()` read it;
        None before that, or when a server did not answer it."""
        return self._server_limit

    def snapshot(self) -> TierSnapshot:
        """Counters this process saw; entries/bytes/max_bytes are 0 (unknown without I/O).
        `evictions` counts corrupt values purged, `admission_rejections` TOO_LARGE sets."""
        return TierSnapshot(
            name=self.name,
            entries=0,
            bytes=0,
            max_bytes=0,
            hits=self._hits,
            misses=self._misses,
            evictions=self._corrupt,
            admission_rejections=self._too_large,
        )

    async def close(self) -> None:
        """Wait for calls in flight (each bounded by the timeout), then drop connections."""
        await self._pool.close()

    def _route(self, key: bytes) -> tuple[Server, bytes]:
        mkey = self.storage_key(key)
        return self._pool.server_for(mkey), mkey
