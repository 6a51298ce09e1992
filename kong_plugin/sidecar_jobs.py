"""What the handler asks of the sidecar besides the lookup: stores and fill-lease releases,
queued to run after the response (`kong_plugin.background`), and purges after a write.

A store goes out with its route's key prefix (``StoreRequest.route``), which the sidecar
stamps the entry with so that a purge of that prefix reaches it on every tier.

Not guaranteed: that a queued store or release runs (the queue is bounded; a full queue
refuses a store, which is reported to Kong's log and counted) or succeeds (the sidecar may
be down: the cache simply does not have the entry). A purge that fails is logged, not
retried.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from kong_plugin import runtime, wire
from kong_plugin.background import Submitted
from kong_plugin.client import SidecarClient, SidecarError
from kong_plugin.config import PluginConfig
from kong_plugin.inflight import RequestState
from kong_plugin.invalidation import invalidation_targets
from kong_plugin.stored import StoredEntry

log = logging.getLogger("strata.plugin")

#: Deadline of a background Store (it runs after the response; bodies may be large).
STORE_TIMEOUT_S = 2.0


def store_later(kong: Any, client: SidecarClient, state: RequestState, entry: StoredEntry) -> bool:
    """Queue the store of `entry` under the request's key; False (counted, and reported to
    Kong's log) when the queue is full. A store of a key whose store is already queued
    counts as done."""
    key = state.key.encode()
    lines = state.request_headers
    message = wire.entry_to_pb(entry)
    route = state.route
    # Off the request path, so a large body gets more than the lookup deadline.
    timeout = max(client.timeout_s, STORE_TIMEOUT_S)
    outcome = runtime.background.submit_store(
        key,
        len(entry.body),
        lambda: client.store(key, message, lines, timeout_s=timeout, route=route),
    )
    if outcome is Submitted.FULL:
        stats = runtime.background.stats()
        runtime.reporter.report(
            kong,
            "warn",
            "store-queue",
            f"store queue full ({stats.depth} stores, {stats.depth_bytes} bytes queued; "
            f"{stats.dropped} dropped since start): response not stored",
        )
    return outcome.accepted


def release(client: SidecarClient, state: RequestState) -> None:
    """Give up the request's fill lease, if it holds one (queued: off the request path)."""
    if state.fill_lease:
        key = state.key.encode()
        runtime.background.submit(lambda: client.release(key))


def invalidate(
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
