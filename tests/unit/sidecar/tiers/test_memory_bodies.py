"""The memory tier's body pool: compression, dedup across keys, reference counts released
on every removal path, and the byte invariant (real <= charged <= budget)."""

from __future__ import annotations

import json
import os
import random
from functools import partial

from hypothesis import given, settings
from hypothesis import strategies as st

from sidecar.core.clock import ManualClock
from sidecar.tiers import codec
from sidecar.tiers.base import SetStatus
from sidecar.tiers.bodies import BodyPool
from sidecar.tiers.memory import MemoryTier
from tests.support.entries import JSON_HEADERS, entry


def json_body(seed: int, items: int = 30) -> bytes:
    rng = random.Random(seed)
    doc = {
        "items": [
            {
                "id": rng.randrange(10**9),
                "name": rng.choice(["alpha", "bravo", "delta", "kilo"]) + " widget",
                "price": round(rng.uniform(1, 500), 2),
                "in_stock": rng.random() < 0.7,
                "tags": ["sale", "new"],
            }
            for _ in range(items)
        ],
        "cursor": f"{rng.getrandbits(64):016x}",
    }
    return json.dumps(doc).encode()


#: An entry as these tests store it: a JSON body under its content type.
mk = partial(entry, headers=JSON_HEADERS)


def check_invariant(tier: MemoryTier) -> None:
    snap = tier.snapshot()
    assert 0 <= snap.bytes <= tier.charged_bytes <= snap.max_bytes


async def test_identical_bodies_under_different_keys_are_held_once(clock: ManualClock) -> None:
    tier = MemoryTier(1 << 24, clock, admission="always")
    body = json_body(1)
    await tier.set(b"a", mk(clock, body))
    one = tier.snapshot().bytes
    for k in (b"b", b"c", b"d"):
        await tier.set(k, mk(clock, body))
    assert len(tier.body_pool) == 1
    assert tier.body_pool.refs(codec.body_digest(body)) == 4
    meta = one - tier.body_pool.held_bytes
    assert tier.snapshot().bytes == 4 * meta + tier.body_pool.held_bytes
    for k in (b"a", b"b", b"c", b"d"):
        got = await tier.get(k)
        assert got is not None and got.body == body
    check_invariant(tier)


async def test_compression_saves_bytes_on_json(clock: ManualClock) -> None:
    body = json_body(2, items=60)
    assert len(body) > 4000
    tier = MemoryTier(1 << 24, clock, admission="always")
    await tier.set(b"k", mk(clock, body))
    entry = mk(clock, body)
    uncompressed = entry.size_bytes(1)
    assert tier.snapshot().bytes < uncompressed - len(body) // 2
    assert tier.body_pool.held_bytes < len(body) // 2
    got = await tier.get(b"k")
    assert got == entry


async def test_incompressible_bodies_are_kept_raw(clock: ManualClock) -> None:
    body = os.urandom(3000)
    tier = MemoryTier(1 << 24, clock)
    await tier.set(b"k", mk(clock, body))
    assert tier.body_pool.held_bytes == BodyPool.charge(len(body))
    got = await tier.get(b"k")
    assert got is not None and got.body == body


async def test_replacing_a_key_moves_its_reference(clock: ManualClock) -> None:
    tier = MemoryTier(1 << 24, clock, admission="always")
    a, b = json_body(3), json_body(4)
    await tier.set(b"k", mk(clock, a))
    await tier.set(b"k", mk(clock, a))  # same body: still one reference
    assert tier.body_pool.refs(codec.body_digest(a)) == 1
    await tier.set(b"k", mk(clock, b))
    assert codec.body_digest(a) not in tier.body_pool
    assert tier.body_pool.refs(codec.body_digest(b)) == 1


async def test_every_removal_path_releases_references(clock: ManualClock) -> None:
    tier = MemoryTier(1 << 24, clock, admission="always")
    body = json_body(5)
    digest = codec.body_digest(body)
    await tier.set(b"p:1", mk(clock, body))
    await tier.set(b"p:2", mk(clock, body))
    await tier.set(b"tagged", mk(clock, body, tags=("t",)))
    await tier.set(b"del", mk(clock, body))
    await tier.set(b"read-expired", mk(clock, body, ttl_ms=1000))
    await tier.set(b"swept", mk(clock, body, ttl_ms=2000))
    assert tier.body_pool.refs(digest) == 6
    assert await tier.delete(b"del")
    assert tier.body_pool.refs(digest) == 5
    assert await tier.delete_prefix(b"p:") == 2
    assert tier.body_pool.refs(digest) == 3
    assert await tier.delete_tag("t") == 1
    assert tier.body_pool.refs(digest) == 2
    clock.advance(1000)
    assert await tier.get(b"read-expired") is None
    assert tier.body_pool.refs(digest) == 1
    clock.advance(1000)
    assert await tier.sweep() == 1
    assert digest not in tier.body_pool
    assert tier.snapshot().bytes == 0 == tier.charged_bytes


async def test_eviction_and_rejection_release_references(clock: ManualClock) -> None:
    body = os.urandom(2000)  # incompressible: each key is charged ~2.4 KB
    tier = MemoryTier(20_000, clock, admission="always")
    for i in range(50):
        await tier.set(b"k%d" % i, mk(clock, body))
        check_invariant(tier)
    digest = codec.body_digest(body)
    assert tier.snapshot().evictions > 0
    assert tier.body_pool.refs(digest) == tier.snapshot().entries
    # too large: the candidate's reference is released, the replaced key's too
    huge = os.urandom(30_000)
    assert await tier.set(b"k49", mk(clock, huge)) is SetStatus.TOO_LARGE
    assert codec.body_digest(huge) not in tier.body_pool
    assert tier.body_pool.refs(digest) == tier.snapshot().entries
    await tier.close()
    assert len(tier.body_pool) == 0 and tier.snapshot().bytes == 0


async def test_tinylfu_rejections_release_references(clock: ManualClock) -> None:
    tier = MemoryTier(30_000, clock)  # tinylfu
    hot = [os.urandom(2000) for _ in range(5)]
    for _ in range(5):
        for i, body in enumerate(hot):
            await tier.set(b"hot%d" % i, mk(clock, body))
            await tier.get(b"hot%d" % i)
    for i in range(100):
        await tier.set(b"cold%d" % i, mk(clock, os.urandom(2000)))
        check_invariant(tier)
    assert len(tier.body_pool) == tier.snapshot().entries


OPS = st.lists(
    st.tuples(
        st.sampled_from(["set", "get", "delete", "prefix", "tag", "advance", "sweep"]),
        st.integers(0, 11),  # key
        st.integers(0, 5),  # body
        st.integers(1, 4000),  # ttl / advance
    ),
    max_size=80,
)
BODIES = [json_body(100 + i, items=5 + 15 * i) for i in range(5)] + [os.urandom(3000)]


@settings(max_examples=150, deadline=None)
@given(ops=OPS, budget=st.integers(1_000, 40_000), admission=st.sampled_from(["always", "tinylfu"]))
async def test_byte_invariant_under_random_operations(
    ops: list[tuple[str, int, int, int]], budget: int, admission: str
) -> None:
    clock = ManualClock()
    tier = MemoryTier(budget, clock, admission=admission)
    model_bodies: dict[bytes, bytes] = {}
    for op, k, b, n in ops:
        key = b"g%d:%d" % (k % 3, k)
        if op == "set":
            status = await tier.set(key, mk(clock, BODIES[b], ttl_ms=n, tags=(f"t{k % 2}",)))
            if status is SetStatus.STORED:
                model_bodies[key] = BODIES[b]
        elif op == "get":
            got = await tier.get(key)
            if got is not None:
                assert got.body == model_bodies[key]
        elif op == "delete":
            await tier.delete(key)
        elif op == "prefix":
            await tier.delete_prefix(b"g%d:" % (k % 3))
        elif op == "tag":
            await tier.delete_tag(f"t{k % 2}")
        elif op == "advance":
            clock.advance(n)
        else:
            await tier.sweep()
        check_invariant(tier)
        # references held == keys present; every pooled body is referenced
        live = [key for key in (b"g%d:%d" % (i % 3, i) for i in range(12)) if key in tier]
        digests = [codec.body_digest(model_bodies[key]) for key in live]
        assert sum(tier.body_pool.refs(d) for d in set(digests)) == len(live)
        assert len(tier.body_pool) == len(set(digests))
