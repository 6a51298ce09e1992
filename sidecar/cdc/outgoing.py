"""The v1 events of one source transaction (or one Debezium message): tags split into
events that fit, with ids that a re-read reproduces. Pure.

Ids: ``<base>:<part>``, the base naming where the change was read -- ``cdc:<slot>:<commit
end LSN>`` for the slot (`slot_event_base`), ``dbz:<topic>:<partition>:<offset>`` for
Debezium (`debezium_event_base`) -- and the part numbering the events of one transaction
from 0. Reading the same change again (after a crash before the slot moved or the offset was
committed) gives the same ids, and the sidecars skip an id they already applied.

Not guaranteed: the same ids mean the same tags only while the mapping is unchanged (a
re-read after the mapping changed reuses the ids: a sidecar that applied the old event skips
the new one); ids of two databases that share a slot name and reach the same LSN collide.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from sidecar.events import EventError, InvalidationEvent, Reason, encode
from sidecar.events.event import MAX_ID_CHARS, MAX_ITEMS

__all__ = ["debezium_event_base", "events_for", "format_lsn", "slot_event_base"]

#: Room kept in an id for ``:<part>``.
_PART_CHARS = 8


def format_lsn(lsn: int) -> str:
    """PostgreSQL's spelling of an LSN (``16/B374D848``)."""
    return f"{lsn >> 32:X}/{lsn & 0xFFFFFFFF:X}"


def _fit(base: str) -> str:
    limit = MAX_ID_CHARS - _PART_CHARS
    if len(base) <= limit:
        return base
    return base[:40] + "~" + hashlib.sha256(base.encode()).hexdigest()[:32]


def slot_event_base(slot: str, end_lsn: int) -> str:
    return _fit(f"cdc:{slot}:{format_lsn(end_lsn)}")


def debezium_event_base(topic: str, partition: int, offset: int) -> str:
    return _fit(f"dbz:{topic}:{partition}:{offset}")


def events_for(
    tags: Sequence[str], *, origin: str, ts: int | None, base: str
) -> list[InvalidationEvent]:
    """Events purging `tags` (in this order, duplicates dropped), each within the event
    limits (`MAX_ITEMS` tags, ``MAX_EVENT_BYTES`` encoded); none for no tags."""
    unique = list(dict.fromkeys(tags))
    chunks = [unique[i : i + MAX_ITEMS] for i in range(0, len(unique), MAX_ITEMS)]
    events: list[InvalidationEvent] = []
    while chunks:
        chunk = chunks.pop(0)
        event = InvalidationEvent(
            tags=tuple(chunk), origin=origin, ts=ts, id=f"{base}:{len(events)}"
        )
        try:
            encode(event)
        except EventError as exc:
            if exc.reason is not Reason.TOO_LARGE or len(chunk) < 2:
                raise
            half = len(chunk) // 2
            chunks[:0] = [chunk[:half], chunk[half:]]
            continue
        events.append(event)
    return events
