"""Admission: the seam that decides whether a new entry may displace a resident one.

Kept separate from eviction (as in Caffeine): the eviction structure proposes a
``(candidate, victim)`` pair, the admitter answers. ``AlwaysAdmit`` turns the
structure into a plain segmented LRU; ``TinyLfuAdmitter`` admits on estimated
popularity.

NOT guaranteed: determinism of ``TinyLfuAdmitter`` unless a seeded ``random.Random``
is injected (the anti-hash-flooding coin is random by design); thread safety.
"""

from __future__ import annotations

import random
import sys
from collections.abc import Hashable
from typing import Protocol, TypeVar

from .sketch import FrequencySketch

__all__ = [
    "HASH_FLOOD_ADMIT_ONE_IN",
    "HASH_FLOOD_THRESHOLD",
    "SKETCH_KEYS_PER_ENTRY",
    "Admitter",
    "AlwaysAdmit",
    "SharedTinyLfuAdmitter",
    "TinyLfuAdmitter",
]

K_contra = TypeVar("K_contra", contravariant=True)

#: The sketch counts this many keys per entry the cache holds: a wider sketch collides
#: less, and the keys just evicted or refused keep a count. `python -m bench hit-ratio`
#: on Zipf traces: 1x -> 4x adds 0.6-1.7 points of hit ratio, 4x -> 8x at most 0.7 more.
SKETCH_KEYS_PER_ENTRY = 4

#: A candidate more popular than this may win a lost comparison by chance ...
HASH_FLOOD_THRESHOLD = 5
#: ... with probability 1/128 (Caffeine's values).
HASH_FLOOD_ADMIT_ONE_IN = 128


class Admitter(Protocol[K_contra]):
    """What the eviction policy asks before letting a candidate displace a victim."""

    def record(self, key: K_contra) -> None:
        """Note an access to ``key``; called on every lookup, hit or miss."""

    def admit(self, candidate: K_contra, victim: K_contra) -> bool:
        """True if ``candidate`` should replace ``victim`` (the victim is then evicted)."""

    def fit(self, entries: int) -> int:
        """Prepare to judge a cache of `entries` keys; the entry count at which to be
        asked again."""


class AlwaysAdmit:
    """Null admitter: records nothing, admits every candidate (plain LRU behaviour)."""

    __slots__ = ()

    def record(self, key: object) -> None:
        """Do nothing."""

    def admit(self, candidate: object, victim: object) -> bool:
        """Always True."""
        return True

    def fit(self, entries: int) -> int:
        """Nothing to prepare: never ask again."""
        return sys.maxsize


class TinyLfuAdmitter:
    """Admit iff the candidate is estimated more popular than the victim.

    A frequency sketch is fed by ``record``. To resist hash flooding -- an attacker
    making a victim look artificially popular via collisions so that nothing new is
    ever admitted -- a candidate whose frequency exceeds ``HASH_FLOOD_THRESHOLD`` but
    does not beat the victim is still admitted with probability
    1/``HASH_FLOOD_ADMIT_ONE_IN``. Ties go to the victim (the resident entry).

    NOT guaranteed: that a popular key is always admitted (sketch collisions and
    aging can make it look less popular) nor that an unpopular one never is.
    """

    __slots__ = ("_rng", "sketch")

    def __init__(self, sketch: FrequencySketch, rng: random.Random | None = None) -> None:
        self.sketch = sketch
        self._rng = rng if rng is not None else random.Random()

    def record(self, key: Hashable) -> None:
        """Count one access to ``key`` in the sketch."""
        self.sketch.increment(key)

    def fit(self, entries: int) -> int:
        """Widen the sketch to count `SKETCH_KEYS_PER_ENTRY` keys per entry held (it never
        narrows); ask again when the entries outgrow it."""
        self.sketch.grow(SKETCH_KEYS_PER_ENTRY * entries)
        return self.sketch.capacity // SKETCH_KEYS_PER_ENTRY

    def admit(self, candidate: Hashable, victim: Hashable) -> bool:
        """Compare estimated frequencies; see the class docstring for the random escape."""
        candidate_freq = self.sketch.frequency(candidate)
        victim_freq = self.sketch.frequency(victim)
        if candidate_freq > victim_freq:
            return True
        if candidate_freq <= HASH_FLOOD_THRESHOLD:
            return False
        return self._rng.randrange(HASH_FLOOD_ADMIT_ONE_IN) == 0


class SharedTinyLfuAdmitter(TinyLfuAdmitter):
    """TinyLFU over a sketch its owner feeds: ``record`` counts nothing.

    For a sketch shared with someone who counts every access once already (the engine
    counts each lookup of a key, `sidecar.engine.engine`, and reads the same sketch for
    placement): were the memory tier to count its reads too, every lookup would count twice.
    """

    __slots__ = ()

    def record(self, key: Hashable) -> None:
        """Do nothing: the sketch's owner counts accesses."""
