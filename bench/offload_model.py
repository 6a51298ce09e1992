"""The clusters `python -m bench offload` replays: per-node LRUs against Strata's tiers.

Pure (no servers, no clock): a trace of requests, each already routed to a
node (`round_robin`, `random_nodes`), is replayed against a cluster, which counts the origin
requests it makes.

`PerNodeLru` is Kong proxy-cache's model: each node has its own byte-bounded LRU (a lua
shared dict: ``ngx.shared.DICT:set`` evicts least recently used items when the zone is full;
Kong 3.9 ``kong/plugins/proxy-cache/strategies/memory.lua``); a miss on a node is an origin
request even when another node holds the key, and every miss is stored on that node.

`StrataCluster` replays what the engine does for each request, per node (one sidecar per
gateway node) over one shared tier:

* lookup (`sidecar.engine.reads`): the key is counted once in the node's frequency sketch
  (`Reads.lookup`; the one sketch per sidecar that placement and the memory tier's TinyLFU
  admission share, `sidecar.policy.shared`, sized as `sidecar.app.build_engine` sizes it);
  the memory tier is read first (`MemoryTier.get_now`: ``record``, then ``on_hit`` on a hit);
  on a memory miss the shared tier is read, and a shared hit is copied into the memory tier
  (`Reads._read_below`: the memory tier always gets the backfill, the shared tier answered).
* miss: one origin request, then the plugin's store (`sidecar.engine.stores`): the memory
  tier always (its W-TinyLFU admission decides whether it stays), the shared tier only when
  `sidecar.engine.placement.PlacementPolicy` picks it for the entry's raw size and the key's
  lookup count on this node (``shared_min_hits``, 2 by default: a key looked up once on a
  node is not written to shared RAM from there).
* room (`sidecar.engine.budgets`): while the shared tier holds less than ``room_fraction``
  of its bytes, a miss's store goes there from the key's first lookup (the sidecar samples
  Redis' usage every few seconds; here it is exact after every request). 0 (the class's
  default): never.
* promotion (`sidecar.engine.promotion`): the memory hit whose lookup brings the key's count
  to ``shared_min_hits`` (on a node that did not promote it or read it from shared RAM
  among its last `RECENT_KEYS` such keys) writes the entry to the shared tier placement
  picks for it (the engine does it in a task of its own; here at once, as if it landed
  before the next request).

The shared tier (Redis) is a byte-bounded exact LRU (`bench.simulate.LruPolicy`), touched on
every hit. Redis' ``allkeys-lru`` is approximate (it evicts the best of 5 sampled keys), so
the real tier evicts somewhat worse than this; the deploy stack runs ``volatile-ttl``,
which with equal TTLs evicts the oldest stored first (FIFO: a hit does not save a key),
worse again for hot keys.

The memory tier's admission coin (TinyLFU's anti-flooding escape) is seeded per node, so a
replay repeats for one Python hash seed (the sketch hashes with ``hash``).

Not guaranteed: anything about time (no expiry, no purges, no stale entries, no
coalescing: requests are replayed one at a time, so two nodes never miss one key at once);
that stores never fail; per-key overhead of Redis or of the shared dict (both sides are
charged their payload only; the memory tier is charged what the real tier charges, see
`bench.offload_sizes`); the plugin server's near-cache (Strata's, in front of the sidecar:
RAM beyond the compared budget, so left out).
"""

from __future__ import annotations

import random
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from bench.simulate import LruPolicy
from sidecar.engine.engine import FREQUENCY_CAPACITY
from sidecar.engine.placement import PlacementPolicy
from sidecar.engine.promotion import RECENT_KEYS
from sidecar.policy import FrequencySketch, WindowTinyLfuPolicy
from sidecar.policy.admission import SharedTinyLfuAdmitter
from sidecar.tiers.base import NODE_LOCAL, SHARED_RAM
from sidecar.tiers.memory import SKETCH_ENTRIES_PER_MIB

__all__ = [
    "INFINITE",
    "Cluster",
    "Counts",
    "ObjectSize",
    "PerNodeLru",
    "StrataCluster",
    "memory_policy",
    "per_1000",
    "random_nodes",
    "replay",
    "round_robin",
    "sketch_capacity",
]

#: A byte budget no trace here reaches ("infinite RAM").
INFINITE = 1 << 62
_MIB = 1024**2


@dataclass(frozen=True, slots=True)
class ObjectSize:
    """One response's bytes in each place: `naive` in Kong's shared dict, `memory` as the
    memory tier charges it, `shared` in Redis, `entry` the raw size placement decides by
    (`sidecar.engine.placement.entry_size`)."""

    naive: int
    memory: int
    shared: int
    entry: int

    @classmethod
    def same(cls, size: int) -> ObjectSize:
        """`size` bytes everywhere (the "architecture only" comparison)."""
        return cls(size, size, size, size)


@dataclass(slots=True)
class Counts:
    """What a replay counted. `cold_on_node`: origin requests for a key's first request on
    its node (a per-node cache cannot avoid them: up to one per node and key);
    `cold_in_cluster`: for a key's first request anywhere (nothing can avoid them)."""

    requests: int = 0
    origin: int = 0
    memory_hits: int = 0
    shared_hits: int = 0
    cold_on_node: int = 0
    cold_in_cluster: int = 0

    def as_dict(self) -> dict[str, float]:
        return {
            "requests": self.requests,
            "origin": self.origin,
            "origin_per_1000": round(per_1000(self.origin, self.requests), 2),
            "memory_hits": self.memory_hits,
            "shared_hits": self.shared_hits,
            "cold_on_node": self.cold_on_node,
            "cold_in_cluster": self.cold_in_cluster,
        }


def per_1000(count: int, requests: int) -> float:
    """`count` per 1,000 of `requests` (0.0 for no requests)."""
    return 1000.0 * count / requests if requests else 0.0


def round_robin(n_requests: int, nodes: int) -> list[int]:
    """The node of each request as a round-robin balancer sends them: 0, 1, .., 0, 1, .."""
    return [i % nodes for i in range(n_requests)]


def random_nodes(n_requests: int, nodes: int, seed: int) -> list[int]:
    """The node of each request, uniformly at random (seeded)."""
    rng = random.Random(seed)
    return [rng.randrange(nodes) for _ in range(n_requests)]


class Cluster(Protocol):
    """A cluster's caches: `request` answers where the response came from."""

    def request(self, node: int, key: bytes, size: ObjectSize) -> str:
        """``"memory"``, ``"shared"`` or ``"origin"`` (the cluster stored what it fetched)."""
        ...


class PerNodeLru:
    """Kong proxy-cache: one LRU of `node_bytes` (naive sizes) per node, nothing shared."""

    def __init__(self, nodes: int, node_bytes: int) -> None:
        self._caches = [LruPolicy[bytes](node_bytes) for _ in range(nodes)]

    def request(self, node: int, key: bytes, size: ObjectSize) -> str:
        cache = self._caches[node]
        if key in cache:
            cache.on_hit(key)
            return "memory"
        cache.add(key, size.naive)
        return "origin"


@dataclass(frozen=True, slots=True)
class _Tier:
    """What placement reads of a tier (`sidecar.engine.placement.Placeable`)."""

    name: str
    capabilities: frozenset[str]


_TIERS = (_Tier("memory", frozenset({NODE_LOCAL})), _Tier("redis", frozenset({SHARED_RAM})))
_REDIS = frozenset({"redis"})


def sketch_capacity(memory_bytes: int) -> int:
    """The keys a sidecar's sketch is sized for (as `sidecar.app.build_engine` does)."""
    return max(FREQUENCY_CAPACITY, memory_bytes // _MIB * SKETCH_ENTRIES_PER_MIB)


def memory_policy(
    memory_bytes: int, sketch: FrequencySketch, rng: random.Random
) -> WindowTinyLfuPolicy[bytes]:
    """The memory tier's policy in a sidecar (`sidecar.policy.shared.shared_policy_factory`
    with ``tinylfu``), its anti-flooding coin drawn from `rng` so that a replay repeats."""
    return WindowTinyLfuPolicy(memory_bytes, SharedTinyLfuAdmitter(sketch, rng))


class StrataCluster:
    """Strata: per node a memory tier of `memory_bytes` (W-TinyLFU over the node's sketch)
    in front of one shared LRU of `shared_bytes`; see the module doc for the flow. Node
    ``n``'s admission coin is ``random.Random(seed + n)``."""

    def __init__(
        self,
        nodes: int,
        memory_bytes: int,
        shared_bytes: int,
        shared_min_hits: int = 2,
        seed: int = 0,
        room_fraction: float = 0.0,
    ) -> None:
        self._sketches = [FrequencySketch(sketch_capacity(memory_bytes)) for _ in range(nodes)]
        self._memory = [
            memory_policy(memory_bytes, sketch, random.Random(seed + n))
            for n, sketch in enumerate(self._sketches)
        ]
        self._shared = LruPolicy[bytes](shared_bytes)
        self._placement = PlacementPolicy(shared_min_hits=shared_min_hits)
        self._room_below = room_fraction * shared_bytes
        #: Per node: keys it promoted or read from shared RAM lately (`Promoter`'s record).
        self._known: list[OrderedDict[bytes, None]] = [OrderedDict() for _ in range(nodes)]

    def request(self, node: int, key: bytes, size: ObjectSize) -> str:
        sketch = self._sketches[node]
        memory = self._memory[node]
        counted = sketch.increment(key)  # Reads.lookup: one count per lookup
        memory.record(key)  # MemoryTier.get_now (counts nothing: the admitter is shared)
        shared = self._shared
        if key in memory:
            memory.on_hit(key)
            threshold = self._placement.shared_min_hits
            known = self._known[node]
            if counted == threshold >= 2 and key not in known:  # Promoter.memory_hit
                placed = self._placement.tiers_for(size.entry, counted, _TIERS)
                if "redis" in placed:
                    shared.remove(key)
                    shared.add(key, size.shared)
                    _remember(known, key)
            return "memory"
        if key in shared:
            shared.on_hit(key)
            memory.add(key, size.memory)  # Reads._read_below: backfill into memory
            _remember(self._known[node], key)  # Promoter.found_shared
            return "shared"
        roomy = _REDIS if shared.used_bytes < self._room_below else frozenset()
        frequency = sketch.frequency(key)  # Stores.store reads it again
        placed = self._placement.tiers_for(size.entry, frequency, _TIERS, roomy=roomy)
        memory.add(key, size.memory)  # Stores._write: memory always
        if "redis" in placed:
            shared.add(key, size.shared)
        return "origin"


def _remember(known: OrderedDict[bytes, None], key: bytes) -> None:
    known[key] = None
    known.move_to_end(key)
    if len(known) > RECENT_KEYS:
        known.popitem(last=False)


def replay(
    cluster: Cluster,
    keys: Sequence[bytes],
    nodes: Sequence[int],
    sizes: Mapping[bytes, ObjectSize],
) -> Counts:
    """Send request i (`keys[i]`) to node `nodes[i]` of `cluster`; count the outcomes."""
    if len(keys) != len(nodes):
        raise ValueError(f"{len(keys)} keys but {len(nodes)} nodes")
    counts = Counts(requests=len(keys))
    seen_on: set[tuple[int, bytes]] = set()
    seen: set[bytes] = set()
    for key, node in zip(keys, nodes, strict=True):
        answer = cluster.request(node, key, sizes[key])
        first_on_node = (node, key) not in seen_on
        first = key not in seen
        if first_on_node:
            seen_on.add((node, key))
            seen.add(key)
        if answer == "memory":
            counts.memory_hits += 1
        elif answer == "shared":
            counts.shared_hits += 1
        else:
            counts.origin += 1
            counts.cold_on_node += first_on_node
            counts.cold_in_cluster += first
    return counts
