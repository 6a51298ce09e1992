"""``kong.client``, ``kong.router``, ``kong.plugin``, ``kong.node``, ``kong.ip``.

Each function follows the Kong 3.9.3 source named in its section (``kong/pdk/<module>.lua``).
Trusted IPs are not emulated: every client is untrusted (Kong's default ``trusted_ips`` is
empty), so the forwarded IP and port are the connection's own.
"""

from __future__ import annotations

import re
from typing import Any

from kongsim.errors import LuaError
from kongsim.pdk.core import (
    ACCESS_ONLY,
    AUTH_AND_LATER,
    TIMER_ERROR,
    CallContext,
    arg,
    register,
)

# --- kong.client (kong/pdk/client.lua) -------------------------------------------------------


@register("kong.client.get_ip", None, timer_ok=False)
def _client_ip(c: CallContext, _a: list[Any]) -> Any:
    """``var.realip_remote_addr or var.remote_addr``; any phase but init_worker."""
    return c.st.client_ip


@register("kong.client.get_forwarded_ip", None, timer_ok=False)
def _client_fwd_ip(c: CallContext, _a: list[Any]) -> Any:
    return c.st.client_ip


@register("kong.client.get_port", None, timer_ok=False)
def _client_port(c: CallContext, _a: list[Any]) -> Any:
    return c.st.client_port


@register("kong.client.get_forwarded_port", None, timer_ok=False)
def _client_fwd_port(c: CallContext, _a: list[Any]) -> Any:
    return c.st.client_port


@register("kong.client.get_protocol", AUTH_AND_LATER, timer_ok=True)
def _client_protocol(c: CallContext, _a: list[Any]) -> Any:
    """The route's only protocol; else ``https`` iff the connection is TLS (no trusted IPs).
    The second case reads ``ngx.var``, which fails in the log timer."""
    route = c.st.route
    if route is None:
        return None  # nil, "No active route found"
    if len(route.protocols) == 1:
        return route.protocols[0]
    if c.st.in_timer:
        raise LuaError(TIMER_ERROR)
    return "https" if c.st.scheme.lower() == "https" else "http"


@register("kong.client.get_consumer", AUTH_AND_LATER, timer_ok=True, step="plugin.StepConsumer")
def _client_consumer(c: CallContext, _a: list[Any]) -> Any:
    return c.st.consumer


@register("kong.client.get_credential", AUTH_AND_LATER, timer_ok=True, step="plugin.StepCredential")
def _client_credential(c: CallContext, _a: list[Any]) -> Any:
    return c.st.credential


_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$", re.I)


@register("kong.client.load_consumer", AUTH_AND_LATER, timer_ok=True, step="plugin.StepConsumer")
def _client_load_consumer(c: CallContext, a: list[Any]) -> Any:
    """By id when ``consumer_id`` is a uuid; by username when ``search_by_username``."""
    wanted, by_username = arg(a, 0), arg(a, 1)
    if not isinstance(wanted, str):
        raise LuaError("consumer_id must be a string")
    is_uuid = len(wanted) == 36 and _UUID.match(wanted) is not None
    if not is_uuid and not by_username:
        raise LuaError("cannot load a consumer with an id that is not a uuid")
    found = c.env.decl.consumer(wanted) if is_uuid else None
    if found is None and by_username:
        found = next((x for x in c.env.decl.consumers if x.username == wanted), None)
    return found.entity() if found else None


@register("kong.client.authenticate", ACCESS_ONLY, timer_ok=False, step="plugin.StepCredential")
def _client_authenticate(c: CallContext, a: list[Any]) -> Any:
    consumer, credential = arg(a, 0), arg(a, 1)
    for value, what in ((consumer, "consumer"), (credential, "credential")):
        if value is not None and not isinstance(value, dict | list):
            raise LuaError(f"{what} must be a table or nil")
    if consumer is None and credential is None:
        raise LuaError("either credential or consumer must be provided")
    c.st.authenticate(consumer, credential)
    return None


# --- kong.router / kong.plugin / kong.node / kong.ip ----------------------------------------


@register("kong.router.get_route", AUTH_AND_LATER, timer_ok=True, step="plugin.StepRoute")
def _router_route(c: CallContext, _a: list[Any]) -> Any:
    return c.st.route.entity() if c.st.route else None


@register("kong.router.get_service", AUTH_AND_LATER, timer_ok=True, step="plugin.StepService")
def _router_service(c: CallContext, _a: list[Any]) -> Any:
    return c.st.service.entity() if c.st.service else None


@register("kong.plugin.get_id", None, timer_ok=True)
def _plugin_id(c: CallContext, _a: list[Any]) -> Any:
    """``ngx.ctx.plugin_id`` (no phase check)."""
    return c.plugin.id if c.plugin else None


@register("kong.node.get_id", None, timer_ok=True)
def _node_id(c: CallContext, _a: list[Any]) -> Any:
    return c.env.node_id


@register("kong.node.get_hostname", None, timer_ok=True)
def _node_hostname(c: CallContext, _a: list[Any]) -> Any:
    return c.env.hostname


@register("kong.ip.is_trusted", None, timer_ok=True)
def _ip_trusted(_c: CallContext, _a: list[Any]) -> Any:
    """Kong's default ``trusted_ips`` is empty: ``function() return false end``."""
    return False
