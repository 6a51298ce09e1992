"""What an entry costs the memory tier in heap bytes, for its byte budget.

The memory tier's budget is meant as bytes of RAM, so a key is charged what CPython really
allocates for it, counted object by object from sizes CPython fixes (a `bytes` object is
its length plus 33, a tuple 40 plus 8 per item, ...), each rounded up as the allocator
hands it out (pymalloc's 16-byte classes up to 512 bytes, a glibc chunk with an 8-byte
header above), plus a flat amount per key for the tier's own bookkeeping (its dict slots,
the policy's ordered-dict node, the expiry heap's item), measured with `tracemalloc` and
pinned by `tests/unit/test_memory_cost.py`.

Not guaranteed: exactness. Dict and heap slots grow by doubling, so the bookkeeping is an
average; objects shared with other entries (interned strings, small ints, a header value
that happens to be the same object) are charged to every entry that holds them. What the
C allocator keeps beyond these objects (fragmentation, free lists, arenas) is not an
entry's cost: `python -m bench memory --churn-seconds` measures the whole process.
"""

from __future__ import annotations

import sys

from sidecar.model import CachedResponse

__all__ = [
    "BODY_BOOKKEEPING_BYTES",
    "KEY_BOOKKEEPING_BYTES",
    "allocated",
    "bytes_cost",
    "meta_cost",
]

#: Per key, besides its own objects: one slot in each of the tier's three dicts and the
#: policy's ordered dict (with its node), the expiry heap's (expires_at, key) tuple and
#: list slot (the heap holds up to twice the keys), the expiry instant and the charged
#: size as ints. Measured on CPython 3.11 (64-bit) with tracemalloc.
KEY_BOOKKEEPING_BYTES = 256

#: Per distinct body, besides its `bytes` object: the pool's record, its raw length, the
#: 32-byte digest object and its slot in the pool's dict.
BODY_BOOKKEEPING_BYTES = 240

_PYMALLOC_MAX = 512
_BYTES_HEADER = sys.getsizeof(b"")
_TUPLE_HEADER = sys.getsizeof(())
_ENTRY_OBJECT = sys.getsizeof(CachedResponse(0, (), b"", 0, 0))
#: An int outside CPython's small-int cache (a millisecond timestamp, a TTL).
_BIG_INT = 32


def allocated(size: int) -> int:
    """Heap bytes one object of `size` bytes takes: pymalloc's 16-byte classes up to 512
    bytes, a glibc chunk (8-byte header, 16-byte aligned) above."""
    if size <= _PYMALLOC_MAX:
        return (size + 15) & ~15
    return max(32, (size + 8 + 15) & ~15)


#: `bytes_cost` of the lengths below this, precomputed (header names and values, keys).
_SMALL = 1024
_SMALL_BYTES = [allocated(_BYTES_HEADER + n) for n in range(_SMALL)]


def bytes_cost(length: int) -> int:
    """Heap bytes of a `bytes` object of `length` bytes."""
    if length < _SMALL:
        return _SMALL_BYTES[length]
    return allocated(_BYTES_HEADER + length)


def _tuple_cost(items: int) -> int:
    return allocated(_TUPLE_HEADER + 8 * items) if items else 0


_PAIR = _tuple_cost(2)


def _str_cost(s: str) -> int:
    return allocated(sys.getsizeof(s))


def _int_cost(value: int) -> int:
    return 0 if -5 <= value <= 256 else _BIG_INT


def meta_cost(key: bytes, entry: CachedResponse) -> int:
    """Heap bytes `entry` without its body costs under `key` in the memory tier: its own
    objects (the entry, key, headers, tags, vary, generations, timestamps) plus
    `KEY_BOOKKEEPING_BYTES`. The body is charged apart (`BodyPool.charge`)."""
    headers = entry.headers
    cost = KEY_BOOKKEEPING_BYTES + allocated(_ENTRY_OBJECT) + bytes_cost(len(key))
    if headers:
        cost += _tuple_cost(len(headers)) + len(headers) * _PAIR
        for name, value in headers:
            cost += bytes_cost(len(name)) + bytes_cost(len(value))
    if entry.tags:
        cost += _tuple_cost(len(entry.tags)) + sum(_str_cost(t) for t in entry.tags)
    if entry.vary:
        cost += _tuple_cost(len(entry.vary)) + sum(_str_cost(v) for v in entry.vary)
    generations = entry.tag_generations
    if generations:
        cost += _tuple_cost(len(generations)) + sum(_int_cost(g) for g in generations)
    for ms in (
        entry.stored_at_ms,
        entry.ttl_ms,
        entry.stale_while_revalidate_ms,
        entry.stale_if_error_ms,
        entry.storage_ttl_ms,
    ):
        cost += _int_cost(ms)
    return cost
