"""`KnownRecords`: what one sidecar knows of the generation records in Redis, for
`RedisGenerations`: each record's value and soft-replaced values as last read (or made
here while Redis was away), how long the record lives, and until when the value may be
used without asking Redis again (`cache_ms` after it was read).

Not guaranteed: that a value is still Redis's once read (other nodes purge meanwhile:
that is what `cache_ms` bounds), or that a record is kept until it expires (beyond
`max_records` the ones expiring first are forgotten: one extra round trip each).
"""

from __future__ import annotations

from collections.abc import Sequence

from sidecar.cluster.generation_scripts import parse_record
from sidecar.engine.generation_table import GenerationTable, Record
from sidecar.engine.generations import EPOCH, Generation, new_nonce, soft_replaced

__all__ = ["KnownRecords", "Replied"]

#: A record as Redis answered it: its raw value (None: no record) and PTTL (ms).
Replied = tuple[object, int]


class KnownRecords:
    """See the module doc. Not thread-safe (one event loop)."""

    def __init__(self, max_records: int, cache_ms: int) -> None:
        self.table = GenerationTable(max_records)
        self._cache_ms = cache_ms

    def fresh(self, name: str, now: int, mono: float) -> Generation | None:
        """The value of `name` if read less than `cache_ms` ago (or learnt from a purge)."""
        record = self.table.get(name, now)
        if record is not None and record.fresh_until > mono:
            return Generation(record.value, record.soft)
        return None

    def learn(self, name: str, replied: Replied, now: int, fresh_until: float) -> Generation:
        """Remember what Redis holds for `name`; an absent record is remembered for
        `cache_ms` too (as 0), then forgotten."""
        value, soft = parse_record(replied[0])
        ttl = replied[1]
        lives_ms = ttl if value and ttl > 0 else self._cache_ms + 1
        self.table.put(name, Record(value, now + lives_ms, fresh_until, soft))
        return Generation(value, soft)

    def learn_purged(self, name: str, replied: Replied, now: int, fresh_until: float) -> None:
        """`learn` after a purge, except that no record is forgotten rather than remembered
        as 0: a node may create it any moment (a store), and an entry stamped from it must
        not read as purged here meanwhile."""
        if parse_record(replied[0])[0]:
            self.learn(name, replied, now, fresh_until)
        else:
            self.table.discard(name)

    def local(self, names: Sequence[str], now: int) -> tuple[Generation, ...]:
        """What this node knows of `names` (0 for what it knows nothing of)."""
        get = self.table.get
        return tuple(
            Generation(r.value, r.soft) if (r := get(n, now)) is not None else Generation(0)
            for n in names
        )

    def lifetime(self, name: str, now: int) -> int:
        """How long this node knows `name`'s record to live (ms), 0 if it knows none."""
        record = self.table.get(name, now)
        return max(0, record.expires_at_ms - now) if record is not None and record.value else 0

    def forget_freshness(self, names: Sequence[str], now: int) -> None:
        """The next read of `names` asks Redis, whatever was read before."""
        for name in names:
            record = self.table.get(name, now)
            if record is not None:
                record.fresh_until = float("-inf")

    def bump_here(self, name: str, soft: bool, now: int) -> None:
        """Apply a purge to what this node knows (Redis gets its own nonce on replay)."""
        record = self.table.get(name, now)
        if record is not None and record.value:
            record.soft = soft_replaced(record.value, record.soft, now) if soft else ()
            record.value = new_nonce()

    def bump_epoch_here(self, now: int) -> None:
        self.bump_here(EPOCH, False, now)
