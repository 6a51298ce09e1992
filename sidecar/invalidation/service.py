"""`Invalidations`: every purge made on this node, and every event read from the topic.

* `submit` is the one entry for purges made here (the plugin's ``Invalidate``, the admin
  API): it fills the event's ``id`` (when missing), ``origin`` (this node) and ``ts`` (now),
  applies it to the engine with ``once=<id>#<digest>`` (shared tiers and generations once, this
  node's memory at once), remembers the id, then hands the canonical bytes to the publisher
  (the Kafka bus: queued, sent in the background; nothing when Kafka is not configured).
  A broker that is down changes nothing here: the purge is applied and the event waits in
  the bus's outbox.
* `receive` is the bus's ``apply`` callback: parse (a refused event raises `BadEvent` with
  the event's `Reason`: counted, logged with its position by the consumer, skipped), skip an
  event whose id was applied here recently (this node's own events coming back, and
  redeliveries), else apply with ``once``.

The idempotence id (``once``) of an event with an ``id`` is that id plus the digest of
what it purges (``<id>#<32 hex digits>``, `sidecar.events.content_digest`): an id reused
for ANOTHER purge is applied, and an id guessed ahead of time (``dbz:<topic>:<p>:<offset>``)
cannot suppress a different future purge; the same id with the same purge within the
claim window is a duplicate (`Submitted.duplicate`). Without an ``id``: the digest of the
canonical form plus the position (``sha256:...@topic/partition/offset``): a redelivery of
that message is recognised, two equal purges sent a moment apart are not merged.

Keys and key prefixes of a RECEIVED event are deleted from this node's memory tier only
(`sidecar.invalidation.apply`): the node that accepted the purge deleted them from the
shared tiers. A message larger than `PARSE_INLINE_BYTES` is parsed in a worker thread with
the yielding decoder, so that no event stalls the loop for the length of its parse.

Not guaranteed: that an event is applied only once on this node. The record of applied ids
is bounded (`sidecar.engine.recent_ids.RecentIds`) and lives in this process: after a
restart, or after `max_recent_ids` newer events, an event read again is applied again. That
costs misses, never a stale answer: ``once`` keeps the shared generations from moving twice
cluster-wide, and what is applied again here is this node's memory (entries stored since
are dropped once more) and key deletes.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import uuid
from typing import TYPE_CHECKING, Protocol

from sidecar.core.clock import Clock
from sidecar.core.errors import InvalidRequestError
from sidecar.core.observer import NullObserver, Observer
from sidecar.engine.recent_ids import MAX_RECENT_IDS, RecentIds
from sidecar.events import (
    EventError,
    InvalidationEvent,
    content_digest,
    encode,
    event_id,
    parse,
    plan,
)
from sidecar.invalidation.apply import PurgeEngine, apply_plan, check_plan, usable

if TYPE_CHECKING:
    from sidecar.cluster.kafka_consumer import Position

__all__ = ["LOCAL", "OWN", "REMOTE", "Invalidations", "Publisher", "Submitted"]

log = logging.getLogger("strata.sidecar.invalidation")

#: Sources of an applied event (metric labels): submitted here, this node's own event read
#: from the topic, anyone else's.
LOCAL, OWN, REMOTE = "local", "own", "remote"
#: Messages larger than this are parsed in a worker thread (see the module doc).
PARSE_INLINE_BYTES = 64 * 1024
#: The reason counted for an item of a received event that this node's limits refuse.
ENGINE_REFUSED = "engine_refused"


class Publisher(Protocol):
    """Where submitted events go (`sidecar.cluster.kafka_bus.KafkaBus`)."""

    def publish(self, key: bytes | None, value: bytes) -> bool:
        """Queue `value`; whether it was kept. Never blocks, never raises for the broker."""
        ...


class _Nowhere:
    """No Kafka: events are applied here only."""

    def publish(self, key: bytes | None, value: bytes) -> bool:
        return False


NOWHERE: Publisher = _Nowhere()


@dataclasses.dataclass(frozen=True, slots=True)
class Submitted:
    """What `submit` did: the event's id, the entries dropped now on this node, whether
    the event was queued for publishing (False without Kafka, or refused by the outbox),
    and whether it was a `duplicate`: the same id with the same purge was applied already
    within the claim window (cluster-wide with Redis generations), so its tag purge bumped
    nothing now. Key deletes are made again either way (they are idempotent)."""

    id: str
    dropped: int
    queued: bool
    duplicate: bool = False


def once_key(event: InvalidationEvent) -> str | None:
    """The idempotence key of an event with an ``id``: ``<id>#<content digest>``."""
    return None if event.id is None else f"{event.id}#{content_digest(event)}"


def _read(value: bytes) -> tuple[InvalidationEvent, str | None]:
    event = parse(value, yielding=len(value) > PARSE_INLINE_BYTES)
    return event, once_key(event)


class Invalidations:
    """Applies and publishes invalidation events for one engine. Use from one event loop."""

    def __init__(
        self,
        engine: PurgeEngine,
        node_id: str,
        clock: Clock,
        observer: Observer | None = None,
        *,
        publisher: Publisher = NOWHERE,
        max_recent_ids: int = MAX_RECENT_IDS,
    ) -> None:
        self._engine = engine
        self._node_id = node_id
        self._clock = clock
        self._observer = observer or NullObserver()
        self._publisher = publisher
        self._recent = RecentIds(max_recent_ids)

    @property
    def node_id(self) -> str:
        return self._node_id

    def publish_through(self, publisher: Publisher) -> None:
        """Publish submitted events through `publisher` from now on (the bus is built after
        this object, since its apply callback is `receive`)."""
        self._publisher = publisher

    async def submit(self, event: InvalidationEvent) -> Submitted:
        """Apply `event` here and queue it for every other node (see the module doc).
        Raises `InvalidRequestError`, before anything is applied or queued, for an event
        this node's engine would refuse or one too large to publish."""
        event = dataclasses.replace(
            event,
            id=event.id or uuid.uuid4().hex,
            origin=self._node_id,
            ts=self._clock.now_ms(),
        )
        assert event.id is not None
        operations = plan(event)
        check_plan(operations, self._engine.limits)
        try:
            value = encode(event)
        except EventError as exc:
            raise InvalidRequestError("event", exc.message, exc.reason.value) from exc
        once = once_key(event)
        assert once is not None
        applied = await apply_plan(self._engine, operations, once)
        self._recent.add(once)
        self._observer.event_applied(LOCAL, None)
        queued = self._publisher.publish(self._node_id.encode(), value)
        log.debug(
            "invalidation submitted",
            extra={
                "event.action": "invalidation-submitted",
                "strata.event_id": event.id,
                "strata.dropped": applied.dropped,
                "strata.queued": queued,
                "strata.duplicate": applied.duplicate,
            },
        )
        return Submitted(event.id, applied.dropped, queued, applied.duplicate)

    async def receive(self, value: bytes, where: Position) -> None:
        """Apply one message read from the topic (the bus's ``apply``). Raises `BadEvent`
        for a message that can never be applied; any other exception is transient (the bus
        retries the message)."""
        # Only a sidecar with Kafka receives: one without never loads the Kafka client.
        from sidecar.cluster.kafka_consumer import BadEvent  # noqa: PLC0415

        try:
            if len(value) > PARSE_INLINE_BYTES:
                event, given = await asyncio.to_thread(_read, value)
            else:
                event, given = _read(value)
        except EventError as exc:
            self._observer.event_rejected(exc.reason.value)
            raise BadEvent(exc.reason.value, str(exc)) from exc
        source = OWN if event.origin == self._node_id else REMOTE
        self._observer.event_received(source)
        once = given or f"{event_id(event)}@{where.topic}/{where.partition}/{where.offset}"
        if once in self._recent:
            self._observer.event_replay_skipped(source)
            return

        def refused(cause: str, exc: InvalidRequestError) -> None:
            self._refused(event, where, cause, exc)

        operations = usable(plan(event), self._engine.limits, refused)
        try:
            applied = await apply_plan(self._engine, operations, once, local_only=True)
        except InvalidRequestError as exc:
            self._refused(event, where, exc.field, exc)
            raise BadEvent(ENGINE_REFUSED, str(exc)) from exc
        self._recent.add(once)
        lag = None if event.ts is None else (self._clock.now_ms() - event.ts) / 1000
        self._observer.event_applied(source, lag)
        log.debug(
            "invalidation event applied",
            extra={
                "event.action": "invalidation-applied",
                "strata.event_id": once,
                "strata.origin": event.origin or "",
                "strata.dropped": applied.dropped,
                "strata.kafka.topic": where.topic,
                "strata.kafka.partition": where.partition,
                "strata.kafka.offset": where.offset,
            },
        )

    def _refused(
        self, event: InvalidationEvent, where: Position, cause: str, exc: InvalidRequestError
    ) -> None:
        self._observer.event_rejected(ENGINE_REFUSED)
        log.warning(
            f"invalidation event item {cause} refused by this node's limits: {exc.message}",
            extra={
                "event.action": "invalidation-item-refused",
                "event.reason": exc.reason,
                "strata.event_id": event.id or "",
                "strata.kafka.topic": where.topic,
                "strata.kafka.partition": where.partition,
                "strata.kafka.offset": where.offset,
            },
        )
