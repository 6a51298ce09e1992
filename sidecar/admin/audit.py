"""The admin API's log lines: an audit line per request served, thinned refusal lines.

* `AdminLog.served`: every successful purge at INFO (``admin_purge``: client address,
  method, path, route, event id, entries dropped here, queued, soft, duplicate), reads at
  DEBUG (``admin_read``). The token is never logged (it is not among the fields).
* `AdminLog.refused`: a refusal (401, other 4xx, 408, 503, an eviction) of one kind at most
  once every few seconds, with the number held back since (`sidecar.admin.lograte`);
  metrics count every one.
* `AdminLog.no_request`: a connection closed before sending anything (a port probe, a TCP
  health check): DEBUG only.
"""

from __future__ import annotations

import logging
from typing import Protocol

from sidecar.admin.lograte import LogGate
from sidecar.admin.routes import Handled

__all__ = ["AdminLog", "Asker"]

log = logging.getLogger("strata.admin")


class Asker(Protocol):
    """What is known of the client and its request when a line is written."""

    @property
    def peer(self) -> str: ...

    @property
    def route(self) -> str: ...

    @property
    def method(self) -> str: ...

    @property
    def path(self) -> str: ...


def _client(asker: Asker) -> dict[str, object]:
    return {
        "client.address": asker.peer,
        "http.request.method": asker.method,
        "url.path": asker.path,
        "strata.admin_route": asker.route,
    }


class AdminLog:
    """Writes the admin API's lines (see the module doc)."""

    def __init__(self, gate: LogGate | None = None) -> None:
        self._gate = gate or LogGate()

    def refused(
        self,
        kind: str,
        level: int,
        message: str,
        asker: Asker,
        more: dict[str, object] | None = None,
    ) -> None:
        """A refusal of `kind` (a metrics result label): logged unless one of that kind was
        in the last few seconds (then only counted for the next line)."""
        held = self._gate.allow(kind)
        if held is None:
            return
        log.log(
            level,
            "%s",
            message,
            extra={
                "event.action": "admin_refused",
                "event.outcome": "failure",
                "event.reason": kind,
                **_client(asker),
                "strata.suppressed": held,
                **(more or {}),
            },
        )

    def no_request(self, peer: str) -> None:
        log.debug(
            "admin connection closed before the request line",
            extra={"event.action": "admin_no_request", "client.address": peer},
        )

    def served(self, asker: Asker, handled: Handled) -> None:
        """The audit line of a request served: INFO for a purge, DEBUG for a read."""
        status = handled.response.status
        purge = handled.purge
        if purge is None:
            log.debug(
                "admin read",
                extra={
                    "event.action": "admin_read",
                    **_client(asker),
                    "http.response.status_code": status,
                },
            )
            return
        done = purge.done
        if done.duplicate:
            what = "a duplicate: already applied cluster-wide, nothing purged again"
        elif done.queued:
            what = "queued for every node"
        else:
            what = "not queued for other nodes"
        log.info(
            "admin purge: event %s, %d dropped here, %s",
            done.id,
            done.dropped,
            what,
            extra={
                "event.action": "admin_purge",
                "event.outcome": "success",
                **_client(asker),
                "strata.event_id": done.id,
                "strata.dropped": done.dropped,
                "strata.queued": done.queued,
                "strata.soft": purge.event.soft,
                "strata.duplicate": done.duplicate,
                "http.response.status_code": status,
            },
        )
