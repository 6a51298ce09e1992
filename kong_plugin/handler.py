"""The strata-cache phase handlers: thin glue between Kong's PDK (`kong_plugin.pdk`), the
pure decisions (`kong_plugin.decide`, `kong_plugin.replies`), the sidecar client (through
`kong_plugin.wire`) and the process's state (`kong_plugin.runtime`). A phase reads from the
PDK, asks a decision, and acts on it.
How a request is ended or marked and its outcome published lives in `kong_plugin.answers`,
the state handed to later phases in `kong_plugin.handover`, a stale answer with a
background refresh in `kong_plugin.stale_refresh`.

Rules this file lives by (see the plugin-server protocol notes):

* No exception ever leaves a phase method: an escaped exception hangs the event in the
  kong-pdk plugin server (and before the first PDK call, the whole server).
* The first thing a phase does is a PDK call; slow work (the sidecar) comes after it.
* Nothing calls the PDK after `kong.response.exit`.
* Few PDK round trips: a hit costs 3 (2 when `consumer_scope` is `never`; one more when
  the plugin is not attached to a route, to learn the matched route), a miss 9 (plus one
  ``clear_header`` per override header it carries, `kong_plugin.poisoning`, and one per
  targeted field for this cache only the upstream sent, `kong_plugin.targeted`); the ``log``
  phase (a Kong timer, after the response) costs 1, and 2 for a request that went
  upstream when its ``response`` phase ran in another worker. Per route, not per request: its
  service's ``read_timeout`` (1, on the first miss that may wait) and, on the store path,
  the route's and service's names for the event tags (up to 2, once per 60 s;
  `kong_plugin.route_facts`). A stale hit whose fill lease this request holds, with
  ``background_refresh`` on, costs what a hit does (it is answered stale at once and the
  refresh runs on the plugin server's pool, `kong_plugin.refresh`, which never calls the
  PDK), plus the route's refresh target: the route and its service (2, once per 60 s).
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
  upstream's headers are read from Kong's buffered response (`kong_plugin.pdk.upstream_headers`),
  and the body is pulled across the socket only for a response that may be stored.
* Operator-facing problems go to Kong's error log through ``kong.log``
  (`kong_plugin.report`): Kong hides the plugin server's own output at its default level.

Phases run as greenlets on a plugin-server worker's loop (`kong_plugin.pluginserver`):
sidecar calls made while the client waits (the lookup, the store) go through
`kong_plugin.pluginserver.events.blocking`, so the worker serves other events meanwhile.
A request's phases may run in different workers: its state travels in `kong.ctx.shared`
(`kong_plugin.carry`).

Each request the plugin sees publishes one `kong_plugin.outcome.Outcome`, where its answer
became final: in ``access`` for a hit, a bypass or an answer the plugin made; in
``response`` for a proxied response and a write; in ``log`` for a request whose
``response`` phase never ran. Publishing makes no PDK call.

What this does not guarantee: that a stored response is there for the next request (the
sidecar may evict or be down); that a store completes (one the sidecar could not take
before its deadline is reported as not stored, and may still land).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

from kong_plugin import carry, decide, runtime, wire
from kong_plugin.answers import bypass, hide_targeted, serve
from kong_plugin.cache_key import build_key
from kong_plugin.cache_status import XCacheStatus
from kong_plugin.cacheability import request_decision
from kong_plugin.client import SidecarClient, SidecarError, SidecarUntrustedError
from kong_plugin.config import PluginConfig, parse_config
from kong_plugin.credentials import guard
from kong_plugin.errors import ConfigError
from kong_plugin.handover import carried, carried_raw, remember, unpacked
from kong_plugin.headers import Headers, header_lines
from kong_plugin.inflight import RequestState
from kong_plugin.invalidation import is_write
from kong_plugin.origin_events import origin_answered, origin_failed
from kong_plugin.outcome import Phase, Seen, store_outcome
from kong_plugin.pdk import (
    exit_with,
    identify,
    matched_route,
    pdk,
    request_headers,
    request_line,
    request_target,
    route_name,
    service_body,
    service_facts,
    upstream_headers,
)
from kong_plugin.pluginserver.events import blocking
from kong_plugin.poisoning import present, without
from kong_plugin.replies import (
    cache_headers,
    only_if_cached_miss,
    origin_unreachable,
)
from kong_plugin.route_facts import Names, RouteFacts
from kong_plugin.sidecar_jobs import invalidate, release, store_now
from kong_plugin.stale_refresh import Refreshing, stale_while_refreshing

log = logging.getLogger("strata.plugin")

DEBUG_HEADER = "kong-debug"

#: The plugin's clock: seconds since the epoch (what `EntryTiming.stored_at` is written in).
Clock = Callable[[], float]


class Plugin:
    """One instance per plugin configuration (per route, service or global).

    `clock` is the plugin's one clock (request and response times, new entries' timing);
    a stored entry's age comes from the sidecar instead (`kong_plugin.freshness`).
    `ticker` (monotonic seconds) dates what is remembered per route
    (`kong_plugin.route_facts`: the service's read_timeout, the route's and service's
    names, read again after 60 s).
    """

    def __init__(
        self,
        config: Mapping[str, Any],
        clock: Clock = time.time,
        ticker: Clock = time.monotonic,
    ) -> None:
        self.config: PluginConfig | None = None
        self.config_error: str | None = None
        self.route_id: str | None = None
        self._clock = clock
        #: route id -> read_timeout and names (a config change makes a new instance)
        self._routes = RouteFacts(ticker)
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
        runtime.event.exited = False
        seen = Seen("access", self._clock(), self._clock, self.config, self.route_id or "")
        try:
            self._access(kong, seen)
        except Exception as exc:
            log.exception("strata-cache access phase failed; request proxied uncached")
            if not runtime.event.exited:
                runtime.reporter.report(
                    kong, "err", "access", f"access phase failed, request proxied: {exc!r}"
                )
            seen.publish("", "error")  # nothing when it failed after publishing

    def _access(self, kong: Any, seen: Seen) -> None:
        method, target = request_line(kong)  # first PDK call, nothing slow before it
        seen.method = method
        cfg = self.config
        if cfg is None:
            message = f"configuration rejected, cache bypassed: {self.config_error}"
            runtime.reporter.report(kong, "err", "config", message)
            kong.response.set_header("X-Cache-Status", XCacheStatus.BYPASS.value)
            seen.publish(XCacheStatus.BYPASS.value, "config")
            return
        headers, complete = request_headers(kong)
        h = Headers.of(headers)
        if is_write(method, cfg):
            if cfg.invalidate_on_write:
                host, path, _ = request_target(kong, target, h)
                state = RequestState(
                    "write", method, host, path, request_time=seen.started, origin=seen.route_id
                )
                remember(kong, state)  # its outcome is published in response (or log)
            else:
                bypass(kong, cfg, seen, False, "method")
            return
        debug = DEBUG_HEADER in h
        decision = request_decision(method, h, cfg)
        if decision.bypass or not complete:
            # more header lines than Kong hands over: credentials or Vary inputs may be among
            # those we cannot see, so the cache stays out of this request
            reason = decision.reason if complete else "too-many-headers"
            bypass(kong, cfg, seen, debug, reason or "request")
            return
        host, path, query = request_target(kong, target, h)
        route_id = self.route_id
        if route_id is None:
            route_id, name = matched_route(kong)
            seen.route_id = route_id or ""
            if route_id is not None and cfg.event_tags:
                self._routes.note_route_name(route_id, name)  # read anyway: no extra call
        who = identify(kong, h, cfg)
        seen.consumer_id = who.consumer_id or ""
        key = build_key(
            method, host, path, query, h, who.consumer_id, route_id, cfg, anonymous=who.anonymous
        )
        seen.key = key.key
        lines = header_lines(headers)
        stripped = present(h, cfg.strip_header_names)
        if stripped:  # variants are chosen by the request as the origin will see it
            lines = without(lines, stripped)
        rule = guard(h, who, key.consumer_scoped, cfg)
        if rule == "cookie" and cfg.cookie_requests == "bypass":
            bypass(kong, cfg, seen, debug, "cookie")
            return
        state = RequestState(
            "store",
            method,
            host,
            path,
            query=query,
            key=key.key,
            route=key.prefix,
            request_headers=lines,
            request_cc=decision.cc,
            guard=rule,
            request_time=self._clock(),
            debug=debug,
            origin=route_id or "",
            consumer_id=who.consumer_id or "",
        )
        if not decision.lookup:  # request no-cache: go upstream, store the answer
            state.status_word, state.fwd = XCacheStatus.REFRESH.value, "request"
            self._forward(kong, state, stripped)
            return
        client = self._client(cfg)
        near = runtime.near_for(client) if cfg.near_cache else None
        if near is not None:
            # the near-cache answers only what it may serve outright; anything else (stale,
            # a revalidation, a miss) goes to the sidecar, which holds the leases
            held = near.get(key.key, lines)
            if held is not None:
                served = decide.after_lookup(held, decision, rule, h, cfg)
                if isinstance(served, decide.Serve) and not served.release:
                    serve(kong, cfg, state, served.served, seen, "near")
                    return
        ticket = near.ticket() if near is not None else None
        try:
            # A lookup that may wait gets the whole wait as its deadline: it is sent only
            # after a plain one found nothing, so a hung sidecar costs `timeout_ms`. A
            # guarded request never waits: the fill it would be handed is another client's;
            # nor does a Range request (`decision.may_wait`): it stores nothing.
            # Off the worker's loop: other requests' PDK steps go on meanwhile.
            answer = blocking(lambda: client.lookup(key.key.encode(), lines))
            if wire.missed(answer) and not rule and decision.may_wait:
                wait_ms = self._coalesce_wait_ms(kong, cfg, route_id, key.key)
                if wait_ms:
                    answer = blocking(
                        lambda: client.lookup(key.key.encode(), lines, wait_ms), parked=True
                    )
        except SidecarError as exc:
            untrusted = isinstance(exc, SidecarUntrustedError)
            runtime.reporter.report(
                kong,
                "err" if untrusted else "warn",
                "sidecar-untrusted" if untrusted else "sidecar",
                f"sidecar lookup failed, cache bypassed: {exc}",
                local=not untrusted,  # the client logs that one, at most once a second
            )
            bypass(
                kong, cfg, seen, debug, "sidecar-untrusted" if untrusted else "sidecar-unavailable"
            )
            return
        found = wire.found_from_pb(answer)
        if near is not None and ticket is not None and wire.hit(answer):
            near.offer(key.key, lines, found, ticket)
        state.fill_lease = found.fill_lease
        step = decide.after_lookup(found, decision, rule, h, cfg)
        fallback = step.if_origin_down if isinstance(step, decide.Revalidate) else None
        if (
            fallback is not None
            and state.origin
            # a 504 only when the origin cannot be reached, not when it answers 5xx
            # (RFC 9111 §5.2.2.2): such an entry is then revalidated, its answer passed on
            and (
                not isinstance(fallback, decide.OriginUnreachable)
                or runtime.origins.unreachable(state.key)
            )
            and not runtime.origins.admit(state.origin, state.key)
        ):
            step = fallback
        if isinstance(step, decide.Revalidate) and step.in_background is not None:
            step = stale_while_refreshing(
                kong,
                cfg,
                client,
                state,
                step,
                Refreshing(self._routes, self._clock(), key, lines, "?" in target),
            )
        if isinstance(step, decide.Serve):
            if step.release:
                release(client, state)
            serve(kong, cfg, state, step.served, seen, answer.tier)
        elif isinstance(step, decide.Revalidate):
            state.revalidating(step.entry, found.age_s, self._clock(), step.stale_if_error)
            state.client_conditional = step.client_conditional
            if step.set_upstream:
                kong.service.request.set_headers(step.set_upstream)
            for name in step.clear_upstream:
                kong.service.request.clear_header(name)
            self._forward(kong, state, stripped)
        elif isinstance(step, decide.Forward):
            self._forward(kong, state, stripped)
        else:
            release(client, state)
            if isinstance(step, decide.OnlyIfCachedMiss):
                exit_with(kong, only_if_cached_miss(state, cfg))
                seen.publish(XCacheStatus.MISS.value, "only-if-cached", status=504)
            elif isinstance(step, decide.OriginUnreachable):
                exit_with(kong, origin_unreachable(state, cfg, step.member))
                seen.publish(XCacheStatus.REFRESH.value, "origin-unreachable", status=504)
            else:
                bypass(kong, cfg, seen, debug, step.reason)

    def _forward(self, kong: Any, state: RequestState, stripped: tuple[str, ...]) -> None:
        """Let the request go upstream for a response that may be stored: first remove the
        override headers it carries (`kong_plugin.poisoning`; one PDK call each, none when
        it carries none), then keep its state for the ``response`` phase."""
        for name in stripped:
            kong.service.request.clear_header(name)
        if stripped:
            log.debug("removed %s from the request to the upstream (%s)", stripped, state.key)
        remember(kong, state)

    # -- response ----------------------------------------------------------------------

    def response(self, kong: Any) -> None:
        runtime.event.exited = False
        try:
            self._response(kong)
        except Exception as exc:
            log.exception("strata-cache response phase failed; response passed through")
            if not runtime.event.exited:
                runtime.reporter.report(
                    kong, "err", "response", f"response phase failed, not stored: {exc!r}"
                )

    def _response(self, kong: Any) -> None:
        state = carried(kong, "response")  # first PDK call
        cfg = self.config
        if state is None or cfg is None:
            return
        if state.nonce:
            runtime.answered.add(str(state.nonce))
        seen = self._seen("response", state)
        status = pdk(kong.response.get_status())
        origin_answered(kong, state, status)
        headers, complete = upstream_headers(kong)
        client = self._client(cfg)
        if state.mode == "write":
            invalidate(client, cfg, state, status, headers)
            bypass(kong, cfg, seen, state.debug, "method", status)
            hide_targeted(kong, headers, complete, cfg)
            return
        upstream = decide.Upstream(status, headers, complete, self._clock())
        step = decide.after_response(state, upstream, cfg)
        if isinstance(step, decide.Refresh):
            again = store_now(kong, client, state, step.store) if step.store is not None else ""
            if step.store is None or again:
                release(client, state)
            if step.drop:  # off the request path, like the release
                key = state.key.encode()
                runtime.background.submit(lambda: client.invalidate(key=key))
            kept = "" if step.drop else store_outcome(step.store is not None, again)
            serve(kong, cfg, state, step.served, seen, store=kept)
            return
        if isinstance(step, decide.Serve):
            release(client, state)
            serve(kong, cfg, state, step.served, seen)
            return
        decision = step.decision
        if decision.store:
            runtime.uncacheable.discard(state.key)
        elif decision.reason not in decide.REQUEST_REASONS:
            runtime.uncacheable.add(state.key)  # its next misses do not wait for each other
        # only now pull the body across the socket: status, headers and a declared
        # Content-Length already said the response may be stored
        body = service_body(kong) if decision.store else b""
        names = None
        if cfg.event_tags and decide.storable(decision, body, cfg):
            names = self._names(kong, state.origin)
        plan = decide.plan_store(state, upstream, decision, body, cfg, names)
        unstored = store_now(kong, client, state, plan.entry) if plan.entry is not None else ""
        stored = plan.entry is not None and not unstored
        if not stored:
            release(client, state)
        word, member = decide.proxied_status(state, status, plan, stored, cfg, unstored)
        kong.response.set_headers(cache_headers(cfg, state.debug, word, state.key, member))
        hide_targeted(kong, headers, complete, cfg)
        why_not = unstored if plan.entry is not None else plan.detail
        seen.publish(
            word,
            "stored" if stored else (why_not or ""),
            status=status,
            body_bytes=len(body) if decision.store else -1,
            store=store_outcome(plan.entry is not None, why_not),
        )

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
        raw = carried_raw(kong)  # the only call for hits and bypasses
        cfg = self.config
        if raw is None or cfg is None:
            return
        nonce = carry.nonce_of(raw)
        if nonce and str(nonce) in runtime.answered:  # its response phase ran here: done,
            runtime.answered.discard(str(nonce))  # without decoding the state
            return
        state = unpacked(kong, raw, "log")
        if state is None:
            return
        if pdk(kong.nginx.get_ctx("buffered_status")) is not None:
            return  # it ran in another worker (kong/init.lua Kong.response sets this first)
        release(self._client(cfg), state)
        proxied = bool(state.origin) and bool(pdk(kong.nginx.get_ctx("KONG_PROXIED")))
        if proxied:
            origin_failed(kong, state, "could not be reached", unreachable=True)
        # Kong answered it (a 502/504), or a later plugin did: the plugin sent no word
        detail = "upstream-unreachable" if proxied else "no-response-phase"
        self._seen("log", state).publish("", detail)

    # -- helpers -----------------------------------------------------------------------

    def _client(self, cfg: PluginConfig) -> SidecarClient:
        return runtime.client_for(cfg.sidecar.address, cfg.sidecar.timeout_s, cfg.sidecar.uid)

    def _coalesce_wait_ms(
        self, kong: Any, cfg: PluginConfig, route_id: str | None, key: str
    ) -> int:
        """How long this lookup may wait for another request's fill: `coalesce_wait_ms`,
        capped by the route's service ``read_timeout`` (a fill cannot take longer), and 0
        for a key whose last response could not be stored (nothing to wait for)."""
        wait = cfg.coalesce_wait_ms
        if wait <= 0 or key in runtime.uncacheable:
            return 0
        cap = self._routes.read_timeout(route_id or "", lambda: service_facts(kong)) or wait
        return min(wait, cap)

    def _names(self, kong: Any, route_id: str) -> Names:
        """The names of the matched route and its service, for the entry's event tags:
        remembered per route id, read again (a PDK call each) after 60 s."""
        return self._routes.names(route_id, lambda: route_name(kong), lambda: service_facts(kong))

    def _seen(self, phase: Phase, state: RequestState) -> Seen:
        """The outcome-to-be of a request a later phase finishes, from its carried state."""
        return Seen(
            phase,
            state.request_time,
            self._clock,
            self.config,
            state.origin or self.route_id or "",
            state.method,
            state.key,
            state.consumer_id,
        )
