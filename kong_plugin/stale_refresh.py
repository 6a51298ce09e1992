"""A stale hit whose fill lease this request holds, with background refreshes on: answer
it stale now and refresh the entry on the plugin server's refresh pool
(`kong_plugin.refresh`), instead of making the client wait for the origin.

Not guaranteed: that the refresh runs (a full pool skips it and gives up the lease, the
next request then holds it); that the route's refresh target is current (read once per
route per 60 s, `kong_plugin.route_facts`).
"""

from __future__ import annotations

import logging
from typing import Any, NamedTuple

from kong_plugin import decide, refresh, runtime
from kong_plugin.cache_key import CacheKey
from kong_plugin.client import SidecarClient
from kong_plugin.config import PluginConfig
from kong_plugin.inflight import RequestState
from kong_plugin.pdk import refresh_target
from kong_plugin.refresh_pool import Started
from kong_plugin.route_facts import RouteFacts
from kong_plugin.sidecar_jobs import release
from kong_plugin.upstream_target import Unusable

log = logging.getLogger("strata.plugin")


class Refreshing(NamedTuple):
    """What a refresh of the request needs beyond its state: the plugin's per-route facts
    (`routes`), its clock now (`now`), the request's key, header lines and whether its
    target had a query."""

    routes: RouteFacts
    now: float
    key: CacheKey
    lines: list[tuple[bytes, bytes]]
    has_query: bool


def stale_while_refreshing(
    kong: Any,
    cfg: PluginConfig,
    client: SidecarClient,
    state: RequestState,
    step: decide.Revalidate,
    how: Refreshing,
) -> decide.Serve | decide.Revalidate:
    """This request holds the fill lease of an entry within stale-while-revalidate:
    answer it stale (`step.in_background`) and refresh the entry on the refresh pool (a
    full pool skips the refresh and gives up the lease). The foreground `step` instead
    when no refresh can be made for it: its key holds a consumer, or the route's target
    (`kong_plugin.upstream_target`) or the headers are unusable. Reads the route and
    service (2 PDK calls, once per route per 60 s)."""
    stale = step.in_background
    if stale is None or how.key.consumer or not state.origin:
        return step
    target = how.routes.refresh_target(state.origin, lambda: refresh_target(kong))
    if isinstance(target, Unusable):
        message = f"no background refresh on route {state.origin}: {target.reason}"
        runtime.reporter.report(kong, "warn", "refresh-target", message)
        return step
    job = refresh.plan(
        target, state, stale.served, how.lines, how.has_query, step.stale_if_error, cfg, how.now
    )
    if isinstance(job, Unusable):
        log.debug("no background refresh of %s: %s", state.key, job.reason)
        return step
    started = runtime.refreshes.submit(
        state.key.encode(),
        lambda: refresh.run(job, cfg, client, runtime.origins),
        cfg.background_refresh.max_concurrent,
    )
    if started is Started.FULL:
        release(client, state)
    return stale
