"""A count-min sketch of 4-bit saturating counters: TinyLFU's popularity estimate.

Layout: ``depth = 4`` rows of ``width`` counters, ``width`` the next power of two at
least ``max(capacity, 16)``. Counters are stored **one per byte** in a single
``bytearray`` (row ``r`` occupies ``[r * width, (r + 1) * width)``) and saturate at 15,
so they behave as 4-bit counters. One byte per counter rather than two nibbles per
byte, because in CPython a nibble needs a read-modify-write with shifts and masks on
every access (measurably slower on the hot path), while a byte is one subscript; the
price is twice the memory of a packed table. Memory is ``4 * width``
bytes (capacity 100 000 -> width 131 072 -> 512 KiB;
capacity 1 000 000 -> 4 MiB), plus a transient copy of that size while aging. `grow`
widens it later (the memory tier asks as its entry count rises): each counter is copied
to the two counters that split its range, so no count is lost and none falls.

Index derivation: one 64-bit value ``h = hash(key) mod 2**64``, then per row ``r`` the
top ``log2(width)`` bits of ``h * SEED[r] mod 2**64`` (multiply-shift hashing with a
distinct odd seed per row). Python's ``hash`` of ``str``/``bytes`` is SipHash salted
per process (``PYTHONHASHSEED``), so indices -- and therefore collisions -- differ
between processes. That is fine: the sketch is process-local and never persisted or
shared. Keys may be any hashable; ``str``/``bytes`` are what the cache uses.

Aging (TinyLFU's "reset"): every increment that raised at least one counter counts
towards ``size``; when ``size`` reaches ``sample_size = 10 * capacity`` every counter is
halved (integer division) and ``size`` is halved too, minus a correction for the
halves lost by odd counters (Caffeine's ``(size - odd/4) / 2``).

NOT guaranteed: exact counts (a count-min sketch only over-estimates, up to
collisions, and saturates at 15); stable indices across processes; thread safety (the
caller serialises access); a cheap reset (it is O(4 * width), done in C via
``bytes.translate``, amortised over ``sample_size`` increments).
"""

from __future__ import annotations

from collections.abc import Hashable

__all__ = ["FrequencySketch"]

_MASK64 = (1 << 64) - 1
_MAX_COUNT = 15
_MIN_WIDTH = 16
_MAX_WIDTH = 1 << 30
# Odd 64-bit constants (the row seeds Caffeine uses); odd => multiplication is a bijection.
_SEED0 = 0xC3A5C85C97CB3127
_SEED1 = 0xB492B66FBE98F273
_SEED2 = 0x9AE16A3B2F90404F
_SEED3 = 0xCBF29CE484222325
_HALVE = bytes(b >> 1 for b in range(256))
_ODD_BYTES = tuple(bytes([b]) for b in range(1, _MAX_COUNT + 1, 2))


class FrequencySketch:
    """Approximate access frequency of keys, in ``[0, 15]``, with periodic aging."""

    __slots__ = ("_shift", "_size", "_table", "_width", "capacity", "depth", "sample_size")

    def __init__(self, capacity: int) -> None:
        """Size the sketch for about ``capacity`` distinct live entries."""
        if capacity < 0:
            raise ValueError(f"capacity must be >= 0, got {capacity}")
        width = _MIN_WIDTH
        while width < capacity:
            width <<= 1
        if width > _MAX_WIDTH:
            raise ValueError(f"capacity {capacity} needs width > {_MAX_WIDTH}")
        self.capacity = capacity
        self.depth = 4
        self._width = width
        self._shift = 64 - (width.bit_length() - 1)
        self._table = bytearray(self.depth * width)
        self.sample_size = 10 * max(capacity, 1)
        self._size = 0

    @property
    def width(self) -> int:
        """Counters per row (a power of two)."""
        return self._width

    @property
    def size(self) -> int:
        """Increments counted since the last aging (what triggers the next one)."""
        return self._size

    @property
    def memory_bytes(self) -> int:
        """Bytes held by the counter table (excludes the small object overhead)."""
        return len(self._table)

    def _indexes(self, key: Hashable) -> tuple[int, int, int, int]:
        h = hash(key) & _MASK64
        sh, w = self._shift, self._width
        return (
            ((h * _SEED0) & _MASK64) >> sh,
            w + (((h * _SEED1) & _MASK64) >> sh),
            2 * w + (((h * _SEED2) & _MASK64) >> sh),
            3 * w + (((h * _SEED3) & _MASK64) >> sh),
        )

    def increment(self, key: Hashable) -> int:
        """Count one occurrence of ``key``; may trigger aging. Returns the key's estimate
        after counting it (what `frequency` would answer, before any aging this
        increment triggers). O(1) amortised."""
        # Unrolled on purpose: this is on the memory tier's per-lookup path.
        h = hash(key) & _MASK64
        sh, w, t = self._shift, self._width, self._table
        added = False
        i = ((h * _SEED0) & _MASK64) >> sh
        low = t[i]
        if low < _MAX_COUNT:
            low += 1
            t[i] = low
            added = True
        i = w + (((h * _SEED1) & _MASK64) >> sh)
        c = t[i]
        if c < _MAX_COUNT:
            c += 1
            t[i] = c
            added = True
        if c < low:  # noqa: PLR1730 - a comparison is cheaper than a call to min()
            low = c
        i = 2 * w + (((h * _SEED2) & _MASK64) >> sh)
        c = t[i]
        if c < _MAX_COUNT:
            c += 1
            t[i] = c
            added = True
        if c < low:  # noqa: PLR1730 - a comparison is cheaper than a call to min()
            low = c
        i = 3 * w + (((h * _SEED3) & _MASK64) >> sh)
        c = t[i]
        if c < _MAX_COUNT:
            c += 1
            t[i] = c
            added = True
        if c < low:  # noqa: PLR1730 - a comparison is cheaper than a call to min()
            low = c
        if added:
            self._size += 1
            if self._size >= self.sample_size:
                self.reset()
        return low

    def frequency(self, key: Hashable) -> int:
        """Estimated count of ``key`` (minimum over the rows); never under-estimates
        occurrences since the last aging, modulo saturation at 15 and halving."""
        t = self._table
        a, b, c, d = self._indexes(key)
        return min(t[a], t[b], t[c], t[d])

    def grow(self, capacity: int) -> bool:
        """Widen the rows to count about `capacity` keys, keeping every estimate: False
        (nothing done) when the sketch already counts that many.

        Index ``i`` of width ``w`` holds the hashes whose top bits are ``i``; at width
        ``2w`` those are indices ``2i`` and ``2i + 1``, so both start from the old count
        (an estimate may stay high until aging halves it, as collisions already make it).
        O(new table), done in C by slice assignment; `sample_size` follows the capacity.
        """
        if capacity <= self.capacity:
            return False
        width = self._width
        while width < capacity:
            width <<= 1
        if width > _MAX_WIDTH:
            raise ValueError(f"capacity {capacity} needs width > {_MAX_WIDTH}")
        table = self._table
        while self._width < width:
            old = self._width
            wide = bytearray(2 * len(table))
            for row in range(self.depth):
                counts = table[row * old : (row + 1) * old]
                start = 2 * row * old
                wide[start : start + 2 * old : 2] = counts
                wide[start + 1 : start + 2 * old : 2] = counts
            table = wide
            self._width = 2 * old
        self._table = table
        self._shift = 64 - (width.bit_length() - 1)
        self.capacity = capacity
        self.sample_size = 10 * capacity
        return True

    def reset(self) -> None:
        """Age the sketch: halve every counter and the ``size`` counter.

        Called automatically when ``size`` reaches ``sample_size``; public so tests
        and operators can force it.
        """
        t = self._table
        odd = sum(t.count(b) for b in _ODD_BYTES)
        self._table = t.translate(_HALVE)
        self._size = max(0, (self._size - (odd >> 2)) >> 1)

    def clear(self) -> None:
        """Forget everything (all counters and ``size`` to zero)."""
        self._table = bytearray(len(self._table))
        self._size = 0
