"""An event's plan (`sidecar.events.plan`) applied to the engine, and checked against it.

All tag-like operations of one event (tags, URL and prefix tags, route tags) go to the
engine in ONE `purge_tags` call with the event's idempotence id as `once`: the engine bumps
each shared generation at most once per id cluster-wide, so an event must never be split
over two calls with one id (the second would do nothing). ``flush: "*"`` is one
`purge_all`. Keys and key prefixes are deletes (`invalidate_key`, `invalidate_prefix`):
idempotent by nature, with no `once` (deleting twice costs an entry stored in between one
extra miss).

Not guaranteed: atomicity. Operations run in order; if one fails, those before it stay
applied (each is idempotent, so the caller retries the whole event).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

from sidecar.core.errors import InvalidRequestError
from sidecar.core.limits import Limits, check_key, check_tag
from sidecar.engine.purge import check_route_name, route_tag
from sidecar.events import Operation, PurgeAll, PurgeKey, PurgeKeyPrefix, PurgeRoute, PurgeTag

__all__ = ["PurgeEngine", "Refused", "apply_plan", "check_plan", "usable"]


class PurgeEngine(Protocol):
    """What invalidation needs of the engine (`sidecar.engine.engine.Engine`)."""

    @property
    def limits(self) -> Limits: ...

    async def purge_tags(
        self, tags: Sequence[str], *, soft: bool = False, once: str = ""
    ) -> int: ...

    async def purge_all(self, *, soft: bool = False, once: str = "") -> int: ...

    async def invalidate_key(self, key: bytes) -> int: ...

    async def invalidate_prefix(self, prefix: bytes) -> int: ...


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


async def apply_plan(engine: PurgeEngine, operations: Sequence[Operation], once: str) -> int:
    """Apply `operations` (one event's plan) with `once` as the event's idempotence id;
    the entries dropped now on this node. Raises what the engine raises (check the plan
    first: `check_plan`, `usable`)."""
    for op in operations:
        if isinstance(op, PurgeAll):
            return await engine.purge_all(soft=op.soft, once=once)
    dropped = 0
    tags, soft = _tags(operations)
    if tags:
        dropped += await engine.purge_tags(tags, soft=soft, once=once)
    for op in operations:
        if isinstance(op, PurgeKey):
            dropped += await engine.invalidate_key(op.key.encode("utf-8"))
        elif isinstance(op, PurgeKeyPrefix):
            dropped += await engine.invalidate_prefix(op.prefix.encode("utf-8"))
    return dropped
