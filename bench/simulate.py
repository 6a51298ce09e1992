"""Trace-replay simulator: hit ratio is measured, not argued.

``simulate`` replays ``(key, size)`` accesses against a fresh policy the way the memory
tier drives it: ``record`` on every access, then ``on_hit`` on a hit or ``add`` on a
miss (keys returned for eviction are already gone from the policy). ``LruPolicy`` is a
plain byte-bounded, always-admit LRU baseline; ``zipf_trace`` makes seeded synthetic
traces with one-hit-wonder scans.

NOT guaranteed: realism. The traces are synthetic; a key's size is the one of the
miss that inserted it (a later access with a different size counts its own size in
``byte_hit_ratio`` but does not resize the entry); there is no expiry or deletion.
"""

from __future__ import annotations

import random
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterable, Iterator
from dataclasses import dataclass
from itertools import accumulate
from typing import Generic, Protocol, TypeVar

__all__ = ["LruPolicy", "SimPolicy", "SimResult", "simulate", "zipf_trace"]

K = TypeVar("K", bound=Hashable)
K_contra = TypeVar("K_contra", contravariant=True)


class SimPolicy(Protocol[K_contra]):
    """The slice of a policy the simulator drives (``WindowTinyLfuPolicy`` fits)."""

    def __contains__(self, key: object, /) -> bool: ...
    def record(self, key: K_contra) -> None: ...
    def on_hit(self, key: K_contra) -> None: ...
    def add(self, key: K_contra, size: int) -> object: ...


@dataclass(frozen=True, slots=True)
class SimResult:
    """Outcome of one replay; ratios are 0.0 for an empty trace."""

    hits: int
    misses: int
    hit_ratio: float
    byte_hit_ratio: float

    @classmethod
    def of(cls, hits: int, misses: int, hit_bytes: int, total_bytes: int) -> SimResult:
        """The result of `hits` and `misses`, `hit_bytes` of `total_bytes` served by hits."""
        total = hits + misses
        return cls(
            hits=hits,
            misses=misses,
            hit_ratio=hits / total if total else 0.0,
            byte_hit_ratio=hit_bytes / total_bytes if total_bytes else 0.0,
        )


def simulate(
    policy_factory: Callable[[], SimPolicy[K]], trace: Iterable[tuple[K, int]]
) -> SimResult:
    """Replay ``trace`` against ``policy_factory()`` and count hits (by requests and bytes)."""
    policy = policy_factory()
    hits = misses = hit_bytes = total_bytes = 0
    for key, size in trace:
        total_bytes += size
        policy.record(key)
        if key in policy:
            hits += 1
            hit_bytes += size
            policy.on_hit(key)
        else:
            misses += 1
            policy.add(key, size)
    return SimResult.of(hits, misses, hit_bytes, total_bytes)


class LruPolicy(Generic[K]):
    """Baseline: one byte-bounded LRU that admits everything that fits ``max_bytes``."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.used_bytes = 0
        self._entries: OrderedDict[K, int] = OrderedDict()

    def __contains__(self, key: object) -> bool:
        return key in self._entries

    def __len__(self) -> int:
        return len(self._entries)

    def record(self, key: K) -> None:
        """No frequency is kept."""

    def on_hit(self, key: K) -> None:
        self._entries.move_to_end(key)

    def remove(self, key: K) -> bool:
        """Forget `key`; False when it was not held."""
        size = self._entries.pop(key, None)
        if size is None:
            return False
        self.used_bytes -= size
        return True

    def add(self, key: K, size: int) -> list[tuple[K, object]]:
        if size > self.max_bytes:
            return [(key, "rejected")]
        entries = self._entries
        evicted: list[tuple[K, object]] = []
        while self.used_bytes + size > self.max_bytes:
            victim, vsize = entries.popitem(last=False)
            self.used_bytes -= vsize
            evicted.append((victim, "size"))
        entries[key] = size
        self.used_bytes += size
        return evicted


def zipf_trace(
    *,
    n_keys: int,
    n_accesses: int,
    alpha: float = 0.9,
    seed: int = 0,
    scan_every: int = 0,
    scan_length: int = 0,
    min_size: int = 256,
    max_size: int = 64 * 1024,
) -> Iterator[tuple[str, int]]:
    """Seeded Zipf(``alpha``) accesses over ``n_keys`` keys, interleaved with scans.

    Key ``k`` (rank ``k``, 0 most popular) has a fixed log-uniform size in
    ``[min_size, max_size]``. Every ``scan_every`` Zipf accesses (0: never) a scan of
    ``scan_length`` never-repeated keys (one-hit wonders, random sizes) is emitted;
    scan accesses are *extra*, so the trace holds ``n_accesses`` Zipf accesses plus
    the scans. Ranks are shuffled over key names so popularity does not follow
    insertion order.
    """
    rng = random.Random(seed)
    ratio = max_size / min_size
    sizes = [int(min_size * ratio ** rng.random()) for _ in range(n_keys)]
    names = [f"k{i}" for i in range(n_keys)]
    rng.shuffle(names)
    cum = list(accumulate(1.0 / (rank + 1) ** alpha for rank in range(n_keys)))
    ranks = rng.choices(range(n_keys), cum_weights=cum, k=n_accesses)
    scan_id = 0
    for i, rank in enumerate(ranks):
        if scan_every and i and i % scan_every == 0:
            for _ in range(scan_length):
                yield f"scan{scan_id}", int(min_size * ratio ** rng.random())
                scan_id += 1
        yield names[rank], sizes[rank]
