"""What the memory tier keeps on the heap: a compressed body at its compressed size, and
nothing of entries it let go of (measured with tracemalloc)."""

from __future__ import annotations

import gc
import random
import tracemalloc

from sidecar.core.clock import ManualClock
from sidecar.core.model import CachedResponse
from sidecar.tiers.bodies import BodyPool, exact_copy
from sidecar.tiers.memory import MemoryTier


def _json_like(size: int) -> bytes:
    rng = random.Random(size)
    words = [b"id", b"name", b"price", b"items", b"title", b"true", b"null"]
    out = bytearray()
    while len(out) < size:
        out += b'"%s":%d,' % (rng.choice(words), rng.randrange(1000))
    return bytes(out[:size])


def test_a_compressed_body_holds_its_compressed_size_not_its_raw_size() -> None:
    body = _json_like(200_000)
    pool = BodyPool()
    gc.collect()
    tracemalloc.start()
    try:
        before, _ = tracemalloc.get_traced_memory()
        _, stored_len = pool.acquire(body)
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert stored_len < len(body) // 2
    assert held < stored_len + 4096, f"{held} bytes held for a {stored_len}-byte frame"


def test_exact_copy_is_equal_and_independent() -> None:
    data = b"frame" * 100
    copy = exact_copy(data)
    assert copy == data and copy is not data


async def test_entries_let_go_leave_nothing_behind_without_a_sweep() -> None:
    clock = ManualClock()
    tier = MemoryTier(256 * 1024, clock, admission="always")  # holds ~100 entries
    body = random.Random(1).randbytes(2000)
    for i in range(500):  # fill, so the heap's own arrays reach their working size
        await tier.set(b"warm-%d" % i, CachedResponse(200, (), body, clock.now_ms(), 60_000))
    gc.collect()
    tracemalloc.start()
    try:
        before, _ = tracemalloc.get_traced_memory()
        for i in range(20_000):
            entry = CachedResponse(200, (), body, clock.now_ms(), 60_000)
            await tier.set(b"v1:GET:api.example.com:/churn/%d" % i, entry)
        gc.collect()
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert tier.snapshot().evictions > 19_000
    # 20,000 evicted keys kept by the expiry heap would be ~3 MB (key, int, tuple each)
    assert grown < 512 * 1024, f"the tier grew by {grown} bytes while holding a fixed budget"
