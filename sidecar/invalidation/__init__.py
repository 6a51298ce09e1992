"""Invalidation events in and out of this sidecar.

* `Invalidations` (`sidecar.invalidation.service`): `submit` applies a purge made here and
  publishes it; `receive` applies an event read from the topic (the Kafka bus's apply
  callback), once per event id.
* `request_event` (`sidecar.invalidation.requests`): the plugin's ``Invalidate`` target as
  an event.
* `sidecar.invalidation.apply`: an event's plan through the engine (`purge_tags`,
  `purge_all`, key deletes) with the event id as ``once``.
* `sidecar.invalidation.kafka`: the bus of a configured sidecar (imports the Kafka client;
  not imported here).
"""

from sidecar.invalidation.requests import TARGETS, request_event
from sidecar.invalidation.service import LOCAL, OWN, REMOTE, Invalidations, Publisher, Submitted

__all__ = [
    "LOCAL",
    "OWN",
    "REMOTE",
    "TARGETS",
    "Invalidations",
    "Publisher",
    "Submitted",
    "request_event",
]
