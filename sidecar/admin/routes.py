"""The admin API's routes: which path and method do what, and the replies.

=======================================  ======================================================
``DELETE /proxy-cache``                  purge everything (``{"flush": "*"}``): 204
``DELETE /proxy-cache/{key}``            purge one cache key: 204 when this node held it,
                                         404 when not (the purge still goes to every node)
``GET /proxy-cache/{key}``               what a lookup would find (never the body): 200, 404
``.../proxy-cache/{plugin_id}/caches/    the same two (Kong's per-plugin form; the plugin id
{key}``                                  is not checked: Strata has one cache)
``POST /purge``                          any purge (JSON event body or query form): 200 JSON
=======================================  ======================================================

The Kong-style purges keep Kong's status codes (scripts test for 204) and report the event
in headers (`EVENT_HEADERS`); ``POST /purge`` answers ``{"id", "dropped", "queued",
"duplicate"}``. `Routes.handle` returns the response with the purge it submitted (if any),
for the caller's audit log line.
Keys in paths are percent-encoded (a ``/`` in a key is ``%2F``).
"""

from __future__ import annotations

import asyncio
import hashlib
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

from sidecar.admin.http import HttpError, Request, Response, json_response
from sidecar.admin.ports import Peeked, Peeker, Submitted, Submitter
from sidecar.admin.purges import (
    PurgeRequestError,
    event_from_body,
    event_from_query,
    flush_all_event,
    key_event,
    query_params,
    soft_flag,
)
from sidecar.core.clock import Clock
from sidecar.core.errors import InvalidRequestError
from sidecar.events import InvalidationEvent

__all__ = [
    "EVENT_HEADERS",
    "ROUTES",
    "Handled",
    "Match",
    "Purged",
    "Routes",
    "describe",
    "match",
    "route_of",
]

#: Route labels (metrics); ``none`` is used for requests refused before routing.
ROUTES = ("proxy_cache", "proxy_cache_key", "purge", "unmatched")
EVENT_HEADERS = ("Strata-Event-Id", "Strata-Dropped", "Strata-Queued", "Strata-Duplicate")
#: Bodies larger than this are hashed off the event loop.
_HASH_INLINE_BYTES = 256 * 1024


@dataclass(frozen=True, slots=True)
class Match:
    """A routed request: its route label, the handler name and the decoded cache key."""

    route: str
    action: str
    key: str = ""


@dataclass(frozen=True, slots=True)
class Purged:
    """A purge submitted for a request: the event as asked and what became of it."""

    event: InvalidationEvent
    done: Submitted


@dataclass(frozen=True, slots=True)
class Handled:
    """A handler's response, and the purge it submitted (None for a read or a refusal)."""

    response: Response
    purge: Purged | None = None


_ALLOW = {
    "proxy_cache": {"DELETE": "purge_all"},
    "proxy_cache_key": {"GET": "peek", "DELETE": "purge_key"},
    "purge": {"POST": "purge"},
}


def _key(raw: str) -> str:
    try:
        key = unquote(raw, errors="strict")
    except UnicodeDecodeError:
        raise HttpError(400, "bad_request", "the cache key is not UTF-8 once decoded") from None
    if not key:
        raise HttpError(400, "bad_request", "the cache key is empty")
    return key


def route_of(path: str) -> tuple[str, str]:
    """The route label of `path` (``unmatched`` when none) and the raw cache key in it."""
    parts = path.split("/")[1:]
    if parts == ["proxy-cache"]:
        return "proxy_cache", ""
    if len(parts) == 2 and parts[0] == "proxy-cache" and parts[1]:
        return "proxy_cache_key", parts[1]
    if len(parts) == 4 and parts[0] == "proxy-cache" and parts[2] == "caches" and parts[3]:
        return "proxy_cache_key", parts[3]
    if parts == ["purge"]:
        return "purge", ""
    return "unmatched", ""


def match(method: str, path: str) -> Match:
    """The route of `method` `path`; HttpError 404 (unknown path) or 405 (with Allow)."""
    route, key = route_of(path)
    if route == "unmatched":
        raise HttpError(404, "not_found", f"no such path: {path[:100]}")
    action = _ALLOW[route].get(method)
    if action is None:
        allow = ", ".join(_ALLOW[route])
        raise HttpError(
            405,
            "method_not_allowed",
            f"{method} is not allowed here (allowed: {allow})",
            (("Allow", allow),),
        )
    return Match(route, action, _key(key) if key else "")


def _bool(value: bool) -> str:
    return "true" if value else "false"


def _event_headers(done: Submitted) -> tuple[tuple[str, str], ...]:
    values = (done.id, str(done.dropped), _bool(done.queued), _bool(done.duplicate))
    return tuple(zip(EVENT_HEADERS, values, strict=True))


def _event_fields(done: Submitted) -> dict[str, Any]:
    return {
        "id": done.id,
        "dropped": done.dropped,
        "queued": done.queued,
        "duplicate": done.duplicate,
    }


def _peek_headers(request: Request) -> tuple[tuple[bytes, bytes], ...]:
    """``?header=Name:value`` (repeatable): request headers that choose a Vary variant."""
    out = []
    for name, value in query_params(request.query):
        if name != "header":
            raise PurgeRequestError(f"unknown parameter {name[:40]!r} here (only header)")
        hname, colon, hvalue = value.partition(":")
        if not colon or not hname.strip():
            raise PurgeRequestError(f"header={value[:40]!r} must be Name:value")
        out.append((hname.strip().lower().encode("latin-1"), hvalue.strip().encode("latin-1")))
    return tuple(out)


class Routes:
    """The handlers, over a `Submitter` (purges) and a `Peeker` (reads)."""

    def __init__(self, submitter: Submitter, peeker: Peeker, clock: Clock) -> None:
        self._submitter = submitter
        self._peeker = peeker
        self._clock = clock

    async def handle(self, found: Match, request: Request, body: bytes) -> Handled:
        """The response to a routed request (HttpError 400 for a bad purge)."""
        try:
            if found.action == "peek":
                return Handled(await self._peek(found.key, request))
            if found.action == "purge":
                return await self._purge(request, body)
            soft = soft_flag(query_params(request.query))
            if found.action == "purge_all":
                purged = await self._submit(flush_all_event(soft))
                return Handled(Response(204, headers=_event_headers(purged.done)), purged)
            return await self._purge_key(found.key, soft)
        except PurgeRequestError as exc:
            raise HttpError(400, "bad_request", exc.message) from None

    async def _submit(self, event: InvalidationEvent) -> Purged:
        try:
            return Purged(event, await self._submitter.submit(event))
        except InvalidRequestError as exc:  # the engine's own checks (a key too long, ...)
            raise HttpError(400, "bad_request", str(exc)) from None

    async def _purge(self, request: Request, body: bytes) -> Handled:
        params = query_params(request.query)
        if body and params:
            raise PurgeRequestError("give the purge as a JSON body or as a query, not both")
        if body:
            if len(body) > _HASH_INLINE_BYTES:  # parsing 1 MiB takes ~0.1 s: not on the loop
                event = await asyncio.to_thread(event_from_body, body)
            else:
                event = event_from_body(body)
        else:
            event = event_from_query(params)
        purged = await self._submit(event)
        return Handled(json_response(200, _event_fields(purged.done)), purged)

    async def _purge_key(self, key: str, soft: bool) -> Handled:
        event = key_event(key, soft)
        held = await self._peek_one(key, ())
        purged = await self._submit(event)
        done = purged.done
        if held is None and not done.dropped:
            fields = {"message": "not cached on this node (purged on every node all the same)"}
            return Handled(json_response(404, fields | _event_fields(done)), purged)
        return Handled(Response(204, headers=_event_headers(done)), purged)

    async def _peek_one(self, key: str, headers: tuple[tuple[bytes, bytes], ...]) -> Peeked | None:
        try:
            return await self._peeker.peek(key.encode("utf-8"), headers)
        except InvalidRequestError as exc:
            raise HttpError(400, "bad_request", str(exc)) from None

    async def _peek(self, key: str, request: Request) -> Response:
        found = await self._peek_one(key, _peek_headers(request))
        if found is None:
            return json_response(404, {"message": "not cached on this node"})
        body = found.entry.body
        if len(body) > _HASH_INLINE_BYTES:
            digest = await asyncio.to_thread(lambda: hashlib.sha256(body).hexdigest())
        else:
            digest = hashlib.sha256(body).hexdigest()
        return json_response(200, describe(key, found, digest, self._clock.now_ms()))


def describe(key: str, found: Peeked, body_sha256: str, now_ms: int) -> dict[str, Any]:
    """The JSON view of a peeked entry: everything but the body (its size and digest).
    ``ttl_ms`` is the freshness lifetime a lookup works with (cut at a soft purge);
    ``stored_ttl_ms`` the one the entry was stored with."""
    entry = found.entry
    stored_ttl = found.stored_ttl_ms
    return {
        "key": key,
        "tier": found.tier,
        "state": found.state,
        "status": entry.status,
        "stored_at_ms": entry.stored_at_ms,
        "ttl_ms": entry.ttl_ms,
        "stored_ttl_ms": entry.ttl_ms if stored_ttl is None else stored_ttl,
        "age_ms": max(0, now_ms - entry.stored_at_ms),
        "stale_while_revalidate_ms": entry.stale_while_revalidate_ms,
        "stale_if_error_ms": entry.stale_if_error_ms,
        "tags": list(entry.tags),
        "vary": list(entry.vary),
        "headers": [[n.decode("latin-1"), v.decode("latin-1")] for n, v in entry.headers],
        "body_bytes": len(entry.body),
        "body_sha256": body_sha256,
    }
