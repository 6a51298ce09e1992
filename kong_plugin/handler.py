"""The strata-cache phase handlers: thin glue between Kong's PDK, the pure caching rules
and the sidecar client.

Rules this file lives by (see the plugin-server protocol notes):

* No exception ever leaves a phase method: an escaped exception hangs the event in the
  kong-pdk plugin server (and before the first PDK call, the whole server).
* The first thing a phase does is a PDK call; slow work (the sidecar) comes after it.
* Nothing calls the PDK after `kong.response.exit`.
* Few PDK round trips: a hit costs 3 (2 when `consumer_scope` is `never`; one more when
  the plugin is not attached to a route, to learn the matched route), a miss 9 (plus one
  ``clear_header`` per override header it carries, `kong_plugin.poisoning`); the ``log``
  phase (a Kong timer, after the response) costs 1.
* A request with credentials the key does not separate (`kong_plugin.credentials`) is
  served only entries that allow sharing, never waits for another request's fill, and
  stores only a response that allows sharing.
* Kong runs no ``response`` phase when the upstream cannot be reached (it answers 502/504
  itself); the ``log`` phase notices the request state left behind, marks the origin down
  (`kong_plugin.origin`) and gives up the fill lease.
* Any sidecar problem fails open within `sidecar.timeout_ms`: the request is proxied as
  if there were no cache, with `X-Cache-Status: Bypass`.
* What Kong 3.9 hands an external plugin is what counts, not what a kinder stand-in would:
  in the ``response`` phase ``kong.service.response.get_headers()`` is an empty map, so the
  upstream's headers are read from Kong's buffered response (`Plugin._upstream_headers`),
  and the body is pulled across the socket only for a response that may be stored.
* Operator-facing problems go to Kong's error log through ``kong.log``
  (`kong_plugin.report`): Kong hides the plugin server's own output at its default level.

What this does not guarantee: that a stored response is there for the next request (the
sidecar may evict or be down); that stores complete (they run after the response, on a
bounded background queue; one the full queue refuses is reported as not stored).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from strata.v1 import cache_pb2 as pb

from kong_plugin.background import Background, Submitted
from kong_plugin.cache_control import parse_cache_control
from kong_plugin.cache_key import build_key
from kong_plugin.cache_status import XCacheStatus, age_value, cache_status_value
from kong_plugin.cacheability import StoreDecision, request_decision, response_decision
from kong_plugin.client import SidecarClient, SidecarError, SidecarUntrustedError
from kong_plugin.config import PluginConfig, parse_config
from kong_plugin.credentials import Guard, allows_sharing, guard
from kong_plugin.errors import ConfigError
from kong_plugin.exits import (
    ALWAYS_CLEAR,
    KongHeaders,
    framing,
    header_names,
    response_phase_exit,
)
from kong_plugin.freshness import ERROR_STATUSES, EntryTiming, evaluate_reuse
from kong_plugin.headers import (
    MAX_HEADER_LINES,
    Headers,
    kong_line_count,
    replay_headers,
    storable_headers,
)
from kong_plugin.identity import classify
from kong_plugin.inflight import InflightTable, RequestState
from kong_plugin.invalidation import entry_tags, invalidation_targets, is_write
from kong_plugin.origin import FAILURE_STATUSES, OriginHealth
from kong_plugin.poisoning import present, without
from kong_plugin.recent import RecentKeys
from kong_plugin.report import Reporter
from kong_plugin.validation import (
    evaluate_conditional,
    merge_304,
    not_modified_response_headers,
    revalidation_headers,
)

log = logging.getLogger("strata.plugin")

CTX_KEY = "strata_cache"
#: Deadline of a background Store (it runs after the response; bodies may be large).
STORE_TIMEOUT_S = 2.0
DEBUG_HEADER = "kong-debug"
_CONDITIONAL = ("if-none-match", "if-modified-since")
MAX_ROUTES_REMEMBERED = 4096
#: Not-stored reasons that come from the request, not the response (a client must not be
#: able to turn coalescing off for a key).
_REQUEST_REASONS = frozenset(
    {"head", "method", "request-no-store", "too-many-headers", "cookie", "authorization"}
)

_clients: dict[tuple[str, float, int | None], SidecarClient] = {}
_clients_lock = threading.Lock()
_inflight = InflightTable()
_background = Background()
_reporter = Reporter()
_origins = OriginHealth()
_uncacheable = RecentKeys()
#: Per event: kong-pdk (thread mode) runs every event in a thread of its own.
_event = threading.local()


@dataclass(frozen=True, slots=True)
class Served:
    """A stored entry about to be served, and what to tell the client about it."""

    entry: pb.Entry
    stored: Headers
    age_s: float
    word: XCacheStatus
    member: str


def client_for(address: str, timeout_s: float, uid: int | None = None) -> SidecarClient:
    """The process-wide client for one sidecar address (one channel per process); `uid`:
    the uid its unix socket must be served by (None: this process's)."""
    key = (address, timeout_s, uid)
    client = _clients.get(key)
    if client is None:
        with _clients_lock:  # two first requests must not both open a channel
            client = _clients.get(key)
            if client is None:
                client = _clients[key] = SidecarClient(
                    address, timeout_s, mode="stream", expected_uid=uid
                )
    return client


class PdkError(Exception):
    """A PDK call returned an error (Lua style `nil, err`)."""


def pdk(result: Any) -> Any:
    """Unwrap a Lua-style `(value, err)` PDK result."""
    if isinstance(result, tuple) and len(result) == 2:
        value, err = result
        if err:
            raise PdkError(str(err))
        return value
    return result


def parse_request_line(line: str) -> tuple[str, str]:
    """(method, path?query) of an HTTP request line (nginx's `$request`).

    The absolute form (`GET http://host/p?q HTTP/1.1`) is reduced to its path and query.
    """
    method, _, rest = line.partition(" ")
    target = rest.rpartition(" ")[0] if rest.count(" ") else rest
    if target.startswith(("http://", "https://")):
        after = target.split("://", 1)[1]
        slash = after.find("/")
        target = after[slash:] if slash >= 0 else "/"
    return method, target or "/"


def header_lines(headers: Mapping[str, Any]) -> list[tuple[bytes, bytes]]:
    """Kong's header map (name -> str | list[str]) as ordered byte lines."""
    out: list[tuple[bytes, bytes]] = []
    for name, value in headers.items():
        n = name.encode("latin-1", "replace")
        if isinstance(value, (list, tuple)):
            out.extend((n, str(v).encode("utf-8", "surrogateescape")) for v in value)
        else:
            out.append((n, str(value).encode("utf-8", "surrogateescape")))
    return out


def entry_headers(entry: pb.Entry) -> Headers:
    """A stored entry's header lines as a `Headers` map."""
    fields: dict[str, list[str]] = {}
    for h in entry.headers:
        name = h.name.decode("latin-1").lower()
        fields.setdefault(name, []).append(h.value.decode("utf-8", "surrogateescape"))
    return Headers({k: tuple(v) for k, v in fields.items()})


def _shareable(entry: pb.Entry, rule: Guard, cfg: PluginConfig) -> bool:
    """May a guarded request (`kong_plugin.credentials`) be served this stored entry?"""
    cc = [h.value.decode("latin-1") for h in entry.headers if h.name.lower() == b"cache-control"]
    return allows_sharing(parse_cache_control(cc), rule, cfg)


def _timing(entry: pb.Entry) -> EntryTiming:
    return EntryTiming.from_ms(
        entry.stored_at_ms,
        entry.ttl_ms,
        entry.stale_while_revalidate_ms,
        entry.stale_if_error_ms,
        entry.storage_ttl_ms,
    )


def _names_to_clear(upstream: Mapping[str, Any], complete: bool) -> list[str]:
    """What a response-phase exit must remove: the upstream response's header names, plus
    `ALWAYS_CLEAR` when that list may have been cut short."""
    names = header_names(upstream)
    return names if complete else names + list(ALWAYS_CLEAR)


class Plugin:
    """One instance per plugin configuration (per route, service or global)."""

    def __init__(self, config: Mapping[str, Any]) -> None:
        self.config: PluginConfig | None = None
        self.config_error: str | None = None
        self.route_id: str | None = None
        #: route id -> its service's read_timeout in ms (a config change makes a new instance)
        self._read_timeouts: dict[str, int] = {}
        try:
            self.config = parse_config(config)
            route = config.get("route_id") if isinstance(config, Mapping) else None
            self.route_id = route if isinstance(route, str) and route else None
            for warning in self.config.warnings:
                log.warning("strata-cache config: %s", warning)
        except ConfigError as exc:
            self.config_error = str(exc)
            log.error("strata-cache config rejected, plugin bypasses the cache: %s", exc)  # noqa: TRY400
        except Exception as exc:
            self.config_error = f"unexpected error reading config: {exc!r}"
            log.exception("strata-cache config could not be read")

    # -- access ------------------------------------------------------------------------

    def access(self, kong: Any) -> None:
        _event.exited = False
        try:
            self._access(kong)
        except Exception as exc:
            log.exception("strata-cache access phase failed; request proxied uncached")
            if not _event.exited:
                _reporter.report(
                    kong, "err", "access", f"access phase failed, request proxied: {exc!r}"
                )

    def _access(self, kong: Any) -> None:
        # First PDK call, nothing slow before it: the request line gives method and target.
        line = pdk(kong.nginx.get_var("request"))
        if isinstance(line, str) and " " in line:
            method, target = parse_request_line(line)
        else:
            method = pdk(kong.request.get_method())
            target = pdk(kong.request.get_path_with_query()) or "/"
        cfg = self.config
        if cfg is None:
            message = f"configuration rejected, cache bypassed: {self.config_error}"
            _reporter.report(kong, "err", "config", message)
            kong.response.set_header("X-Cache-Status", XCacheStatus.BYPASS.value)
            return
        headers = pdk(kong.request.get_headers(MAX_HEADER_LINES)) or {}
        complete = kong_line_count(headers) < MAX_HEADER_LINES
        if is_write(method, cfg):
            if cfg.invalidate_on_write:
                host, path, _ = self._target(kong, target, Headers.of(headers))
                state = RequestState("write", method, host, path, origin=self.route_id or "")
                self._remember(kong, state)
            else:
                self._bypass_header(kong, cfg, False, "method")
            return
        h = Headers.of(headers)
        debug = DEBUG_HEADER in h
        decision = request_decision(method, h, cfg)
        if decision.bypass or not complete:
            # more header lines than Kong hands over: credentials or Vary inputs may be among
            # those we cannot see, so the cache stays out of this request
            reason = decision.reason if complete else "too-many-headers"
            self._bypass_header(kong, cfg, debug, reason or "request")
            return
        host, path, query = self._target(kong, target, h)
        route_id = self.route_id or self._matched_route(kong)
        if cfg.consumer_scope != "never":
            consumer = pdk(kong.client.get_consumer())
            who = classify(h, consumer, lambda: pdk(kong.client.get_credential()))
        else:
            who = classify(h, None, lambda: None)
        key = build_key(
            method,
            host,
            path,
            query,
            h,
            who.consumer_id,
            route_id,
            cfg,
            anonymous=who.anonymous,
        )
        lines = header_lines(headers)
        stripped = present(h, cfg.strip_header_names)
        if stripped:  # variants are chosen by the request as the origin will see it
            lines = without(lines, stripped)
        rule = guard(h, who, key.consumer_scoped, cfg)
        if rule == "cookie" and cfg.cookie_requests == "bypass":
            self._bypass_header(kong, cfg, debug, "cookie")
            return
        state = RequestState(
            "store",
            method,
            host,
            path,
            key=key.key,
            request_headers=lines,
            request_cc=decision.cc,
            guard=rule,
            request_time=time.time(),
            debug=debug,
            origin=route_id or "",
        )
        if not decision.lookup:  # request no-cache: go upstream, store the answer
            state.status_word, state.fwd = XCacheStatus.REFRESH.value, "request"
            self._forward(kong, state, stripped)
            return
        client = client_for(cfg.sidecar.address, cfg.sidecar.timeout_s, cfg.sidecar.uid)
        try:
            # A lookup that may wait gets the whole wait as its deadline: it is sent only
            # after a plain one found nothing, so a hung sidecar costs `timeout_ms`. A
            # guarded request never waits: the fill it would be handed is another client's.
            found = client.lookup(key.key.encode(), lines)
            if found.outcome == pb.OUTCOME_MISS and not rule:
                wait_ms = self._coalesce_wait_ms(kong, cfg, route_id, key.key)
                if wait_ms:
                    found = client.lookup(key.key.encode(), lines, wait_ms)
        except SidecarError as exc:
            untrusted = isinstance(exc, SidecarUntrustedError)
            _reporter.report(
                kong,
                "err" if untrusted else "warn",
                "sidecar-untrusted" if untrusted else "sidecar",
                f"sidecar lookup failed, cache bypassed: {exc}",
                local=not untrusted,  # the client logs that one, at most once a second
            )
            self._bypass_header(
                kong, cfg, debug, "sidecar-untrusted" if untrusted else "sidecar-unavailable"
            )
            return
        state.fill_lease = found.fill_lease
        found_entry = found.outcome in (pb.OUTCOME_HIT, pb.OUTCOME_STALE)
        if found_entry and rule and not _shareable(found.entry, rule, cfg):
            # stored for someone else: go upstream, store nothing, leave the entry alone
            self._release(client, state)
            if decision.only_if_cached:
                self._only_if_cached_miss(kong, cfg, state)
            else:
                self._bypass_header(kong, cfg, debug, rule)
            return
        if found_entry:
            if self._serve_stored(kong, cfg, state, found, h, debug):
                return
        elif decision.only_if_cached:
            self._release(client, state)
            self._only_if_cached_miss(kong, cfg, state)
            return
        if not decision.store and not state.stale:
            self._release(client, state)
            self._bypass_header(kong, cfg, debug, decision.reason or "request")
            return
        self._forward(kong, state, stripped)

    def _only_if_cached_miss(self, kong: Any, cfg: PluginConfig, state: RequestState) -> None:
        """RFC 9111 §5.2.1.7: no stored response may answer, so 504."""
        _event.exited = True
        kong.response.exit(504, "", self._cache_headers(cfg, state.debug, "Miss", state.key))

    def _forward(self, kong: Any, state: RequestState, stripped: tuple[str, ...]) -> None:
        """Let the request go upstream for a response that may be stored: first remove the
        override headers it carries (`kong_plugin.poisoning`; one PDK call each, none when
        it carries none), then keep its state for the ``response`` phase."""
        for name in stripped:
            kong.service.request.clear_header(name)
        if stripped:
            log.debug("removed %s from the request to the upstream (%s)", stripped, state.key)
        self._remember(kong, state)

    def _serve_stored(
        self,
        kong: Any,
        cfg: PluginConfig,
        state: RequestState,
        found: pb.LookupResponse,
        h: Headers,
        debug: bool,
    ) -> bool:
        """Answer from the stored entry if the rules allow; else prepare revalidation.

        Returns True when the request was ended with `kong.response.exit`.
        """
        entry = found.entry
        stored = entry_headers(entry)
        stored_cc = parse_cache_control(stored.get_all("cache-control"))
        age_s = max(0, found.now_ms - entry.stored_at_ms) / 1000.0
        reuse = evaluate_reuse(_timing(entry), age_s, stored_cc, state.request_cc, cfg)
        if reuse.action == "stale" and reuse.background_revalidate and found.fill_lease:
            reuse_action = "revalidate"  # this request refreshes the entry for everyone
        else:
            reuse_action = reuse.action
        detail = reuse.detail
        if (
            reuse_action == "revalidate"
            and reuse.stale_if_error
            and state.origin
            and not _origins.admit(state.origin, state.key)
        ):
            # the origin is failing: answer from the stored copy instead of adding to it
            reuse_action, detail = "stale", "origin-down"
            self._release(
                client_for(cfg.sidecar.address, cfg.sidecar.timeout_s, cfg.sidecar.uid), state
            )
        if reuse_action in ("fresh", "stale"):
            word = XCacheStatus.HIT if reuse_action == "fresh" else XCacheStatus.STALE
            member = cache_status_value(
                cfg.cache_status_name,
                hit=True,
                ttl=reuse.ttl,
                detail=None if reuse_action == "fresh" else detail,
            )
            self._exit_with_entry(kong, cfg, state, Served(entry, stored, age_s, word, member), h)
            return True
        # Revalidate upstream with the stored validators; keep the entry for 304 / errors.
        state.stale = entry
        state.stale_if_error = reuse.stale_if_error
        state.status_word = XCacheStatus.REFRESH.value
        state.fwd = "stale"
        state.client_conditional = any(name in h for name in _CONDITIONAL)
        conditional = revalidation_headers(stored)
        if conditional:
            kong.service.request.set_headers(conditional)
        elif state.client_conditional:
            for name in _CONDITIONAL:
                kong.service.request.clear_header(name)
        return False

    def _exit_with_entry(
        self,
        kong: Any,
        cfg: PluginConfig,
        state: RequestState,
        served: Served,
        request_headers: Headers | None,
        current: list[str] | None = None,
    ) -> None:
        """End the request with the stored response (or a 304 for a matching conditional).

        `current` are the response's header names in the ``response`` phase (the upstream's,
        which Kong already copied): they are cleared unless the stored response sets them.
        """
        extra = self._cache_headers(
            cfg, state.debug, served.word.value, state.key, served.member, served.age_s
        )
        entry = served.entry
        out: KongHeaders
        if request_headers is not None and evaluate_conditional(
            request_headers, entry.status, served.stored, method=state.method
        ):
            status, body = 304, b""
            out = dict(not_modified_response_headers(served.stored).to_kong())
        else:
            status, body = entry.status, entry.body
            out = dict(replay_headers(served.stored).to_kong())
        out.update(extra)
        body, length = framing(state.method, status, body)
        out.update(length)
        if current is not None:
            out = response_phase_exit(out, current)
        _event.exited = True
        kong.response.exit(status, body, out)

    # -- response ----------------------------------------------------------------------

    def response(self, kong: Any) -> None:
        _event.exited = False
        try:
            self._response(kong)
        except Exception as exc:
            log.exception("strata-cache response phase failed; response passed through")
            if not _event.exited:
                _reporter.report(
                    kong, "err", "response", f"response phase failed, not stored: {exc!r}"
                )

    def _response(self, kong: Any) -> None:
        token = pdk(kong.ctx.shared.get(CTX_KEY))  # first PDK call
        state = _inflight.pop(token)
        cfg = self.config
        if state is None or cfg is None:
            return
        status = pdk(kong.response.get_status())
        self._origin_answered(kong, state, status)
        headers, complete = self._upstream_headers(kong)
        client = client_for(cfg.sidecar.address, cfg.sidecar.timeout_s, cfg.sidecar.uid)
        if state.mode == "write":
            self._invalidate(client, cfg, state, status, headers)
            self._bypass_header(kong, cfg, state.debug, "method")
            return
        debug = state.debug
        if state.stale is not None and status == 304:
            current = _names_to_clear(headers, complete)
            self._refresh_from_304(kong, client, cfg, state, headers, current, complete)
            return
        if state.stale is not None and state.stale_if_error and status in ERROR_STATUSES:
            self._release(client, state)
            entry = state.stale
            stored = entry_headers(entry)
            age_s = max(0.0, time.time() - entry.stored_at_ms / 1000.0)
            member = cache_status_value(
                cfg.cache_status_name, hit=True, fwd_status=status, detail="stale-if-error"
            )
            served = Served(entry, stored, age_s, XCacheStatus.STALE, member)
            self._exit_with_entry(
                kong, cfg, state, served, None, _names_to_clear(headers, complete)
            )
            return
        decision = (
            response_decision(
                state.method,
                status,
                headers,
                state.request_cc or parse_cache_control(()),
                cfg,
                request_time=state.request_time,
                response_time=time.time(),
                guard=state.guard,
            )
            if complete
            else StoreDecision(False, "too-many-headers")
        )
        if decision.store:
            _uncacheable.discard(state.key)
        elif decision.reason not in _REQUEST_REASONS:
            _uncacheable.add(state.key)  # its next misses do not wait for each other
        body = b""
        if decision.store:
            # only now pull the body across the socket: status, headers and a declared
            # Content-Length already said the response may be stored
            body = self._service_body(kong)
            if len(body) > cfg.max_body_bytes:
                decision = StoreDecision(False, "too-large")
        will_store = False
        detail = None if decision.store else decision.reason
        if decision.store and decision.timing is not None:
            tags = entry_tags(state.host, state.path, headers, cfg)
            if not tags.dropped:
                entry = pb.Entry(
                    format_version=1,
                    status=status,
                    headers=[
                        pb.Header(name=n, value=v)
                        for n, v in header_lines(
                            storable_headers(headers, strip=decision.strip_headers).to_kong()
                        )
                    ],
                    body=body,
                    tags=list(tags.tags),
                    vary=list(decision.vary),
                    **decision.timing.to_ms(),
                )
                will_store = self._store_later(kong, client, state, entry)
                if not will_store:
                    detail = "store-queue-full"
            else:
                detail = "tags-dropped"
        word = state.status_word
        if not will_store:
            self._release(client, state)
            if word == XCacheStatus.MISS.value and not decision.store:
                word = XCacheStatus.BYPASS.value  # as Kong's proxy-cache: not cacheable
        member = cache_status_value(
            cfg.cache_status_name,
            fwd=state.fwd,  # type: ignore[arg-type]
            fwd_status=status,
            stored=will_store,
            detail=detail,
        )
        kong.response.set_headers(self._cache_headers(cfg, debug, word, state.key, member))

    # -- log ---------------------------------------------------------------------------

    def log(self, kong: Any) -> None:
        try:
            self._log(kong)
        except Exception:
            log.exception("strata-cache log phase failed")

    def _log(self, kong: Any) -> None:
        """Runs (in a Kong timer, after the response went out) for every request. A request
        whose state is still here never had its ``response`` phase: either the upstream
        could not be reached (Kong answered 502/504 itself) or a later plugin ended the
        request in ``access`` (then Kong never proxied it)."""
        token = pdk(kong.ctx.shared.get(CTX_KEY))  # the only call for most requests
        state = _inflight.pop(token) if token is not None else None
        cfg = self.config
        if state is None or cfg is None:
            return
        self._release(
            client_for(cfg.sidecar.address, cfg.sidecar.timeout_s, cfg.sidecar.uid), state
        )
        if state.origin and pdk(kong.nginx.get_ctx("KONG_PROXIED")):
            self._origin_failed(kong, state, "could not be reached")

    def _origin_answered(self, kong: Any, state: RequestState, status: int) -> None:
        if not state.origin:
            return
        if status in FAILURE_STATUSES:
            self._origin_failed(kong, state, f"answered {status}")
        elif _origins.succeeded(state.origin, state.key):
            log.warning("origin of route %s answers again", state.origin)

    def _origin_failed(self, kong: Any, state: RequestState, what: str) -> None:
        if _origins.failed(state.origin, state.key):
            _reporter.report(
                kong,
                "warn",
                "origin-down",
                f"upstream of route {state.origin} {what} for several URLs: marked down, "
                "stale-if-error copies are served without contacting it until a probe succeeds",
            )

    def _refresh_from_304(
        self,
        kong: Any,
        client: SidecarClient,
        cfg: PluginConfig,
        state: RequestState,
        not_modified: Mapping[str, Any],
        current: list[str],
        complete: bool,
    ) -> None:
        """The upstream confirmed the stored entry: update its headers and timing, store it
        again, and answer the client with it (a 304 if the client's own validators match)."""
        entry = state.stale
        merged = merge_304(entry_headers(entry), not_modified)
        now = time.time()
        decision = response_decision(
            state.method,
            entry.status,
            merged,
            state.request_cc or parse_cache_control(()),
            cfg,
            request_time=state.request_time,
            response_time=now,
            guard=state.guard,
        )
        refreshed = pb.Entry()
        refreshed.CopyFrom(entry)
        del refreshed.headers[:]
        refreshed.headers.extend(
            pb.Header(name=n, value=v) for n, v in header_lines(merged.to_kong())
        )
        if complete and decision.store and decision.timing is not None:
            for name, value in decision.timing.to_ms().items():
                setattr(refreshed, name, value)
            if not self._store_later(kong, client, state, refreshed):
                self._release(client, state)
        else:
            self._release(client, state)
        member = cache_status_value(
            cfg.cache_status_name, hit=True, fwd="stale", fwd_status=304, detail="revalidated"
        )
        request_headers = (
            Headers.of(
                {
                    n.decode("latin-1"): v.decode("utf-8", "surrogateescape")
                    for n, v in state.request_headers
                }
            )
            if state.client_conditional
            else None
        )
        age_s = max(0.0, now - refreshed.stored_at_ms / 1000.0)
        served = Served(refreshed, merged, age_s, XCacheStatus.REFRESH, member)
        self._exit_with_entry(kong, cfg, state, served, request_headers, current)

    def _invalidate(
        self,
        client: SidecarClient,
        cfg: PluginConfig,
        state: RequestState,
        status: int,
        headers: Mapping[str, Any],
    ) -> None:
        """After a successful write, purge the URI, Location/Content-Location and tags
        (synchronously, so the writer's next read is fresh)."""
        targets = invalidation_targets(
            state.method,
            status,
            host=state.host,
            path=state.path,
            response_headers=headers,
            config=cfg,
        )
        for tag in targets.tags:
            try:
                client.invalidate(tag=tag)
            except SidecarError as exc:
                log.warning("sidecar invalidation of a tag failed: %s", exc)

    # -- helpers -----------------------------------------------------------------------

    def _target(self, kong: Any, target: str, h: Headers) -> tuple[str, str, str]:
        """(host, path, raw query) of the request; the host from the headers when present."""
        path, _, query = target.partition("?")
        host = h.get("host")
        if not host:
            host = pdk(kong.request.get_host()) or ""
        return host, path or "/", query

    def _coalesce_wait_ms(
        self, kong: Any, cfg: PluginConfig, route_id: str | None, key: str
    ) -> int:
        """How long this lookup may wait for another request's fill: `coalesce_wait_ms`,
        capped by the route's service ``read_timeout`` (a fill cannot take longer), and 0
        for a key whose last response could not be stored (nothing to wait for)."""
        wait = cfg.coalesce_wait_ms
        if wait <= 0 or key in _uncacheable:
            return 0
        cap = self._read_timeouts.get(route_id or "")
        if cap is None:
            service = pdk(kong.router.get_service())
            timeout = service.get("read_timeout") if isinstance(service, Mapping) else None
            cap = timeout if isinstance(timeout, int) and timeout > 0 else wait
            if len(self._read_timeouts) < MAX_ROUTES_REMEMBERED:
                self._read_timeouts[route_id or ""] = cap
        return min(wait, cap)

    def _upstream_headers(self, kong: Any) -> tuple[Mapping[str, Any], bool]:
        """The upstream's response headers, and whether that list is complete.

        Kong 3.9 keeps them in ``ngx.ctx.buffered_headers`` (the subrequest's ``res.header``,
        ``kong/init.lua`` ``Kong.response``): exactly the upstream's, all of them, in one call.
        Elsewhere, ``kong.response.get_headers`` -- where Kong copied them, mixed with what
        other plugins set before this phase, and cut at `MAX_HEADER_LINES` lines.
        (``kong.service.response.get_headers()`` is an empty map for an external plugin.)
        """
        buffered = pdk(kong.nginx.get_ctx("buffered_headers"))
        if isinstance(buffered, Mapping) and buffered:
            return buffered, True
        headers = pdk(kong.response.get_headers(MAX_HEADER_LINES)) or {}
        return headers, kong_line_count(headers) < MAX_HEADER_LINES

    def _matched_route(self, kong: Any) -> str | None:
        """The id of the route Kong matched. A plugin attached to a route knows it from its
        config; one on a service or global one must ask (its config has no ``route_id``)."""
        route = pdk(kong.router.get_route())
        route_id = route.get("id") if isinstance(route, Mapping) else None
        return route_id if isinstance(route_id, str) and route_id else None

    def _service_body(self, kong: Any) -> bytes:
        body = pdk(kong.service.response.get_raw_body())
        if isinstance(body, str):
            return body.encode("utf-8", "surrogateescape")
        return body or b""

    def _remember(self, kong: Any, state: RequestState) -> None:
        kong.ctx.shared.set(CTX_KEY, _inflight.put(state))

    def _bypass_header(self, kong: Any, cfg: PluginConfig, debug: bool, reason: str) -> None:
        """Tell the client the cache stayed out of this request, and why (RFC 9211
        ``fwd=bypass`` with a ``detail``), in one PDK call."""
        member = cache_status_value(cfg.cache_status_name, fwd="bypass", detail=reason)
        headers = self._cache_headers(cfg, debug, XCacheStatus.BYPASS.value, "", member)
        if headers:
            kong.response.set_headers(headers)

    def _cache_headers(
        self,
        cfg: PluginConfig,
        debug: bool,
        word: str,
        key: str,
        member: str | None = None,
        age_s: float | None = None,
    ) -> dict[str, str]:
        rh = cfg.response_headers
        out: dict[str, str] = {}
        if rh.x_cache_status or debug:
            out["X-Cache-Status"] = word
        if (rh.x_cache_key or debug) and key:
            out["X-Cache-Key"] = key
        if (rh.cache_status or debug) and member:
            out["Cache-Status"] = member
        if (rh.age or debug) and age_s is not None:
            out["Age"] = age_value(age_s)
        return out

    def _store_later(
        self, kong: Any, client: SidecarClient, state: RequestState, entry: pb.Entry
    ) -> bool:
        """Queue the store; False (counted, and reported to Kong's log) when the queue is
        full. A store of a key whose store is already queued counts as done."""
        key = state.key.encode()
        lines = state.request_headers
        # Off the request path, so a large body gets more than the lookup deadline.
        timeout = max(client.timeout_s, STORE_TIMEOUT_S)
        outcome = _background.submit_store(
            key, len(entry.body), lambda: client.store(key, entry, lines, timeout_s=timeout)
        )
        if outcome is Submitted.FULL:
            stats = _background.stats()
            _reporter.report(
                kong,
                "warn",
                "store-queue",
                f"store queue full ({stats.depth} stores, {stats.depth_bytes} bytes queued; "
                f"{stats.dropped} dropped since start): response not stored",
            )
        return outcome.accepted

    def _release(self, client: SidecarClient, state: RequestState) -> None:
        if state.fill_lease:
            key = state.key.encode()
            _background.submit(lambda: client.release(key))
