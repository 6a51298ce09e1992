"""How a phase ends or marks a request and publishes its outcome (`kong_plugin.outcome`):
a bypass (one PDK call), an answer from a stored entry (``kong.response.exit``), and the
removal of the targeted fields meant for this cache only (RFC 9213).

Not guaranteed: anything after `serve` may call the PDK (nothing may: the request ended).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kong_plugin.cache_status import XCacheStatus
from kong_plugin.config import PluginConfig
from kong_plugin.inflight import RequestState
from kong_plugin.outcome import Seen, detail_of
from kong_plugin.pdk import exit_with
from kong_plugin.replies import Served, bypass_headers, entry_reply
from kong_plugin.targeted import fields_to_clear


def bypass(
    kong: Any, cfg: PluginConfig, seen: Seen, debug: bool, reason: str, status: int = 0
) -> None:
    """Tell the client the cache stayed out of this request, and why, in one PDK call;
    publish that outcome (`status`: the client's, 0 while unknown)."""
    headers = bypass_headers(cfg, debug, reason)
    if headers:
        kong.response.set_headers(headers)
    seen.publish(XCacheStatus.BYPASS.value, reason, status=status)


def serve(
    kong: Any,
    cfg: PluginConfig,
    state: RequestState,
    served: Served,
    seen: Seen,
    tier: str = "",
    store: str = "",
) -> None:
    """End the request with a stored entry (`tier`: where the lookup found it) and
    publish that outcome (`store`: what became of storing it again)."""
    reply = entry_reply(served, state, cfg)
    exit_with(kong, reply)
    seen.publish(
        served.word.value,
        detail_of(served.member),
        status=reply.status,
        tier=tier,
        body_bytes=len(reply.body),
        store=store,
    )


def hide_targeted(kong: Any, headers: Mapping[str, Any], complete: bool, cfg: PluginConfig) -> None:
    """Remove the targeted fields meant for this cache only (RFC 9213) from a proxied
    response: one PDK call each, and only for those the upstream's response carries
    (`kong_plugin.targeted`)."""
    for name in fields_to_clear(headers, complete, cfg.targeted):
        kong.response.clear_header(name)
