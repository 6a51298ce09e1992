"""What one response weighs in each cache `python -m bench offload` compares.

`object_sizes` measures each response of a list with the product's own code: the bytes the
memory tier charges its policy for it (a real `MemoryTier` stores it and the growth of
`charged_bytes` is read: compressed body, per-entry structures at their worst load), its
value in the shared tiers (`sidecar.tiers.codec.encode`: compressed body, msgpack meta) and
the size placement decides by (`sidecar.engine.placement.entry_size`). The baseline's size
is Kong proxy-cache's stored value (`bench.memory_corpus.naive_value`: one JSON document
with the raw body).

Not guaranteed: dedup. Identical bodies under different keys (a quarter of the
`bench.memory_corpus` corpus) are charged in full for every key on both sides: the memory
tier's charge does not shrink with dedup (it saves RAM, not budget), and Redis' body
references (one copy per distinct body of 1 KiB or more, ~7 % of Redis bytes in
`python -m bench memory`) are not modelled, nor the ~100 bytes a reference costs. Nor
per-key overhead of Redis or of Kong's shared dict: both are charged their payload.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from bench.memory_corpus import Item, build_corpus, naive_value
from bench.offload_model import ObjectSize
from sidecar.core.clock import SystemClock
from sidecar.core.model import CachedResponse
from sidecar.engine.placement import entry_size
from sidecar.tiers import codec
from sidecar.tiers.memory import MemoryTier

__all__ = ["corpus_sizes", "memory_charges", "object_sizes"]

#: The scratch tier's budget: room for any corpus here (nothing is evicted while measuring).
_SCRATCH_BYTES = 1 << 40


def memory_charges(entries: Sequence[tuple[bytes, CachedResponse]]) -> list[int]:
    """What the memory tier charges its policy for each `(key, entry)`, in order."""

    async def measure() -> list[int]:
        tier = MemoryTier(_SCRATCH_BYTES, SystemClock(), admission="always")
        charges = []
        for key, entry in entries:
            before = tier.charged_bytes
            await tier.set(key, entry)
            if key not in tier:
                raise RuntimeError(f"the scratch memory tier did not keep {key!r}")
            charges.append(tier.charged_bytes - before)
        return charges

    return asyncio.run(measure())


def object_sizes(items: Sequence[Item]) -> list[ObjectSize]:
    """Each item's `ObjectSize`: naive (Kong's JSON), memory charge, shared value, entry."""
    charges = memory_charges([(item.key, item.entry) for item in items])
    return [
        ObjectSize(
            naive=len(naive_value(item)),
            memory=charge,
            shared=len(codec.encode(item.entry)),
            entry=entry_size(item.entry),
        )
        for item, charge in zip(items, charges, strict=True)
    ]


def corpus_sizes(responses: int, seed: int) -> list[ObjectSize]:
    """The `ObjectSize` of every response of `bench.memory_corpus.build_corpus`."""
    return object_sizes(build_corpus(responses, seed, SystemClock().now_ms()))
