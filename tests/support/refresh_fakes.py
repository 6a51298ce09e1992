"""Factories and fakes for the plugin's background-refresh tests (`kong_plugin.refresh`):
a stale entry, the lease holder's request state, a planned refresh, and a sidecar client
that records what it is asked.

The values are arbitrary: a public JSON entry with an ETag, stale after 60 s and inside a
30 s stale-while-revalidate window at the age `STALE_AGE_S`; a route ``/products`` that
keeps its path, on a service at ``origin.internal:9000``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from strata.v1 import cache_pb2 as pb

from kong_plugin import refresh
from kong_plugin.cache_status import XCacheStatus
from kong_plugin.client import SidecarUnavailableError
from kong_plugin.config import PluginConfig, parse_config
from kong_plugin.freshness import EntryTiming
from kong_plugin.headers import Headers
from kong_plugin.inflight import RequestState
from kong_plugin.replies import Served
from kong_plugin.stored import StoredEntry
from kong_plugin.upstream_target import Target, target_of

NOW = 1_700_000_000.0
STALE_AGE_S = 70.0
ETAG = '"v1"'

ROUTE = {"id": "route-1", "paths": ["/products"], "strip_path": False, "name": "products"}
SERVICE = {"protocol": "http", "host": "origin.internal", "port": 9000, "name": "catalogue"}


def config(**fields: Any) -> PluginConfig:
    """A route with ``cache_control`` on and `fields` on top."""
    return parse_config({"cache_control": True, **fields})


def target() -> Target:
    found = target_of(ROUTE, SERVICE)
    assert isinstance(found, Target)
    return found


def stale_entry(vary: tuple[str, ...] = (), **headers: str) -> StoredEntry:
    """The stale entry; `headers` (``_`` for ``-``) added to or replacing its own."""
    fields = {
        "content-type": ("application/json",),
        "cache-control": ("public, max-age=60, stale-while-revalidate=30",),
        "etag": (ETAG,),
    }
    fields.update({k.replace("_", "-"): (v,) for k, v in headers.items()})
    timing = EntryTiming(NOW - STALE_AGE_S, 60, 30, 0, 120)
    return StoredEntry(200, Headers(fields), b'{"v":1}', timing, (), vary)


def lease_holder(method: str = "GET", **fields: Any) -> RequestState:
    """The request that holds the key's fill lease (after its lookup)."""
    fields.setdefault("key", "v2:route-1:k")
    fields.setdefault("route", "v2:route-1:")
    fields.setdefault("origin", "route-1")
    fields.setdefault("fill_lease", True)
    return RequestState("store", method, "shop.example", "/products/1", **fields)


def stale_served(entry: StoredEntry) -> Served:
    return Served(entry, STALE_AGE_S, XCacheStatus.STALE, "strata; hit")


def planned(
    request: RequestState | None = None,
    headers: list[tuple[bytes, bytes]] | None = None,
    entry: StoredEntry | None = None,
    cfg: PluginConfig | None = None,
    *,
    has_query: bool = False,
    stale_if_error: bool = False,
) -> refresh.RefreshJob:
    """`refresh.plan` of the stale entry for the lease holder; fails if it is unusable."""
    job = refresh.plan(
        target(),
        request or lease_holder(),
        stale_served(entry or stale_entry()),
        headers or [],
        has_query,
        stale_if_error,
        cfg or config(),
        NOW,
    )
    assert isinstance(job, refresh.RefreshJob), job
    return job


@dataclass
class RecordingClient:
    """A sidecar client that records stores, releases and invalidations; with
    `fail_stores` every store fails as an unreachable sidecar would."""

    timeout_s: float = 0.05
    fail_stores: bool = False
    stores: list[dict[str, Any]] = field(default_factory=list)
    released: list[bytes] = field(default_factory=list)
    invalidated: list[bytes] = field(default_factory=list)

    def store(
        self,
        key: bytes,
        entry: pb.Entry,
        request_headers: list[tuple[bytes, bytes]] | None = None,
        timeout_s: float | None = None,
        route: str = "",
    ) -> pb.StoreResponse:
        if self.fail_stores:
            raise SidecarUnavailableError("sidecar down")
        self.stores.append(
            {
                "key": key,
                "entry": entry,
                "lines": request_headers,
                "timeout_s": timeout_s,
                "route": route,
            }
        )
        return pb.StoreResponse()

    def release(self, key: bytes, timeout_s: float | None = None) -> pb.ReleaseResponse:
        self.released.append(key)
        return pb.ReleaseResponse()

    def invalidate(self, *, key: bytes | None = None, **_: Any) -> pb.InvalidateResponse:
        assert key is not None
        self.invalidated.append(key)
        return pb.InvalidateResponse()
