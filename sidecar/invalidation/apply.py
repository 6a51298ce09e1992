"""An event's plan (`sidecar.events.plan`) applied to the engine, and checked against it.

All tag-like operations of one event (tags, URL and prefix tags, route tags) go to the
engine in ONE `purge_tags` call with the event's idempotence id as `once`: the engine bumps
each shared generation at most once per id cluster-wide, so an event must never be split
over two calls with one id (the second would do nothing). ``flush: "*"`` is one
`purge_all`. Keys and key prefixes are deletes (`invalidate_key`, `invalidate_prefix`):
idempotent by nature, with no `once` (deleting twice costs an entry stored in between one
extra miss). With ``local_only`` (an event read from the bus) they reach this node's
`NODE_LOCAL` tier only: the node that accepted the purge deleted them from the shared tiers
once, and walking Redis and PostgreSQL again on every node would repeat that work N times
while later events wait. Between two prefix deletes the loop is yielded to (each one walks
the memory tier's keys: O(entries) per prefix, at most `MAX_KEY_PREFIXES` per event).

Not guaranteed: atomicity. Operations run in order; if one fails, those before it stay
applied (each is idempotent, so the caller retries the whole event).
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable, Sequence
from typing import Protocol

from sidecar.core.errors import InvalidRequestError
from sidecar.core.limits import Limits, check_key, check_tag
from sidecar.engine.purge import check_route_name, route_tag
from sidecar.events import Operation, PurgeAll, PurgeKey, PurgeKeyPrefix, PurgeRoute, PurgeTag

__all__ = ["Applied", "PurgeEngine", "Refused", "apply_plan", "check_plan", "usable"]


class PurgeEngine(Protocol):
    """What invalidation needs of the engine (`sidecar.engine.engine.Engine`)."""

    @property
    def limits(self) -> Limits: ...

    async def purge_event(
        self, tags: Sequence[str] | None, *, soft: bool = False, once: str = ""
    ) -> tuple[int, bool]: ...

    async def invalidate_key(self, key: bytes, *, local_only: bool = False) -> int: ...

    async def invalidate_prefix(self, prefix: bytes, *, local_only: bool = False) -> int: ...


@dataclasses.dataclass(frozen=True, slots=True)
class Applied:
    """What `apply_plan` did: entries dropped now on this node, and whether the event's tag
    purge was a duplicate (its `once` was applied already, so nothing was bumped; False
    for an event without tags, whose deletes are always made)."""

    dropped: int
    duplicate: bool


#: Told of an operation the engine refused (its cause, e.g. ``keys[2]``, and the error).
Refused = Callable[[str, InvalidRequestError], None]


def _tags(operations: Sequence[Operation]) -> tuple[list[str], bool]:
    """Every tag to purge (route tags included) and whether the purge is soft."""
    tags: dict[str, None] = {}
    soft = False
    for op in operations:
        if isinstance(op, PurgeTag):
            tags[op.tag] = None
            soft = op.soft
        elif isinstance(op, PurgeRoute):
            tags[route_tag(op.route)] = None
            soft = op.soft
    return list(tags), soft


def _check(op: Operation, limits: Limits) -> None:
    try:
        if isinstance(op, PurgeTag):
            check_tag(op.tag, limits)
        elif isinstance(op, PurgeRoute):
            check_route_name(op.route, limits)
        elif isinstance(op, PurgeKey):
            check_key(op.key.encode("utf-8"), limits)
        elif isinstance(op, PurgeKeyPrefix):
            check_key(op.prefix.encode("utf-8"), limits, "prefix")
    except InvalidRequestError as exc:
        raise InvalidRequestError(op.cause, exc.message, exc.reason) from exc


def check_plan(operations: Sequence[Operation], limits: Limits) -> None:
    """Raise `InvalidRequestError` for the first operation the engine would refuse under
    `limits` (a key longer than ``max_key_bytes``, a tag longer than ``max_tag_bytes``),
    naming its cause (``keys[2]``) as the field."""
    for op in operations:
        _check(op, limits)


def usable(operations: Sequence[Operation], limits: Limits, refused: Refused) -> list[Operation]:
    """The operations the engine accepts under `limits`; each other one is passed to
    `refused` (with the error naming its cause) and left out."""
    kept: list[Operation] = []
    for op in operations:
        try:
            _check(op, limits)
        except InvalidRequestError as exc:
            refused(op.cause, exc)
            continue
        kept.append(op)
    return kept


async def apply_plan(
    engine: PurgeEngine, operations: Sequence[Operation], once: str, *, local_only: bool = False
) -> Applied:
    """Apply `operations` (one event's plan) with `once` as the event's idempotence id
    (`local_only`: key deletes on this node's memory only, see the module doc). Raises what
    the engine raises (check the plan first: `check_plan`, `usable`)."""
    for op in operations:
        if isinstance(op, PurgeAll):
            dropped, bumped = await engine.purge_event(None, soft=op.soft, once=once)
            return Applied(dropped, not bumped)
    dropped = 0
    duplicate = False
    tags, soft = _tags(operations)
    if tags:
        dropped, bumped = await engine.purge_event(tags, soft=soft, once=once)
        duplicate = not bumped
    walked = False
    for op in operations:
        if isinstance(op, PurgeKey):
            dropped += await engine.invalidate_key(op.key.encode("utf-8"), local_only=local_only)
        elif isinstance(op, PurgeKeyPrefix):
            if walked:
                await asyncio.sleep(0)  # one walk of the keys at a time on the loop
            walked = True
            prefix = op.prefix.encode("utf-8")
            dropped += await engine.invalidate_prefix(prefix, local_only=local_only)
    return Applied(dropped, duplicate)
