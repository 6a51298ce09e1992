"""Rendezvous (highest-random-weight) hashing: which of n servers owns a key.

Every server gets a score for a key - a stable 64-bit hash of the server id and the key
(BLAKE2b, so the choice is the same in every process, on every platform, across
restarts; Python's `hash()` is salted per process and would not do) - and the key belongs
to the highest score. Adding a server moves only the keys it now wins (~1/(n+1) of them);
removing one moves only the keys it owned. Costs O(n) hashes per lookup, which is right for
the handful of servers a cache cluster has.

What this does NOT guarantee: an exactly even spread (it is statistical: with 10k keys on
4 servers each share is within a few percent of 1/4), weights (every server counts the
same), or anything about keys when the set of servers differs between processes - every
sidecar must be given the same server list to agree on owners.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

_DIGEST_BYTES = 8


class RendezvousHash:
    """An immutable set of server ids and the owner of any key among them."""

    __slots__ = ("_hashers", "_nodes")

    def __init__(self, nodes: Iterable[str]) -> None:
        self._nodes = tuple(nodes)
        if not self._nodes:
            raise ValueError("rendezvous hashing needs at least one server")
        seen: set[str] = set()
        for node in self._nodes:
            if node in seen:
                raise ValueError(f"duplicate server id {node!r}")
            seen.add(node)
        # The server id is hashed once; each lookup copies its state and adds the key.
        # The NUL separator keeps ("ab", "c") and ("a", "bc") apart.
        self._hashers = tuple(
            hashlib.blake2b(node.encode() + b"\x00", digest_size=_DIGEST_BYTES)
            for node in self._nodes
        )

    @property
    def nodes(self) -> tuple[str, ...]:
        """The server ids, in the order given."""
        return self._nodes

    def score(self, node_index: int, key: bytes) -> int:
        """The weight of server `node_index` for `key` (a 64-bit unsigned integer)."""
        h = self._hashers[node_index].copy()
        h.update(key)
        return int.from_bytes(h.digest(), "big")

    def index_for(self, key: bytes) -> int:
        """The index (into `nodes`) of the server that owns `key`."""
        if len(self._hashers) == 1:
            return 0
        best, best_score = 0, -1
        for i in range(len(self._hashers)):
            s = self.score(i, key)
            if s > best_score:  # ties (p ~ 2**-64) go to the earlier server
                best, best_score = i, s
        return best

    def node_for(self, key: bytes) -> str:
        """The id of the server that owns `key`."""
        return self._nodes[self.index_for(key)]
