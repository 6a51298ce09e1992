"""``/_kongsim/*``: kongsim's own endpoints on the proxy listener, answered to loopback only.

=====================================  ============================================================
``GET  /_kongsim/requests/last``       the last request's record (waits up to 5 s for its
                                       ``log`` phase); ``?wait=0`` does not wait
``GET  /_kongsim/requests?limit=N``    the last N records (default 20)
``GET  /_kongsim/requests/{id}``       one record by request id (``X-Kong-Request-Id``)
``GET  /_kongsim/issues``              every issue and warning since the last clear
``DELETE /_kongsim/issues``            clear issues, warnings and request records
``POST /_kongsim/reload``              reload kong.yml (400 with the errors if it is invalid)
``GET  /_kongsim/status``              plugin servers (pid, restarts) and instance ids per worker
=====================================  ============================================================

A route whose path starts with ``/_kongsim/`` is shadowed by these endpoints.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from kongsim.errors import ConfigError
from kongsim.recorder import Recorder, RequestRecord

PREFIX = "/_kongsim/"


@dataclass(frozen=True)
class AdminHooks:
    """What the endpoints use of the gateway, built by the gateway (this module does not import
    it): its recorder, its reload (raises :class:`ConfigError` and keeps the old config when the
    file is invalid) and its status report."""

    recorder: Recorder
    reload: Callable[[], Awaitable[None]]
    status: Callable[[], dict[str, Any]]


def _is_loopback(request: web.BaseRequest) -> bool:
    peer = request.transport.get_extra_info("peername") if request.transport else None
    if not peer:
        return False
    try:
        return ipaddress.ip_address(peer[0]).is_loopback
    except ValueError:
        return False


async def _record_json(record: RequestRecord, wait: bool) -> dict[str, Any]:
    if wait and not record.done.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(record.done.wait(), 5.0)
    return record.to_dict()


async def handle(hooks: AdminHooks, request: web.BaseRequest) -> web.StreamResponse:
    """Answer one ``/_kongsim/`` request."""
    if not _is_loopback(request):
        return web.json_response({"message": "forbidden"}, status=403)
    path = request.path[len(PREFIX) :].rstrip("/")
    method = request.method
    rec = hooks.recorder
    wait = request.query.get("wait", "1") not in ("0", "false", "no")
    if method == "GET" and path == "requests/last":
        last = rec.last()
        if last is None:
            return web.json_response({"message": "no request yet"}, status=404)
        return web.json_response(await _record_json(last, wait))
    if method == "GET" and path == "requests":
        limit = int(request.query.get("limit", "20"))
        records = list(rec.requests)[-limit:]
        return web.json_response({"data": [await _record_json(r, False) for r in records]})
    if method == "GET" and path.startswith("requests/"):
        found = rec.find(path.split("/", 1)[1])
        if found is None:
            return web.json_response({"message": "unknown request id"}, status=404)
        return web.json_response(await _record_json(found, wait))
    if method == "GET" and path == "issues":
        return web.json_response(
            {"issues": [vars(i) for i in rec.issues], "warnings": list(rec.warnings)}
        )
    if method == "DELETE" and path == "issues":
        rec.clear()
        return web.json_response({"ok": True})
    if method == "POST" and path == "reload":
        try:
            await hooks.reload()
        except ConfigError as exc:
            return web.json_response({"ok": False, "errors": exc.messages}, status=400)
        return web.json_response({"ok": True})
    if method == "GET" and path == "status":
        return web.json_response(hooks.status())
    return web.json_response({"message": "not found"}, status=404)
