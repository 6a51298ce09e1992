"""A purge request of the sidecar's own API (the plugin's ``Invalidate``: one tag, route,
key or key prefix) as an invalidation event, so that it reaches every node.

The request is checked exactly as the engine checks its direct purges (same fields, same
messages, same reasons), then becomes a version-1 event through the extension fields
(`sidecar.events.extensions`): a route -> ``routes``, a key -> ``keys``, a key prefix ->
``key_prefixes``; a tag -> ``tags``. What the event format refuses beyond that (a key over
the format's own length) is raised as `InvalidRequestError` too, with the event's reason.
"""

from __future__ import annotations

from sidecar.core.errors import InvalidRequestError
from sidecar.core.limits import Limits, check_key, check_tag
from sidecar.engine.purge import check_route_name
from sidecar.events import EventError, InvalidationEvent

__all__ = ["TARGETS", "request_event"]

#: The targets of ``InvalidateRequest``, as its ``target`` oneof names them.
TARGETS = ("tag", "route", "key", "prefix")


def request_event(target: str, value: str | bytes, limits: Limits) -> InvalidationEvent:
    """The event that purges `value` as `target` (one of `TARGETS`: tag and route are
    text, key and prefix bytes). Raises `InvalidRequestError` for a value the engine or
    the event format refuses."""
    try:
        if target == "tag" and isinstance(value, str):
            check_tag(value, limits)
            return InvalidationEvent(tags=(value,))
        if target == "route" and isinstance(value, str):
            check_route_name(value, limits)
            return InvalidationEvent(routes=(value,))
        if target == "key" and isinstance(value, bytes):
            return InvalidationEvent(keys=(check_key(value, limits),))
        if target == "prefix" and isinstance(value, bytes):
            return InvalidationEvent(key_prefixes=(check_key(value, limits, "prefix"),))
    except EventError as exc:
        raise InvalidRequestError(target, exc.message, exc.reason.value) from exc
    raise TypeError(f"no purge target {target!r} of {type(value).__name__}")
