"""W-TinyLFU eviction over keys weighted by their size in bytes (no values held).

Structure (Caffeine's): a small *window* LRU that every new key enters, and a *main*
segmented LRU -- *probation* (no budget of its own) and *protected* -- behind an
admission filter. Budgets, all in bytes:

* window: ``floor(max_bytes * window_fraction)``; it holds entries until it is *over*
  budget, so an entry larger than the window passes straight to candidacy;
* main (probation + protected): ``max_bytes - window budget``; probation has no budget
  of its own, protected at most ``floor(main budget * protected_fraction)``.

The two regions are bounded separately (unlike Caffeine, a window below its budget
does not lend the slack to main -- at most ``window_fraction`` of the bytes idle during
warm-up, for a simpler invariant). When the window is over budget its LRU entry becomes
a *candidate*: if main has room it joins probation (MRU); otherwise it contests main's
victims, probation's LRU first, then protected's LRU.

Weighted-entry choice -- **all or nothing**: the candidate is tentatively matched
against as many victims (in eviction order) as are needed to make room for it, and
must win ``admitter.admit(candidate, victim)`` against *each* of them; only then are
they all evicted (cause ``SIZE``). On its first lost contest the candidate is
``REJECTED`` and *no* victim is evicted, so a big candidate that loses never wastes
the victims it beat. Known weakness: the contest is per victim, not aggregate -- a
big candidate only slightly more popular than each of several small victims
displaces all of them, although together they would have served more hits (and,
conversely, one popular small victim shields a big candidate's way in). Keys larger
than ``max_bytes`` are rejected by ``add``; a candidate larger than the main budget
(possible only if it is within ``window_fraction`` of ``max_bytes``) can never fit main
and is rejected without a contest once it leaves the window.

NOT guaranteed: thread safety (the caller serialises); O(1) for ``add``/``update``
(one call may evict many victims); that a ``REJECTED`` key was unpopular (sketch
collisions, the random anti-flooding escape); any particular victim order beyond
the one above.
"""

from __future__ import annotations

import enum
from collections import OrderedDict
from collections.abc import Hashable
from itertools import chain
from typing import Generic, Literal, TypeVar

from .admission import Admitter

__all__ = ["EvictionCause", "Segment", "WindowTinyLfuPolicy"]

K = TypeVar("K", bound=Hashable)
Segment = Literal["window", "probation", "protected"]


class EvictionCause(enum.Enum):
    """Why a key left (or never entered) the cache."""

    SIZE = "size"  # evicted to make room
    REJECTED = "rejected"  # not admitted (lost the contest, or too big)
    EXPIRED = "expired"  # TTL ran out (reported by the caller, via ``remove``)
    EXPLICIT = "explicit"  # deleted / purged by the caller, via ``remove``
    REPLACED = "replaced"  # overwritten by a new value for the same key


class WindowTinyLfuPolicy(Generic[K]):
    """Keys and byte sizes in a window LRU + segmented main LRU; see the module doc."""

    def __init__(
        self,
        max_bytes: int,
        admitter: Admitter[K],
        window_fraction: float = 0.01,
        protected_fraction: float = 0.8,
    ) -> None:
        if max_bytes < 0:
            raise ValueError(f"max_bytes must be >= 0, got {max_bytes}")
        if not 0.0 <= window_fraction <= 1.0:
            raise ValueError(f"window_fraction must be in [0, 1], got {window_fraction}")
        if not 0.0 <= protected_fraction <= 1.0:
            raise ValueError(f"protected_fraction must be in [0, 1], got {protected_fraction}")
        self._max = max_bytes
        self._admitter = admitter
        self.window_max_bytes = int(max_bytes * window_fraction)
        self.main_max_bytes = max_bytes - self.window_max_bytes
        self.protected_max_bytes = int(self.main_max_bytes * protected_fraction)
        self._window: OrderedDict[K, int] = OrderedDict()
        self._probation: OrderedDict[K, int] = OrderedDict()
        self._protected: OrderedDict[K, int] = OrderedDict()
        self._window_bytes = 0
        self._probation_bytes = 0
        self._protected_bytes = 0
        #: The entry count at which the admitter is next told how many keys are held.
        self._fit_at = 0

    # -- introspection -------------------------------------------------------------
    @property
    def max_bytes(self) -> int:
        return self._max

    @property
    def used_bytes(self) -> int:
        return self._window_bytes + self._probation_bytes + self._protected_bytes

    def __len__(self) -> int:
        return len(self._window) + len(self._probation) + len(self._protected)

    def __contains__(self, key: object) -> bool:
        return key in self._protected or key in self._probation or key in self._window

    def size_of(self, key: K) -> int | None:
        """The recorded size of ``key``, or None if absent."""
        for seg in (self._protected, self._probation, self._window):
            size = seg.get(key)
            if size is not None:
                return size
        return None

    def segment_of(self, key: K) -> Segment | None:
        """Which segment holds ``key`` (for tests and debugging)."""
        if key in self._window:
            return "window"
        if key in self._probation:
            return "probation"
        if key in self._protected:
            return "protected"
        return None

    def segment_keys(self, segment: Segment) -> list[K]:
        """Keys of one segment, LRU first (O(n); for tests and debugging)."""
        return list(self._segments()[segment])

    def segment_bytes(self, segment: Segment) -> int:
        """Bytes accounted to one segment."""
        return {
            "window": self._window_bytes,
            "probation": self._probation_bytes,
            "protected": self._protected_bytes,
        }[segment]

    def _segments(self) -> dict[Segment, OrderedDict[K, int]]:
        return {"window": self._window, "probation": self._probation, "protected": self._protected}

    # -- access --------------------------------------------------------------------
    def record(self, key: K) -> None:
        """Forward to the admitter; call on every lookup, hit or miss."""
        self._admitter.record(key)

    def on_hit(self, key: K) -> None:
        """LRU touch of a present key (absent keys are ignored). O(1) amortised."""
        protected = self._protected
        if key in protected:
            protected.move_to_end(key)
            return
        size = self._probation.pop(key, None)
        if size is not None:
            self._probation_bytes -= size
            protected[key] = size
            self._protected_bytes += size
            self._demote_protected_overflow()
            return
        if key in self._window:
            self._window.move_to_end(key)

    # -- mutation ------------------------------------------------------------------
    def add(self, key: K, size: int) -> list[tuple[K, EvictionCause]]:
        """Insert a new key of ``size`` bytes; return what the caller must drop.

        The result may contain ``key`` itself (``REJECTED``). Raises ValueError if
        ``key`` is already present (remove it first) or ``size`` is negative.
        """
        if size < 0:
            raise ValueError(f"size must be >= 0, got {size}")
        if key in self:
            raise ValueError(f"key already present: {key!r}")
        if size > self._max:
            return [(key, EvictionCause.REJECTED)]
        self._window[key] = size
        self._window_bytes += size
        if len(self._window) + len(self._probation) + len(self._protected) > self._fit_at:
            self._fit_at = self._admitter.fit(len(self))
        evicted: list[tuple[K, EvictionCause]] = []
        self._drain_window(evicted)
        return evicted

    def remove(self, key: K) -> bool:
        """Forget ``key`` (explicit delete or expiry); False if it was absent."""
        for seg in (self._window, self._probation, self._protected):
            size = seg.pop(key, None)
            if size is not None:
                self._charge(seg, -size)
                return True
        return False

    def update(self, key: K, new_size: int) -> list[tuple[K, EvictionCause]]:
        """Change the size of a present key, then restore the budgets.

        Victims leave with ``SIZE`` (the key itself too if now larger than
        ``max_bytes``); a window entry pushed into candidacy may be ``REJECTED``.
        Raises KeyError if ``key`` is absent, ValueError if ``new_size`` < 0.
        """
        if new_size < 0:
            raise ValueError(f"size must be >= 0, got {new_size}")
        for seg in (self._window, self._probation, self._protected):
            old = seg.get(key)
            if old is not None:
                break
        else:
            raise KeyError(key)
        if new_size > self._max:
            del seg[key]
            self._charge(seg, -old)
            return [(key, EvictionCause.SIZE)]
        seg[key] = new_size
        self._charge(seg, new_size - old)
        evicted: list[tuple[K, EvictionCause]] = []
        self._demote_protected_overflow()
        self._drain_window(evicted)
        while self._probation_bytes + self._protected_bytes > self.main_max_bytes:
            # a main entry grew: plain LRU eviction, no contest
            src = self._probation if self._probation else self._protected
            victim, vsize = src.popitem(last=False)
            self._charge(src, -vsize)
            evicted.append((victim, EvictionCause.SIZE))
        return evicted

    # -- internals -----------------------------------------------------------------
    def _charge(self, seg: OrderedDict[K, int], delta: int) -> None:
        if seg is self._window:
            self._window_bytes += delta
        elif seg is self._probation:
            self._probation_bytes += delta
        else:
            self._protected_bytes += delta

    def _demote_protected_overflow(self) -> None:
        protected, probation = self._protected, self._probation
        while self._protected_bytes > self.protected_max_bytes and protected:
            key, size = protected.popitem(last=False)
            self._protected_bytes -= size
            probation[key] = size
            self._probation_bytes += size

    def _drain_window(self, evicted: list[tuple[K, EvictionCause]]) -> None:
        window = self._window
        while self._window_bytes > self.window_max_bytes:
            candidate, csize = window.popitem(last=False)
            self._window_bytes -= csize
            self._admit_to_main(candidate, csize, evicted)

    def _admit_to_main(
        self, candidate: K, csize: int, evicted: list[tuple[K, EvictionCause]]
    ) -> None:
        room = self.main_max_bytes - self._probation_bytes - self._protected_bytes
        if csize > room:
            if csize > self.main_max_bytes:  # cannot fit even in an empty main
                evicted.append((candidate, EvictionCause.REJECTED))
                return
            admit = self._admitter.admit
            n_probation = n_protected = 0
            for victim, vsize in chain(self._probation.items(), self._protected.items()):
                if not admit(candidate, victim):
                    evicted.append((candidate, EvictionCause.REJECTED))
                    return
                if n_probation < len(self._probation):
                    n_probation += 1
                else:
                    n_protected += 1
                room += vsize
                if room >= csize:
                    break
            for seg, n in ((self._probation, n_probation), (self._protected, n_protected)):
                for _ in range(n):
                    victim, vsize = seg.popitem(last=False)
                    self._charge(seg, -vsize)
                    evicted.append((victim, EvictionCause.SIZE))
        self._probation[candidate] = csize
        self._probation_bytes += csize
