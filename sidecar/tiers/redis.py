"""L2: the shared Redis tier (standalone, TLS, unix socket or Redis Cluster).

Keys (namespace ``ns``, cache key ``K`` as raw bytes, binary-safe):

    ns:e:K    STRING  `codec.encode(entry)`, PX = entry.expires_at_ms - now; when the
                      body, compressed, is at least `BODY_REF_MIN_BYTES`, the value
                      references it instead (`codec.encode_ref`: flag bit 1 + SHA-256)
    ns:b:H    STRING  `codec.encode_body(body)` of the body whose SHA-256 is H (hex), shared
                      by every entry with that body; PTTL >= the longest-lived entry's
    ns:k:K    SET     the entry's tags (only while it has some), same PX as ns:e:K
    ns:t:TAG  SET     keys K that were stored with TAG; PTTL >= the longest member's

URLs: ``redis://``, ``rediss://`` and ``unix://`` as redis-py reads them; a cluster is
``redis+cluster://[user:password@]host:port[,host:port...]`` (``rediss+cluster://`` for
TLS), the listed nodes being only where discovery starts. Every socket read, write and
connect waits at most `timeout_s`, a checkout from the pool (`max_connections`, per node on
a cluster) as long; nothing is retried, so a dead or slow server costs one timeout per
round trip and the engine skips this tier. Every driver error becomes `TierError`.

Cost of each operation (RTT = one network round trip):

* get: 1 RTT: a small Lua script GETs the entry and, if it references a body, the body
  too. On a cluster the two keys live in different slots, which a script may not touch:
  there a referencing entry costs 2 RTTs (GET entry, GET body). An entry whose body is gone
  (expired, evicted) is a miss and costs a second RTT (its purge), as does a corrupt value.
* set: 1 RTT (MULTI/EXEC on a standalone server, a pipeline grouped by node on a cluster)
  of 3 commands, plus 3 for a referenced body (SET NX PX, PEXPIRE NX, PEXPIRE GT: the
  body's TTL is raised to the entry's, never lowered; its bytes are sent on every set even
  when the body is already stored), plus 2 + 3 per tag for a tagged entry; a 2nd RTT
  only when a replaced entry had tags the new one lacks (SREM from those tags' sets).
* delete: 1 RTT (UNLINK of the entry and its tag record).
* delete_tag: SSCAN of the tag's set, then 2 RTTs per 500 members (check, then UNLINK).
* delete_prefix: SCAN MATCH over the whole keyspace of the database (every cluster
  primary), i.e. O(keys in the database, not only in the namespace or the prefix), plus
  1 RTT per 500 victims. Use it for rare purges, not on the request path.
* sweep: nothing (Redis expires keys itself); snapshot: no I/O; usage: 1 RTT
  (``INFO memory``, one per node on a cluster).

Shared bodies are not reference-counted (Redis cannot decrement a count when a key
expires): no delete removes a body key, since other entries may share it (only a get that
finds a body failing its digest unlinks it). The cost: after
a delete, a purge by tag or prefix, or a replacement with another body, the old body stays
in RAM until its own TTL ends - at most the longest remaining lifetime of any entry that
ever referenced it. Bodies under `BODY_REF_MIN_BYTES` stay inline (a body key costs ~100
bytes of key overhead and a second read).

On a cluster no hash tags are used: an entry, its tag record and each tag set live in
slots of their own, so load spreads by key, and every command names a single key (no
CROSSSLOT). A shared hash tag would put a namespace on one shard; a per-key one would not
help tags, whose sets are shared by many keys. The price is atomicity (below). Cache keys
containing ``{...}`` are hashed by that part, as Redis does for any key.

What is NOT guaranteed:

* Atomicity across keys. On a standalone server a set is one MULTI/EXEC (entry, body, tag
  record and tag sets change together) and a get one script; on a cluster a set may store
  an entry without its body (read as a miss), a get may read an entry, see it replaced and
  then find the old body gone (a miss that purges the new entry); also on a cluster its
  commands reach several nodes and a failure can leave a tag set without the entry or the
  reverse. Deletes by tag or prefix are never atomic: an entry written meanwhile may
  survive, or one replaced meanwhile may be dropped (over-invalidation, never a wrong
  answer).
* Exact counts under concurrent writers, or when Redis evicts keys itself (maxmemory): a
  count is the number of entry keys this call removed.
* A tag index free of stale members: `delete` and expiry leave a key in its tag sets until
  those expire; `delete_tag` checks each member's tag record and drops only entries that
  still carry the tag. Two writers changing one key's tags at once may unlist it from a tag
  it still has (it then survives `delete_tag` until it expires).
* Occupancy: `snapshot` reports hits and misses seen by this process; entries and bytes
  live in a server shared with other sidecars and are reported as 0 (unknown).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from types import TracebackType
from typing import Any, cast

from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster

from sidecar.core.clock import Clock
from sidecar.core.errors import TierError
from sidecar.core.model import CachedResponse, TierSnapshot, Written, logical_bytes
from sidecar.core.observer import NullObserver, Observer
from sidecar.tiers import codec
from sidecar.tiers.base import MEASURABLE, PREFIX_DELETE, SHARED_RAM, TAG_DELETE, SetStatus
from sidecar.tiers.redis_conn import DRIVER_ERRORS, connect, is_cluster_url

#: Keys handled per pipeline by delete_tag / delete_prefix, and SCAN's COUNT hint.
BATCH = 500
SCAN_COUNT = 1000
_GLOB_META = re.compile(rb"([*?\[\]\\])")
#: Bodies at least this long after compression are stored once under ``ns:b:<sha256>``
#: (default of the `body_ref_min_bytes` argument). Below it a body stays inline: a body key
#: costs ~100 bytes of its own plus the digest in the entry, and a 2 KB JSON response
#: (~700 bytes compressed) keeps its single-GET, single-key read.
BODY_REF_MIN_BYTES = 1024
#: KEYS[1] = the entry; ARGV[1] = the body key prefix. Returns nil, {entry} or
#: {entry, body-or-nil}. Touches an undeclared key (the body): standalone servers only.
_GET_LUA = """
local v = redis.call('GET', KEYS[1])
if not v then return false end
if string.len(v) >= 40 and string.sub(v, 1, 2) == 'S1' and string.byte(v, 4) % 4 >= 2 then
  local hex = (string.gsub(string.sub(v, -32), '.', function(c)
    return string.format('%02x', string.byte(c)) end))
  return {v, redis.call('GET', ARGV[1] .. hex)}
end
return {v}
"""


def escape_glob(data: bytes) -> bytes:
    """`data` as a literal in a Redis glob pattern (``* ? [ ] \\`` escaped)."""
    return _GLOB_META.sub(rb"\\\1", data)


def _maxmemory(info: Any) -> int | None:
    """``maxmemory`` from an INFO memory reply (summed over a cluster's nodes); None when
    the server has no limit (0) or does not say."""
    if not isinstance(info, dict):
        return None
    nodes = [info] if "maxmemory" in info else [v for v in info.values() if isinstance(v, dict)]
    limits = [int(v.get("maxmemory", 0) or 0) for v in nodes]
    if not limits or any(limit <= 0 for limit in limits):
        return None  # a node without a limit: the whole has none
    return sum(limits)


def _used_memory(info: Any) -> int:
    """``used_memory`` from an INFO reply: a standalone server's dict, or a cluster's dict
    of such dicts by node (summed)."""
    if not isinstance(info, dict):
        raise TierError(f"redis usage: unexpected INFO reply {type(info).__name__}")
    if "used_memory" in info:
        return int(info["used_memory"])
    nodes = [v for v in info.values() if isinstance(v, dict) and "used_memory" in v]
    return sum(int(v["used_memory"]) for v in nodes)


def _written(
    key: bytes,
    entry: CachedResponse,
    value: bytes,
    body: tuple[bytes, bytes] | None,
    new_blob: bytes,
) -> Written:
    """What a set put into Redis: the entry's value, and its body blob when this set
    stored it (a body already there under its digest costs nothing: deduplicated)."""
    raw = len(entry.body)
    if body is None:  # inline: neither shared nor deduplicated
        stored = codec.stored_body_len(value)
        return Written(logical_bytes(key, entry), raw, raw, stored, len(key) + len(value))
    return Written(
        logical_bytes(key, entry),
        raw,
        raw if new_blob else 0,
        codec.stored_body_len(new_blob) if new_blob else 0,
        len(key) + len(value) + len(new_blob),
    )


class _Wrap:
    """Turns any driver error raised in its block into `TierError` (never logs the URL)."""

    __slots__ = ("_op",)

    def __init__(self, op: str) -> None:
        self._op = op

    def __enter__(self) -> None:
        return None

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc is not None and isinstance(exc, DRIVER_ERRORS):
            raise TierError(f"redis {self._op} failed: {type(exc).__name__}: {exc}") from exc


class RedisTier:
    """The shared tier on Redis. See the module docstring for costs and non-guarantees."""

    def __init__(
        self,
        url: str,
        clock: Clock,
        *,
        namespace: str = "strata",
        timeout_s: float = 0.05,
        max_connections: int = 64,
        observer: Observer | None = None,
        body_ref_min_bytes: int = BODY_REF_MIN_BYTES,
    ) -> None:
        self._clock = clock
        self._ref_min = body_ref_min_bytes
        self._observer = observer or NullObserver()
        self._server_limit: int | None = None
        ns = namespace.encode()
        self._e, self._k, self._t = ns + b":e:", ns + b":k:", ns + b":t:"
        self._b = ns + b":b:"
        self._hits = 0
        self._misses = 0
        self._cluster = is_cluster_url(url)
        self._client: Redis | RedisCluster = connect(url, timeout_s, max_connections)
        self._get_script = self._client.register_script(_GET_LUA)

    @property
    def name(self) -> str:
        return "redis"

    @property
    def capabilities(self) -> frozenset[str]:
        return frozenset({PREFIX_DELETE, TAG_DELETE, SHARED_RAM, MEASURABLE})

    async def open(self) -> None:
        """PING once; `TierError` if unreachable (later calls connect again)."""
        with _Wrap("open"):
            await self._client.ping()

    async def get(self, key: bytes) -> CachedResponse | None:
        raw, blob = await self._read(key)
        if raw is None:
            self._misses += 1
            return None
        digest = codec.body_ref(raw)
        if digest is not None and blob is None:  # the body expired or was evicted
            with _Wrap("get"):
                await self._unlink([key])
            self._misses += 1
            return None
        try:
            entry = codec.decode(raw, blob)
        except codec.CorruptEntryError:
            with _Wrap("get"):
                await self._unlink([key])
                if digest is not None:  # a body that fails its digest is no one's
                    await self._client.execute_command("UNLINK", self._body_key(digest))
            self._observer.evicted(self.name, "corrupt", 1)
            self._misses += 1
            return None
        if entry.expires_at_ms <= self._clock.now_ms():
            self._misses += 1
            return None
        self._hits += 1
        return entry

    async def set(self, key: bytes, entry: CachedResponse) -> SetStatus:
        """Store with PX = the entry's remaining lifetime; an already expired entry is
        NOT_ADMITTED (and the previous value, if any, is left to its own expiry)."""
        px = entry.expires_at_ms - self._clock.now_ms()
        if px <= 0:
            return SetStatus.NOT_ADMITTED
        value, body = codec.encode_split(entry, self._ref_min)
        tags = sorted({t.encode() for t in entry.tags})
        record = self._k + key
        pipe = self._client.pipeline(transaction=not self._cluster)
        pipe.set(self._e + key, value, px=px)
        pipe.smembers(record)
        pipe.execute_command("UNLINK", record)  # pipe.unlink is a coroutine on a cluster
        if tags:
            pipe.sadd(record, *tags)
            pipe.pexpire(record, px)
        for tag in tags:
            index = self._t + tag
            pipe.sadd(index, key)
            pipe.pexpire(index, px, nx=True)  # a new set has no TTL, which GT never beats
            pipe.pexpire(index, px, gt=True)
        if body is not None:
            name = self._body_key(body[0])
            pipe.set(name, body[1], px=px, nx=True)  # same digest, same content
            pipe.pexpire(name, px, nx=True)
            pipe.pexpire(name, px, gt=True)  # never shortens a longer-lived sharer's
        with _Wrap("set"):
            results = await pipe.execute()
            dropped = set(results[1]).difference(tags)
            if dropped:
                await self._pipelined(("SREM", self._t + tag, key) for tag in sorted(dropped))
        new_blob = body[1] if body is not None and results[-3] else b""  # SET NX: new
        self._observer.written(self.name, _written(key, entry, value, body, new_blob))
        return SetStatus.STORED

    async def delete(self, key: bytes) -> bool:
        with _Wrap("delete"):
            return await self._unlink([key]) > 0

    async def delete_prefix(self, prefix: bytes) -> int:
        """SCAN MATCH ``ns:e:<prefix>*`` (prefix taken literally), UNLINK in batches.
        O(keys in the database): see the module docstring."""
        pattern = self._e + escape_glob(prefix) + b"*"
        start = len(self._e)
        dropped = 0
        batch: list[bytes] = []
        with _Wrap("delete_prefix"):
            async for name in self._client.scan_iter(match=pattern, count=SCAN_COUNT):
                batch.append(bytes(name)[start:])
                if len(batch) >= BATCH:
                    dropped += await self._unlink(batch)
                    batch = []
            if batch:
                dropped += await self._unlink(batch)
        return dropped

    async def delete_tag(self, tag: str) -> int:
        """Drop the members of the tag's set whose tag record still lists `tag`, then
        remove the members handled from the set (emptied, Redis deletes it)."""
        index, tag_b = self._t + tag.encode(), tag.encode()
        dropped = 0
        with _Wrap("delete_tag"):
            members = [bytes(m) async for m in self._client.sscan_iter(index, count=SCAN_COUNT)]
            for i in range(0, len(members), BATCH):
                batch = members[i : i + BATCH]
                flags = await self._pipelined(("SISMEMBER", self._k + m, tag_b) for m in batch)
                dropped += await self._unlink([m for m, f in zip(batch, flags, strict=True) if f])
                await self._client.srem(index, *batch)
        return dropped

    async def sweep(self) -> int:
        """Redis expires keys itself; stale tag-set members expire with their sets."""
        return 0

    async def usage(self) -> int:
        """Bytes the server holds now: ``INFO memory`` ``used_memory`` (1 RTT), the whole
        server's memory, not only this namespace's keys; on a cluster, summed over the
        nodes that answer. For byte budgets (`sidecar.engine.budgets`)."""
        with _Wrap("usage"):
            info = await self._client.info("memory")
        used = _used_memory(info)
        self._server_limit = _maxmemory(info)
        return used

    @property
    def server_limit_bytes(self) -> int | None:
        """The server's ``maxmemory`` as the last `usage()` read it (None: unlimited, or
        not read yet): what shared admission measures room against (`sidecar.engine.budgets`)."""
        return self._server_limit

    def snapshot(self) -> TierSnapshot:
        """Hits and misses seen by this process; entries/bytes/max_bytes are 0: unknown
        (the server is shared and sampling it would be I/O)."""
        return TierSnapshot(
            name=self.name, entries=0, bytes=0, max_bytes=0, hits=self._hits, misses=self._misses
        )

    async def close(self) -> None:
        with _Wrap("close"):
            await self._client.aclose()

    # -- helpers (callers wrap driver errors) -----------------------------------------

    def _body_key(self, digest: bytes) -> bytes:
        return self._b + digest.hex().encode()

    async def _read(self, key: bytes) -> tuple[bytes | None, bytes | None]:
        """The entry's value and, if it references a body, the body blob (None if gone):
        one script call on a standalone server, two GETs on a cluster."""
        name = self._e + key
        with _Wrap("get"):
            if not self._cluster:
                reply = await self._get_script(keys=[name], args=[self._b])
                if reply is None:
                    return None, None
                parts = cast(list[bytes | None], reply)  # decode_responses is off
                return parts[0], (parts[1] if len(parts) > 1 else None)
            raw = cast(bytes | None, await self._client.get(name))
            if raw is None:
                return None, None
            digest = codec.body_ref(raw)
            if digest is None:
                return raw, None
            return raw, cast(bytes | None, await self._client.get(self._body_key(digest)))

    async def _pipelined(self, commands: Iterable[Sequence[Any]]) -> list[Any]:
        """Run single-key commands in one non-transactional pipeline (grouped by node)."""
        todo = list(commands)
        if not todo:
            return []
        pipe = self._client.pipeline(transaction=False)
        for command in todo:
            pipe.execute_command(*command)
        return list(await pipe.execute())

    async def _unlink(self, keys: Sequence[bytes]) -> int:
        """UNLINK the entries and tag records of `keys`; the number of entries removed."""
        results = await self._pipelined(
            ("UNLINK", prefix + key) for key in keys for prefix in (self._e, self._k)
        )
        return sum(int(n) for n in results[::2])
