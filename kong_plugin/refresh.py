"""Background refresh of a stale entry (RFC 5861 §3): the request that holds the key's fill
lease inside the entry's ``stale-while-revalidate`` window is answered stale at once, like
every other request then, and the entry is refreshed from the plugin server, outside any
client's request.

Two steps:

* `plan` (in the lease holder's ``access`` phase, pure): the refresh request, or `Unusable`
  -- then the handler revalidates in the foreground, as without background refreshes.
  Method GET (a HEAD holding the lease refreshes with GET: the entry is a GET's); the path
  and query Kong would send upstream and the ``Host`` it would send
  (`kong_plugin.upstream_target`); the headers of `refresh_headers`. A request whose key
  holds a consumer is never refreshed in the background: the refresh cannot speak for
  that consumer (Kong's auth plugins add what identifies it upstream).
* `run` (on the pool of `kong_plugin.refresh_pool`): one GET (`kong_plugin.refresh_http`,
  bounded by ``background_refresh.timeout_ms``), then `settle`, which reuses the decisions
  a foreground request makes (`kong_plugin.decide`): a 304 merges the answer into the
  entry (RFC 9111 §3.2, §4.3.4) and stores it with renewed freshness; another status is
  stored exactly as a miss would be (`response_decision`, `plan_store`, the body read up
  to ``max_body_bytes`` + 1). A 5xx, no answer in time, a failed connection or an answer
  that may not be stored store nothing: the lease is released and the stale copy stays,
  served while its windows last (after them, a foreground revalidation as usual). Stores
  and releases are the sidecar client calls a foreground request makes (a store ends the
  lease). The answer, or its absence, also feeds the origin's health
  (`kong_plugin.origin`) as a foreground request's would.

Headers a refresh carries (`refresh_headers`), copied from the lease holder's request as
the origin would have seen it (override headers already removed,
`kong_plugin.poisoning`): those the key varies on (``vary_headers``), those the stored
response's ``Vary`` names, and the route's ``background_refresh.forward_headers``; plus the
entry's validators (``If-None-Match`` / ``If-Modified-Since``,
`kong_plugin.validation.revalidation_headers`). Never: ``Cookie`` or ``Authorization``
unless ``forward_headers`` lists them, the headers ``strip_request_headers`` covers,
hop-by-hop headers, the client's own conditionals, what Kong sets upstream itself
(``Host``, for which Kong's rule applies; ``X-Forwarded-*``, ``X-Real-IP``, ``Via``, whose
client values Kong replaces, so a refresh sends none of them). When a
header the entry varies on is present but may not be sent, the refresh could not ask for
the same variant: `Unusable`. The request's credential rule (`kong_plugin.credentials`) is
worked out again for what the refresh sends: a refresh without the client's ``Cookie``
stores the answer an anonymous request gets.

Not guaranteed: that the origin answers the refresh as it would the client's request
through Kong -- other plugins' changes to the upstream request (added headers, a rewritten
path) are not applied, and Kong's ``X-Forwarded-*``/``Via`` are not sent; that one refresh
runs per key cluster-wide if a refresh outlives the sidecar's lease TTL (another lease
holder may then start one).
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from strata.v1 import cache_pb2 as pb

from kong_plugin import decide, wire
from kong_plugin.client import SidecarError
from kong_plugin.config import PluginConfig
from kong_plugin.credentials import guard
from kong_plugin.headers import HOP_BY_HOP, Headers
from kong_plugin.identity import classify
from kong_plugin.inflight import RequestState
from kong_plugin.origin import FAILURE_STATUSES, OriginHealth
from kong_plugin.poisoning import KONG_FORWARDED, header_family
from kong_plugin.refresh_http import Fetched, FetchError, fetch
from kong_plugin.refresh_pool import Outcome
from kong_plugin.replies import Served
from kong_plugin.route_facts import Names
from kong_plugin.sidecar_jobs import STORE_TIMEOUT_S
from kong_plugin.stored import StoredEntry
from kong_plugin.upstream_target import Destination, Target, Unusable, destination
from kong_plugin.validation import revalidation_headers

log = logging.getLogger("strata.plugin")

#: Never copied from the client's request: framing, what Kong sets upstream itself
#: (``Host``, ``X-Forwarded-*``, ``X-Real-IP``, ``Via``: a client's own values never reach
#: the origin through Kong), ranges and the client's conditionals (the refresh sends the
#: entry's validators instead).
NEVER_COPIED = (
    HOP_BY_HOP
    | KONG_FORWARDED
    | {
        "host",
        "via",
        "content-length",
        "expect",
        "range",
        "if-range",
        "if-match",
        "if-none-match",
        "if-modified-since",
        "if-unmodified-since",
    }
)
#: Sent only when ``background_refresh.forward_headers`` lists them.
CREDENTIALS = frozenset({"cookie", "authorization"})

#: The HTTP GET (`kong_plugin.refresh_http.fetch`'s signature; tests pass fakes).
Fetch = Callable[[Destination, Sequence[tuple[str, str]], float, int], Fetched]
HeaderLines = list[tuple[bytes, bytes]]


class SidecarCalls(Protocol):
    """The sidecar client calls a refresh makes (`kong_plugin.client.SidecarClient`'s)."""

    timeout_s: float

    def store(
        self,
        key: bytes,
        entry: pb.Entry,
        request_headers: HeaderLines | None = None,
        timeout_s: float | None = None,
        route: str = "",
    ) -> object: ...

    def release(self, key: bytes, timeout_s: float | None = None) -> object: ...

    def invalidate(self, *, key: bytes | None = None) -> object: ...


@dataclass(frozen=True, slots=True)
class RefreshJob:
    """One planned refresh: where (`destination`), with which `headers`, and the refresh
    as the response decisions see it (`state`: a revalidating GET holding the lease).
    `names`: the route's and service's names, for the new entry's event tags."""

    destination: Destination
    headers: tuple[tuple[str, str], ...]
    state: RequestState
    names: Names
    timeout_s: float


def _connection_listed(lines: HeaderLines) -> set[str]:
    listed: set[str] = set()
    for name, value in lines:
        if name.lower() == b"connection":
            text = value.decode("latin-1")
            listed.update(t.strip().lower() for t in text.split(",") if t.strip())
    return listed


def refresh_headers(
    lines: HeaderLines, entry: StoredEntry, cfg: PluginConfig
) -> tuple[tuple[str, str], ...] | Unusable:
    """The client's header lines a refresh carries, in the request's order (module
    docstring; the entry's validators are added by `plan`); `Unusable` when a header the
    entry varies on is in the request but may not be sent."""
    varied = {*cfg.vary_header_names, *(name.lower() for name in entry.vary)}
    forwarded = {name.lower() for name in cfg.background_refresh.forward_headers}
    listed = _connection_listed(lines)
    out: list[tuple[str, str]] = []
    for raw_name, raw_value in lines:
        name = raw_name.decode("latin-1")
        low = name.lower()
        if low not in varied and low not in forwarded:
            continue
        if (
            low in NEVER_COPIED
            or header_family(low) in KONG_FORWARDED
            or low in listed
            or low.startswith("proxy-")
            or low in cfg.strip_header_names
            or (low in CREDENTIALS and low not in forwarded)
        ):
            if low in varied:
                return Unusable(f"the entry varies on {low}, which a refresh may not send")
            continue
        out.append((name, raw_value.decode("utf-8", "surrogateescape")))
    return tuple(out)


def _as_lines(headers: Sequence[tuple[str, str]]) -> HeaderLines:
    return [(n.encode("latin-1"), v.encode("utf-8", "surrogateescape")) for n, v in headers]


def plan(
    target: Target,
    state: RequestState,
    stale: Served,
    lines: HeaderLines,
    has_query: bool,
    stale_if_error: bool,
    cfg: PluginConfig,
    now: float,
) -> RefreshJob | Unusable:
    """The refresh of `stale` (the entry the lease holder is answered with) for the
    request `state` (after its lookup; `lines`: its header lines as the origin would see
    them; `has_query`: its request line had a ``?``), or why there is none."""
    dest = destination(target, state.path, state.query, has_query, state.host)
    if isinstance(dest, Unusable):
        return dest
    entry = stale.entry
    copied = refresh_headers(lines, entry, cfg)
    if isinstance(copied, Unusable):
        return copied
    fields: dict[str, list[str]] = {}
    for name, value in copied:
        fields.setdefault(name.lower(), []).append(value)
    sent = Headers.of(fields)
    rule = guard(sent, classify(sent, None, lambda: None), False, cfg)
    refresh = dataclasses.replace(
        state,
        method="GET",
        request_headers=_as_lines(copied),
        request_cc=None,
        guard=rule,
        request_time=now,
        client_conditional=False,
        debug=False,
        fill_lease=True,
    )
    refresh.revalidating(entry, stale.age_s, now, stale_if_error)
    return RefreshJob(
        dest,
        (*copied, *revalidation_headers(entry.headers).items()),
        refresh,
        Names(target.route_name, target.service_name),
        cfg.background_refresh.timeout_ms / 1000.0,
    )


@dataclass(frozen=True, slots=True)
class Settled:
    """What to do once the upstream answered: store `store` (which ends the lease), or
    release the lease -- after removing the entry when `drop` (a 304 that names another
    entity, `decide.Refresh.drop`); `why` explains an outcome that stored nothing."""

    outcome: Outcome
    store: StoredEntry | None = None
    drop: bool = False
    why: str = ""


def settle(
    state: RequestState, fetched: Fetched, cfg: PluginConfig, now: float, names: Names
) -> Settled:
    """The outcome of a refresh the upstream answered (module docstring), decided as a
    foreground request's answer would be (`decide.after_response`, `decide.plan_store`)."""
    status = fetched.status
    if status >= 500:
        return Settled(Outcome.ERROR_STATUS, why=f"upstream answered {status}")
    stored_status = state.stale.status if state.stale is not None else status
    if status not in (304, stored_status) and not 200 <= status < 300:
        # A refresh is not the client's request (other plugins' changes, credentials it may
        # not carry): a 401/404 where a 200 is stored is more likely its own failure than
        # the resource's new state, so the stale copy stays (RFC 5861 §3: a failed
        # refresh). A 2xx, or the stored status again, replaces it.
        why = f"upstream answered {status} where {stored_status} is stored: stale copy kept"
        return Settled(Outcome.CHANGED_STATUS, why=why)
    upstream = decide.Upstream(status, fetched.headers, True, now)
    step = decide.after_response(state, upstream, cfg)
    if isinstance(step, decide.Refresh):
        if step.drop:
            return Settled(Outcome.NOT_STORABLE, drop=True, why="a 304 for another entity-tag")
        if step.store is None:
            return Settled(Outcome.NOT_STORABLE, why="the revalidated entry may not be stored")
        return Settled(Outcome.REVALIDATED, step.store)
    if isinstance(step, decide.Serve):  # stale-if-error: only for a 5xx, settled above
        return Settled(Outcome.ERROR_STATUS, why=f"upstream answered {status}")
    stored = decide.plan_store(state, upstream, step.decision, fetched.body, cfg, names)
    if stored.entry is None:
        why = stored.detail or step.decision.reason
        return Settled(Outcome.NOT_STORABLE, why=f"upstream answered {status}, not stored: {why}")
    return Settled(Outcome.REFRESHED, stored.entry)


def _release(client: SidecarCalls, key: bytes) -> None:
    try:
        client.release(key)
    except SidecarError as exc:  # the lease expires on its own
        log.debug("releasing the fill lease after a refresh failed: %s", exc)


def _health(
    origins: OriginHealth, state: RequestState, failed: bool, *, unreachable: bool = False
) -> None:
    if not state.origin:
        return
    if failed:
        if origins.failed(state.origin, state.key, unreachable=unreachable):
            log.warning("upstream of route %s failing for several URLs: marked down", state.origin)
    elif origins.succeeded(state.origin, state.key):
        log.warning("origin of route %s answers again", state.origin)


def run(
    job: RefreshJob,
    cfg: PluginConfig,
    client: SidecarCalls,
    origins: OriginHealth,
    fetcher: Fetch = fetch,
    clock: Callable[[], float] = time.time,
) -> tuple[Outcome, str]:
    """Refresh: fetch, settle, store or release (module docstring). Never raises for the
    upstream's or the sidecar's failures; returns the outcome and, for a failure, why."""
    state = job.state
    dest = job.destination
    key = state.key.encode()
    where = f"route {state.origin or '(none)'}, {dest.host}:{dest.port}{dest.target.split('?')[0]}"
    state.request_time = clock()
    try:
        fetched = fetcher(dest, job.headers, job.timeout_s, cfg.max_body_bytes)
    except FetchError as exc:
        _health(origins, state, failed=True, unreachable=exc.kind != "protocol")
        _release(client, key)
        return Outcome(exc.kind), f"{where}: {exc}"
    _health(origins, state, failed=fetched.status in FAILURE_STATUSES)
    settled = settle(state, fetched, cfg, clock(), job.names)
    if settled.store is not None:
        try:
            client.store(
                key,
                wire.entry_to_pb(settled.store),
                state.request_headers,
                timeout_s=max(client.timeout_s, STORE_TIMEOUT_S),
                route=state.route,
            )
        except SidecarError as exc:
            _release(client, key)
            return Outcome.SIDECAR, f"{where}: the refreshed entry was not stored: {exc}"
        return settled.outcome, ""
    if settled.drop:
        try:
            client.invalidate(key=key)
        except SidecarError as exc:
            log.debug("removing an entry a 304 did not confirm failed: %s", exc)
    _release(client, key)
    return settled.outcome, f"{where}: {settled.why}"
