"""The sidecar's admin purge API: Kong proxy-cache's Admin API paths plus Strata's own
``POST /purge``, over plain HTTP/1.1 on `admin_listen` (loopback by default), for holders
of the bearer token (`admin_token` / `admin_token_file`); and `strata purge`, its client.

* `start_admin`: build and start the server from the settings (None when no token is set);
* `sidecar.admin.server.AdminServer`: the server (limits in `sidecar.admin.http.Limits`);
* `sidecar.admin.routes`: what each path does; `sidecar.admin.purges`: requests to events;
* `sidecar.admin.audit`: the audit and refusal log lines (`sidecar.admin.lograte` thins the
  refusals); `sidecar.admin.listen`: the `admin_listen` address;
* `sidecar.admin.purge_cli`: ``strata purge``.

Every purge is one invalidation event submitted to this node's `Invalidations`, which
applies it here and publishes it to every node. ``docs/admin-api.md`` is the reference.
"""

from __future__ import annotations

import logging

from sidecar.admin.auth import load_token
from sidecar.admin.http import Limits
from sidecar.admin.ports import AdminObserver, Peeker, Submitter
from sidecar.admin.routes import Routes
from sidecar.admin.server import AdminServer
from sidecar.config import SidecarConfig
from sidecar.core.clock import Clock

__all__ = ["AdminServer", "Limits", "start_admin"]

log = logging.getLogger("strata.admin")


async def start_admin(
    config: SidecarConfig,
    submitter: Submitter,
    peeker: Peeker,
    observer: AdminObserver,
    clock: Clock,
    limits: Limits | None = None,
    wait_for_port: bool = False,
) -> AdminServer | None:
    """The started admin API, or None when no token is configured. `ConfigError` naming
    the setting for a token that cannot be used; OSError when `admin_listen` cannot be
    bound (unless `wait_for_port`: see `AdminServer.start`). The caller closes it
    (``await server.close()``) before the engine."""
    token = load_token(config.admin_token, config.admin_token_file)
    if token is None:
        log.info(
            "admin API off: no admin_token or admin_token_file",
            extra={"event.action": "admin_off"},
        )
        return None
    server = AdminServer(
        config.admin_listen, token, Routes(submitter, peeker, clock), observer, limits
    )
    await server.start(wait_for_port)
    return server
