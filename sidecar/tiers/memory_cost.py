"""What an entry costs the memory tier in heap bytes, for its byte budget.

The memory tier's budget is meant as bytes of RAM, so a key is charged what CPython really
allocates for it, counted object by object from sizes CPython fixes (a `bytes` object is
its length plus 33, a tuple 40 plus 8 per item, ...), each rounded up as the allocator
hands it out (pymalloc's 16-byte classes up to 512 bytes, a glibc chunk with an 8-byte
header above), plus what the tier's own structures hold per key and per tag, derived from
the same sizes with every dict and set at its worst load: a dict holds between 1.5 and 6
table slots per live item (it grows to the power of two above 3x its items and keeps that
size through deletions until it grows again), so its slot is charged as 6 slots.

Conservative on purpose: under churn (stores evicting others all the time) the tables sit
anywhere in that range and the expiry heap holds stale items; the charge covers the worst,
so an idle tier with few deletions holds less than it is charged (about 0.6-0.9 of it, see
`tests/unit/sidecar/tiers/test_memory_accounting.py`). Objects shared by entries (a body, a tag's
string) are charged to every entry holding them. Not guaranteed: exactness; what the C
allocator keeps beyond these objects (fragmentation, free lists, arenas), the interpreter
and requests in flight are not an entry's cost (`python -m bench memory` reports a real
sidecar's RSS growth per response against this count, and where the heap goes;
`python -m bench memory --churn-seconds` and `tests/integration/test_sidecar_memory_fill.py`
measure the whole process under churn and once filled); sizes are
those of 64-bit CPython 3.11 (other versions differ by a few bytes per object).
"""

from __future__ import annotations

import sys

from sidecar.core.model import CachedResponse
from sidecar.tiers.packed_headers import packed_size

__all__ = [
    "BODY_BOOKKEEPING_BYTES",
    "DICT_SLOT_BYTES",
    "KEY_BOOKKEEPING_BYTES",
    "TAG_INDEX_BYTES",
    "allocated",
    "bytes_cost",
    "meta_cost",
]

#: A dict slot at the dict's worst load: 6 table slots, each a 4-byte index and 2/3 of a
#: 24-byte entry.
DICT_SLOT_BYTES = 6 * (4 + 16)
_INT = 32  # an int outside CPython's small-int cache

#: Per key, besides its own objects and the copy of its key a stale expiry item may keep:
#: its slot in the tier's entries dict and its record there (entry, packed headers, digest,
#: body, charged size: 72 bytes with its GC header, 80 as allocated);
#: its slot, node (32 bytes) and fast-node pointer (6 per slot) in the policy's ordered dict
#: and the size there; the expiry heap's (expires_at, key) tuple, int and list slots (up to
#: two items per key: one may be stale).
_ENTRIES_DICT = DICT_SLOT_BYTES + 80 + _INT  # slot, _Slot record, charged size
_POLICY_DICT = DICT_SLOT_BYTES + 32 + 6 * 8 + _INT  # slot, node, fast-node pointers, size
_EXPIRY_HEAP = 2 * (64 + _INT + 2 * 8)  # live and stale items, with their list slots
KEY_BOOKKEEPING_BYTES = _ENTRIES_DICT + _POLICY_DICT + _EXPIRY_HEAP

#: Per tag of an entry, besides the tag's string (charged apart): the tag index's dict slot
#: and record, and the entry's share of a set of the keys carrying the tag (a tag carried by
#: one key has no set; two keys share a 224-byte set; beyond, a member costs at most 128
#: bytes of table). Each entry is charged this for each of its tags, so a tag carried by
#: k entries is charged k times what holds it once.
TAG_INDEX_BYTES = 176

#: Per distinct body, besides its `bytes` object: its slot in the pool's dict, the pool's
#: record, the 32-byte digest object and the raw length.
BODY_BOOKKEEPING_BYTES = DICT_SLOT_BYTES + 64 + 80 + _INT

_PYMALLOC_MAX = 512
_BYTES_HEADER = sys.getsizeof(b"")
_TUPLE_HEADER = sys.getsizeof(())
_ENTRY_OBJECT = sys.getsizeof(CachedResponse(0, (), b"", 0, 0))


def allocated(size: int) -> int:
    """Heap bytes one object of `size` bytes takes: pymalloc's 16-byte classes up to 512
    bytes, a glibc chunk (8-byte header, 16-byte aligned) above."""
    if size <= _PYMALLOC_MAX:
        return (size + 15) & ~15
    return max(32, (size + 8 + 15) & ~15)


#: `bytes_cost` of the lengths below this, precomputed (packed headers, keys).
_SMALL = 1024
_SMALL_BYTES = [allocated(_BYTES_HEADER + n) for n in range(_SMALL)]


def bytes_cost(length: int) -> int:
    """Heap bytes of a `bytes` object of `length` bytes."""
    if length < _SMALL:
        return _SMALL_BYTES[length]
    return allocated(_BYTES_HEADER + length)


def _tuple_cost(items: int) -> int:
    return allocated(_TUPLE_HEADER + 8 * items) if items else 0


def _str_cost(s: str) -> int:
    return allocated(sys.getsizeof(s))


def _int_cost(value: int) -> int:
    return 0 if -5 <= value <= 256 else _INT


def meta_cost(key: bytes, entry: CachedResponse) -> int:
    """Heap bytes `entry` without its body costs under `key` in the memory tier: its own
    objects (the entry, key, headers as the tier holds them: one `bytes` object of
    `packed_headers.packed_size`, tags, vary, generations, timestamps), the key once more (a
    stale expiry item may keep a copy alive), `KEY_BOOKKEEPING_BYTES` and `TAG_INDEX_BYTES`
    per tag. The body is charged apart (`BodyPool.charge`). Not charged: the tuple of pairs
    a read rebuilds (it lives as long as the caller keeps the entry, not in the tier)."""
    cost = KEY_BOOKKEEPING_BYTES + allocated(_ENTRY_OBJECT) + 2 * bytes_cost(len(key))
    if entry.headers:  # no headers pack to b"", a shared object
        cost += bytes_cost(packed_size(entry.headers))
    if entry.tags:
        cost += _tuple_cost(len(entry.tags)) + len(entry.tags) * TAG_INDEX_BYTES
        cost += sum(_str_cost(t) for t in entry.tags)
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
