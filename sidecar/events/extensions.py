"""The extension fields of version 1 that name cache keys rather than requests.

Version 1 is extended by fields older readers ignore (``docs/invalidation-events.md``).
These three let every purge the sidecar's own APIs accept (the plugin's ``Invalidate``,
the admin API) travel as an event, so that it reaches every node:

* ``keys``: exact cache keys, as the plugin builds them (``v1:<route>:...``); each one is
  dropped from every tier that holds it.
* ``routes``: route key prefixes, as ``InvalidateRequest.route`` and ``StoreRequest.route``
  carry them (``v1:<route id>:``); each one purges the route's tag (``route:<route>``),
  which every entry stored with that route carries.
* ``key_prefixes``: cache-key prefixes (at most `MAX_KEY_PREFIXES`); every key starting
  with one is dropped on the tiers that can walk keys (memory, Redis, PostgreSQL; not
  Memcached, whose entries expire).

Where keys and key prefixes are deleted: the sidecar that accepts the purge (``Invalidate``,
the admin API) deletes them from every tier, shared ones included; a sidecar that READS the
event from the topic deletes them from its own memory tier only. So an event with ``keys``
or ``key_prefixes`` published by anyone else reaches every node's memory but not Redis,
Memcached or PostgreSQL: send such purges through a sidecar's admin API.

``soft`` (mark stale) applies to ``routes`` like to tags, but a key purge removes the
entry: an event with ``soft`` and any ``keys`` or ``key_prefixes`` is refused
(``soft_key_purge``) rather than half honoured.

Not guaranteed: a key or a prefix is not checked against this sidecar's ``max_key_bytes``
here (the engine refuses a longer one when applying); keys are matched byte for byte
(their UTF-8), with no normalisation.
"""

from __future__ import annotations

import re

from sidecar.events.text import check_text

__all__ = [
    "MAX_KEY_CHARS",
    "MAX_KEY_PREFIXES",
    "MAX_ROUTE_CHARS",
    "NOT_KEY_TEXT",
    "NOT_ROUTE_TEXT",
    "ROUTE_TAG_CHARS",
    "check_key",
    "check_route",
]

#: Characters in a key or a key prefix (the largest ``max_key_bytes`` a sidecar accepts).
MAX_KEY_CHARS = 64 * 1024
#: Items in ``key_prefixes`` (each one is a walk of a node's memory tier's keys).
MAX_KEY_PREFIXES = 16
#: Length of the prefix the engine puts before a route to make its tag (``route:``).
ROUTE_TAG_CHARS = len("route:")
#: Characters in a route (``route:<route>`` must make a tag of at most 256 characters).
MAX_ROUTE_CHARS = 256 - ROUTE_TAG_CHARS
#: Keys and key prefixes: no C0 control character and no DEL (the sidecar's key rule).
NOT_KEY_TEXT = re.compile(r"[\u0000-\u001f\u007f]")
#: Routes: printable ASCII without spaces (they become tags).
NOT_ROUTE_TEXT = re.compile(r"[^!-~]")


def check_key(value: str, field: str) -> None:
    """A cache key or key prefix: 1..`MAX_KEY_CHARS` characters without control
    characters."""
    check_text(value, field, MAX_KEY_CHARS, NOT_KEY_TEXT, "a cache key: no control character")


def check_route(value: str, field: str) -> None:
    """A route key prefix: 1..`MAX_ROUTE_CHARS` characters of printable ASCII without
    spaces."""
    check_text(
        value,
        field,
        MAX_ROUTE_CHARS,
        NOT_ROUTE_TEXT,
        "a route key prefix: printable ASCII without spaces",
    )
