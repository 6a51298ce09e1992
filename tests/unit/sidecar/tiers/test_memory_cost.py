"""The memory tier charges its budget what entries really take on the heap.

Measured with tracemalloc (the Python heap, allocator rounding aside): entries built the way
the gRPC layer builds them (fresh header objects per entry) are stored into a tier, and the
heap growth per entry is compared with what the tier charges per entry.
"""

from __future__ import annotations

import gc
import random
import tracemalloc

import pytest

from sidecar.core.clock import ManualClock
from sidecar.core.model import CachedResponse
from sidecar.tiers.bodies import BodyPool
from sidecar.tiers.memory import MemoryTier
from sidecar.tiers.memory_cost import allocated, bytes_cost, meta_cost

HEADERS = (
    (b"content-type", b"application/json; charset=utf-8"),
    (b"cache-control", b"public, max-age=3600"),
    (b"etag", b'W/"0123456789abcdef"'),
    (b"date", b"Thu, 11 Jun 2026 10:00:00 GMT"),
    (b"x-request-id", b"0123456789abcdef0123456789abcdef"),
    (b"vary", b"Accept-Encoding"),
)
ENTRIES = 5000


def _fresh(b: bytes) -> bytes:
    return bytes(bytearray(b))  # a new object, as a message parser makes one


async def _heap_per_entry(
    headers: int, body_len: int, tags: int, admission: str = "tinylfu"
) -> tuple[float, float]:
    """(real heap bytes per entry, charged bytes per entry) for ENTRIES random bodies."""
    clock = ManualClock()
    rng = random.Random(headers * 1000 + body_len)
    tier = MemoryTier(1 << 34, clock, admission=admission)
    gc.collect()
    tracemalloc.start()
    try:
        before, _ = tracemalloc.get_traced_memory()
        for i in range(ENTRIES):
            entry = CachedResponse(
                200,
                tuple((_fresh(n), _fresh(v)) for n, v in HEADERS[:headers]),
                rng.randbytes(body_len),
                clock.now_ms() + 1_780_000_000_000,
                3_600_000,
                tags=tuple(f"tag-{i % 50}-{j}" for j in range(tags)),
            )
            await tier.set(b"v1:GET:api.example.com:/items/%d?page=1" % i, entry)
        gc.collect()
        after, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert tier.snapshot().entries == ENTRIES
    return (after - before) / ENTRIES, tier.charged_bytes / ENTRIES


@pytest.mark.parametrize(
    ("headers", "body_len", "tags"),
    [(0, 10, 0), (2, 100, 0), (6, 100, 0), (6, 1000, 2), (2, 5000, 0)],
)
async def test_charge_covers_the_real_heap_cost_without_churn(
    headers: int, body_len: int, tags: int
) -> None:
    """Without deletions the tier's dicts sit at their best load: the charge (their worst,
    `memory_cost`) is above what they hold, by at most half for the tiniest entries.
    Under churn: `tests/unit/sidecar/tiers/test_memory_accounting.py`."""
    real, charged = await _heap_per_entry(headers, body_len, tags)
    assert 0.5 <= real / charged <= 1.0, f"real {real:.0f} B/entry, charged {charged:.0f}"


def test_allocator_rounding() -> None:
    assert allocated(1) == 16
    assert allocated(512) == 512
    assert allocated(513) == 528  # glibc chunk: 8-byte header, 16-byte aligned
    assert bytes_cost(0) == 48  # the 33-byte empty bytes object, rounded
    assert bytes_cost(100_000) >= 100_033


def test_meta_cost_grows_with_every_part_of_the_entry() -> None:
    base = CachedResponse(200, (), b"", 1_780_000_000_000, 3_600_000)
    bigger = [
        CachedResponse(200, ((b"a", b"b"),), b"", 1_780_000_000_000, 3_600_000),
        CachedResponse(200, (), b"", 1_780_000_000_000, 3_600_000, tags=("t",)),
        CachedResponse(200, (), b"", 1_780_000_000_000, 3_600_000, vary=("accept",)),
        CachedResponse(200, (), b"", 1_780_000_000_000, 3_600_000, tag_generations=(10**12,)),
    ]
    for entry in bigger:
        assert meta_cost(b"k", entry) > meta_cost(b"k", base)
    assert meta_cost(b"k" * 100, base) > meta_cost(b"k", base)
    assert meta_cost(b"k", CachedResponse(200, (), b"body", 1, 2)) == meta_cost(
        b"k", CachedResponse(200, (), b"other body", 1, 2)
    )  # the body is charged by the pool, not here


def test_a_body_is_charged_its_object_and_bookkeeping() -> None:
    assert BodyPool.charge(1000) > 1000 + 33
