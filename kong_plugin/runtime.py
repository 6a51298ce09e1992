"""Process-wide state of the plugin server: everything module-level and mutable lives here.

One plugin-server process serves every plugin instance and every request, each event in a
thread of its own (kong-pdk's thread mode). What they share:

* `client_for`: one sidecar client (one gRPC channel) per address, timeout and uid;
* `inflight`: per-request state between the ``access`` and ``response`` phases;
* `background`: the bounded queue that runs stores and lease releases after a response;
* `refreshes`: the bounded pool background refreshes run on (`kong_plugin.refresh`);
* `reporter`: rate-limited reports to Kong's error log;
* `origins`: which upstreams (and keys) are failing;
* `uncacheable`: keys whose last response could not be stored (their misses do not wait);
* `event`: per event (thread-local), whether the event already ended the request with
  ``kong.response.exit``.

Tests replace an attribute of this module (``monkeypatch.setattr(runtime, "origins",
...)``); the handler reads them through the module for that reason.

Not guaranteed: anything across plugin-server processes (Kong may run several); state
survives only as long as this process.
"""

from __future__ import annotations

import threading

from kong_plugin.background import Background
from kong_plugin.client import SidecarClient
from kong_plugin.inflight import InflightTable
from kong_plugin.origin import OriginHealth
from kong_plugin.recent import RecentKeys
from kong_plugin.refresh_pool import RefreshPool
from kong_plugin.report import Reporter

_clients: dict[tuple[str, float, int | None], SidecarClient] = {}
_clients_lock = threading.Lock()

inflight = InflightTable()
background = Background()
refreshes = RefreshPool()
reporter = Reporter()
origins = OriginHealth()
uncacheable = RecentKeys()
#: Per event: kong-pdk (thread mode) runs every event in a thread of its own.
event = threading.local()


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
