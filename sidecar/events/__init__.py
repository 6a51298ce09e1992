"""Invalidation events, version 1: the format anyone may publish on the invalidation topic,
and the purges an event asks for. Pure: no Kafka, no engine, no I/O.

* `parse` (bytes -> `InvalidationEvent`, or `EventError` with a stable `Reason`),
  `encode` (canonical bytes), `event_id` (idempotence key), `content_digest` (what it
  purges): `sidecar.events.event`;
* `plan` (event -> `PurgeTag` / `PurgeAll` / `PurgeRoute` / `PurgeKey` / `PurgeKeyPrefix`
  operations): `sidecar.events.plan`;
* the extension fields ``keys``, ``routes``, ``key_prefixes``: `sidecar.events.extensions`;
* the tag scheme the plugin stamps on entries so that events reach them:
  `sidecar.events.tagging`.

The JSON Schema ``schema/strata.invalidation.v1.schema.json`` and
``docs/invalidation-events.md`` describe the same format for producers.
"""

from sidecar.events.errors import EventError, Reason
from sidecar.events.event import InvalidationEvent, content_digest, encode, event_id, parse
from sidecar.events.json_input import MAX_DEPTH, MAX_EVENT_BYTES
from sidecar.events.plan import (
    Operation,
    PurgeAll,
    PurgeKey,
    PurgeKeyPrefix,
    PurgeRoute,
    PurgeTag,
    plan,
)

__all__ = [
    "MAX_DEPTH",
    "MAX_EVENT_BYTES",
    "EventError",
    "InvalidationEvent",
    "Operation",
    "PurgeAll",
    "PurgeKey",
    "PurgeKeyPrefix",
    "PurgeRoute",
    "PurgeTag",
    "Reason",
    "content_digest",
    "encode",
    "event_id",
    "parse",
    "plan",
]
