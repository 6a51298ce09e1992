"""Process-wide state of the plugin server: everything module-level and mutable lives here.

One plugin-server worker process serves every plugin instance and many requests at once,
each event a greenlet on the worker's loop (`kong_plugin.pluginserver`; with kong-pdk's
engine, a thread per event). What they share:

* `client_for`: one sidecar client (one gRPC channel) per address, timeout and uid;
* `near_for`: one near-cache (and the feed that keeps it coherent) per sidecar address,
  sized by `near_settings` (the plugin server's ``--near-cache-*`` options);
* `background`: the bounded queue that runs stores and lease releases after a response;
* `refreshes`: the bounded pool background refreshes run on (`kong_plugin.refresh`);
* `reporter`: rate-limited reports to Kong's error log;
* `origins`: which upstreams (and keys) are failing;
* `uncacheable`: keys whose last response could not be stored (their misses do not wait);
* `answered`: requests whose ``response`` phase ran here (for their ``log`` phase);
* `event`: per event (greenlet-local, or thread-local under kong-pdk's engine), whether the
  event already ended the request with ``kong.response.exit``.

Tests replace an attribute of this module (``monkeypatch.setattr(runtime, "origins",
...)``); the handler reads them through the module for that reason.

Not guaranteed: anything across plugin-server workers (each has its own copy of all of
this; a request's own state travels with it, `kong_plugin.carry`); state survives only as
long as this process.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

import greenlet

from kong_plugin.background import Background
from kong_plugin.client import SidecarClient
from kong_plugin.near_cache import MAX_AGE_S, MAX_BYTES, MAX_ENTRY_BYTES, NearCache
from kong_plugin.near_feed import NearFeed
from kong_plugin.origin import OriginHealth
from kong_plugin.recent import RecentKeys
from kong_plugin.refresh_pool import RefreshPool
from kong_plugin.report import Reporter

_clients: dict[tuple[str, float, int | None], SidecarClient] = {}
_clients_lock = threading.Lock()
_near: dict[str, NearCache | None] = {}
_feeds: list[NearFeed] = []


@dataclass(frozen=True, slots=True)
class NearSettings:
    """The near-cache's size per sidecar address (`max_bytes` 0: no near-cache)."""

    max_bytes: int = MAX_BYTES
    max_entry_bytes: int = MAX_ENTRY_BYTES
    max_age_s: float = MAX_AGE_S


near_settings = NearSettings()

background = Background()
refreshes = RefreshPool()
reporter = Reporter()
origins = OriginHealth()
uncacheable = RecentKeys()
#: Nonces of requests whose ``response`` phase ran in this worker: their ``log`` phase
#: then needs no second PDK call to learn it (`kong_plugin.handler`).
answered = RecentKeys(ttl_s=60.0)


class EventLocal:
    """Attributes private to the running event: kept on the current greenlet, which is the
    event's own (`kong_plugin.pluginserver.events.Event`) or, under kong-pdk's
    thread-per-event engine, the thread's main greenlet. Unset attributes read as None."""

    def __getattr__(self, name: str) -> Any:
        return getattr(greenlet.getcurrent(), f"strata_{name}", None)

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(greenlet.getcurrent(), f"strata_{name}", value)


#: Per event (see `EventLocal`): whether the event already called ``kong.response.exit``.
event = EventLocal()


def client_for(address: str, timeout_s: float, uid: int | None = None) -> SidecarClient:
    """The process-wide client for one sidecar address (one channel per process); `uid`:
    the uid its unix socket must be served by (None: this process's)."""
    key = (address, timeout_s, uid)
    client = _clients.get(key)
    if client is None:
        with _clients_lock:  # two first requests must not both open a channel
            client = _clients.get(key)
            if client is None:
                client = _clients[key] = SidecarClient(address, timeout_s, expected_uid=uid)
    return client


def near_for(client: SidecarClient) -> NearCache | None:
    """The process-wide near-cache for `client`'s sidecar address, its feed started on
    first use; None when `near_settings` turns it off."""
    if near_settings.max_bytes <= 0:
        return None
    near = _near.get(client.address)
    if near is not None or client.address in _near:
        return near
    with _clients_lock:
        if client.address in _near:
            return _near[client.address]
        cfg = near_settings
        if cfg.max_bytes <= 0:
            _near[client.address] = None
            return None
        near = NearCache(cfg.max_bytes, min(cfg.max_entry_bytes, cfg.max_bytes), cfg.max_age_s)
        _feeds.append(NearFeed(client, near).start())
        _near[client.address] = near
        return near


def stop_near_feeds() -> None:
    """Stop every feed (process exit, tests); their near-caches stop answering."""
    with _clients_lock:
        feeds = list(_feeds)
        _feeds.clear()
        _near.clear()
    for feed in feeds:
        feed.stop()
