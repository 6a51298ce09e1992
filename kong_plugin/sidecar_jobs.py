"""What the handler asks of the sidecar besides the lookup: stores (before the response
goes out), fill-lease releases (queued to run after it, `kong_plugin.background`), and
purges after a write.

A store goes out with its route's key prefix (``StoreRequest.route``), which the sidecar
stamps the entry with so that a purge of that prefix reaches it on every tier.

Not guaranteed: that a store succeeds (the sidecar may be down or slow: the response
then goes out unstored, with the reason in its `Cache-Status`); that a queued release runs
(the queue is bounded). A purge that fails is logged, not retried.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from strata.v1 import cache_pb2 as pb

from kong_plugin import runtime, wire
from kong_plugin.client import SidecarClient, SidecarError
from kong_plugin.config import PluginConfig
from kong_plugin.inflight import RequestState
from kong_plugin.invalidation import invalidation_targets
from kong_plugin.pluginserver.events import blocking
from kong_plugin.stored import StoredEntry

log = logging.getLogger("strata.plugin")

#: Longest a response waits for its Store (large bodies get more than a lookup's deadline).
STORE_TIMEOUT_S = 2.0
#: Body bytes per second of extra Store deadline.
STORE_BYTES_PER_S = 16 * 1024 * 1024

_STORE_DETAIL = {
    pb.STORE_RESULT_STORED: "",
    pb.STORE_RESULT_NOT_ADMITTED: "store-not-admitted",
    pb.STORE_RESULT_TOO_LARGE: "store-too-large",
    pb.STORE_RESULT_EXPIRED: "store-expired",
}


def store_now(kong: Any, client: SidecarClient, state: RequestState, entry: StoredEntry) -> str:
    """Store `entry` under the request's key before its response goes out, so that the next
    request for it finds it (the sidecar also wakes the lookups waiting on the fill lease).

    Runs off the worker's loop (`kong_plugin.pluginserver.events.blocking`). Returns "" when
    a tier holds it, else why not (a `Cache-Status` detail): ``store-not-admitted``,
    ``store-too-large`` or ``store-expired`` (the sidecar's answer), ``store-failed`` (the
    sidecar could not be reached or answered past the deadline: reported to Kong's log;
    the store may still land). The deadline is the sidecar call's, plus 1 s per 16 MiB of
    body, at most `STORE_TIMEOUT_S`."""
    key = state.key.encode()
    lines = state.request_headers
    message = wire.entry_to_pb(entry)
    route = state.route
    timeout = min(STORE_TIMEOUT_S, client.timeout_s + len(entry.body) / STORE_BYTES_PER_S)
    try:
        answer = blocking(lambda: client.store(key, message, lines, timeout_s=timeout, route=route))
    except SidecarError as exc:
        runtime.reporter.report(
            kong, "warn", "store", f"sidecar store failed, response not stored: {exc}"
        )
        return "store-failed"
    return _STORE_DETAIL.get(answer.result, "store-failed")


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
