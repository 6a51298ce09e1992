"""What the handler does when an upstream answers or fails: update the process's origin
health (`kong_plugin.origin`, held in `kong_plugin.runtime.origins`) and tell Kong's error
log when an origin is marked down.

Not guaranteed: a report for every failure -- an origin is reported when it is marked
down (several keys failed), at most as often as `kong_plugin.report` allows.
"""

from __future__ import annotations

import logging
from typing import Any

from kong_plugin import runtime
from kong_plugin.inflight import RequestState
from kong_plugin.origin import FAILURE_STATUSES

log = logging.getLogger("strata.plugin")


def origin_answered(kong: Any, state: RequestState, status: int) -> None:
    """The upstream answered `status` (a 502/503/504 counts as a failure)."""
    if not state.origin:
        return
    if status in FAILURE_STATUSES:
        origin_failed(kong, state, f"answered {status}")
    elif runtime.origins.succeeded(state.origin, state.key):
        log.warning("origin of route %s answers again", state.origin)


def origin_failed(kong: Any, state: RequestState, what: str, *, unreachable: bool = False) -> None:
    """The upstream failed this request (`what` says how, for the report; `unreachable`:
    it gave no answer at all)."""
    if runtime.origins.failed(state.origin, state.key, unreachable=unreachable):
        runtime.reporter.report(
            kong,
            "warn",
            "origin-down",
            f"upstream of route {state.origin} {what} for several URLs: marked down, "
            "stale-if-error copies are served without contacting it until a probe succeeds",
        )
