"""Row changes to v1 events, with the counting and logging both sources share.

A change to a table that is not mapped is counted (`CdcStats.unknown_table`), logged with
where it was read, and skipped; a tag a template cannot render is counted
(`CdcStats.tag_problems`) and logged; the rest of the change still purges.

Warning lines of one kind (``event.action``) are limited to one per 5 s; each says in its
text and in ``strata.suppressed`` how many it held back (the counters count them all).
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Iterable

from sidecar.cdc.changes import RowChange
from sidecar.cdc.mapping import TableMap
from sidecar.cdc.outgoing import events_for
from sidecar.cdc.publish import Outgoing
from sidecar.core.backoff import LogLimit
from sidecar.events import encode

__all__ = ["CdcStats", "Translator"]

log = logging.getLogger("strata.cdc")


@dataclasses.dataclass(slots=True)
class CdcStats:
    """Counters since start."""

    transactions: int = 0
    changes: int = 0
    events: int = 0
    tags: int = 0
    unknown_table: int = 0
    tag_problems: int = 0
    hashed_tags: int = 0
    malformed: int = 0
    tombstones: int = 0
    dead_lettered: int = 0


class Translator:
    """Maps changes through a `TableMap` into encoded events for `topic`."""

    def __init__(self, mapping: TableMap, topic: str, stats: CdcStats) -> None:
        self._mapping = mapping
        self._topic = topic
        self.stats = stats
        self._limits: dict[str, LogLimit] = {}

    def warn(self, action: str, text: str, **fields: object) -> None:
        """A warning limited to one per 5 s per `action`."""
        limit = self._limits.setdefault(action, LogLimit(5.0))
        held = limit.take(time.monotonic())
        if held is not None:
            extra = {"event.action": action, "strata.suppressed": held}
            extra.update({f"strata.{k}": v for k, v in fields.items()})
            if held:
                text = f"{text} [{held} similar lines held back]"
            log.warning(text, extra=extra)

    def knows(self, change: RowChange) -> bool:
        """Whether `change`'s table is mapped."""
        return self._mapping.rule_for(change.schema, change.table) is not None

    def messages(
        self,
        changes: Iterable[RowChange],
        *,
        origin: str,
        ts: int | None,
        base: str,
        key: bytes,
        where: str,
    ) -> list[Outgoing]:
        """The encoded events purging what `changes` touched (none if nothing maps)."""
        tags: list[str] = []
        for change in changes:
            self.stats.changes += 1
            rule = self._mapping.rule_for(change.schema, change.table)
            if rule is None:
                self.stats.unknown_table += 1
                self.warn(
                    "cdc-unknown-table",
                    f"change to unmapped table {change.schema}.{change.table} skipped ({where})",
                    where=where,
                )
                continue
            found = self._mapping.tags(rule, change)
            self.stats.hashed_tags += found.hashed
            for problem in found.problems:
                self.stats.tag_problems += 1
                self.warn("cdc-tag-problem", f"{problem} ({where})", where=where)
            tags.extend(found.tags)
        events = events_for(tags, origin=origin, ts=ts, base=base)
        self.stats.events += len(events)
        self.stats.tags += sum(len(e.tags) for e in events)
        return [Outgoing(self._topic, key, encode(e)) for e in events]
