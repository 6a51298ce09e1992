"""``kong.request``, ``kong.client``, ``kong.router``, ``kong.plugin``, ``kong.node``, ``kong.ip``.

Trusted IPs are not emulated: every client is untrusted, so the ``get_forwarded_*`` functions
return the request's own values and ``X-Forwarded-*`` headers from clients are ignored.
"""

from __future__ import annotations

from typing import Any

from kongsim.errors import LuaError
from kongsim.pdk.codec import lua_number, multimap_headers, multimap_query, parse_body, parse_query
from kongsim.pdk.core import (
    ACCESS_ONLY,
    AUTH_AND_LATER,
    BEFORE_CONTENT,
    REQUEST,
    CallContext,
    arg,
    first_header,
    max_arg,
    name_arg,
    register,
)
from kongsim.uri import normalize, printable


@register("kong.request.get_scheme", REQUEST, timer_ok=False)
def _req_scheme(c: CallContext, _a: list[Any]) -> Any:
    return c.st.scheme


@register("kong.request.get_host", REQUEST, timer_ok=False)
def _req_host(c: CallContext, _a: list[Any]) -> Any:
    return c.st.host


@register("kong.request.get_port", None, timer_ok=False)
def _req_port(c: CallContext, _a: list[Any]) -> Any:
    return c.st.server_port


@register("kong.request.get_forwarded_scheme", REQUEST, timer_ok=False)
def _req_fwd_scheme(c: CallContext, _a: list[Any]) -> Any:
    return c.st.scheme


@register("kong.request.get_forwarded_host", REQUEST, timer_ok=False)
def _req_fwd_host(c: CallContext, _a: list[Any]) -> Any:
    return c.st.host


@register("kong.request.get_forwarded_port", REQUEST, timer_ok=False)
def _req_fwd_port(c: CallContext, _a: list[Any]) -> Any:
    return c.st.server_port


@register("kong.request.get_forwarded_path", REQUEST, timer_ok=False)
def _req_fwd_path(c: CallContext, _a: list[Any]) -> Any:
    return printable(normalize(c.st.raw_path, True))


@register("kong.request.get_forwarded_prefix", REQUEST, timer_ok=False)
def _req_fwd_prefix(c: CallContext, _a: list[Any]) -> Any:
    return c.st.forwarded_prefix


@register("kong.request.get_http_version", REQUEST, timer_ok=False)
def _req_http_version(c: CallContext, _a: list[Any]) -> Any:
    return lua_number(c.st.http_version)


@register("kong.request.get_method", REQUEST, timer_ok=False)
def _req_method(c: CallContext, _a: list[Any]) -> Any:
    return c.st.method


@register("kong.request.get_path", REQUEST, timer_ok=False)
def _req_path(c: CallContext, _a: list[Any]) -> Any:
    return printable(normalize(c.st.raw_path, True))


@register("kong.request.get_raw_path", REQUEST, timer_ok=False)
def _req_raw_path(c: CallContext, _a: list[Any]) -> Any:
    return c.st.raw_path


@register("kong.request.get_path_with_query", REQUEST, timer_ok=False)
def _req_path_query(c: CallContext, _a: list[Any]) -> Any:
    return c.st.request_uri


@register("kong.request.get_raw_query", REQUEST, timer_ok=False)
def _req_raw_query(c: CallContext, _a: list[Any]) -> Any:
    return c.st.raw_query


@register("kong.request.get_query", REQUEST, timer_ok=False, step="plugin.StepMultiMap", fix="mmap")
def _req_query(c: CallContext, a: list[Any]) -> Any:
    return multimap_query(parse_query(c.st.raw_query, max_arg(a, "max_args")))


@register("kong.request.get_query_arg", REQUEST, timer_ok=False)
def _req_query_arg(c: CallContext, a: list[Any]) -> Any:
    name = name_arg(a, "query argument name")
    value = parse_query(c.st.raw_query).get(name)
    return value[0] if isinstance(value, list) else value


@register("kong.request.get_header", REQUEST, timer_ok=True)
def _req_header(c: CallContext, a: list[Any]) -> Any:
    return first_header(c.st.headers, name_arg(a))


@register(
    "kong.request.get_headers", REQUEST, timer_ok=True, step="plugin.StepMultiMap", fix="mmap"
)
def _req_headers(c: CallContext, a: list[Any]) -> Any:
    return multimap_headers(c.st.headers, max_arg(a, "max_headers"))


@register("kong.request.get_raw_body", BEFORE_CONTENT, timer_ok=False, fix="raw")
def _req_raw_body(c: CallContext, a: list[Any]) -> Any:
    body = c.st.body
    if len(body) <= c.env.client_body_buffer_size:
        return body
    max_size = arg(a, 0)
    if not isinstance(max_size, int | float) or max_size < 0:
        return None  # "request body did not fit into client body buffer ..."
    if max_size > 0 and len(body) > max_size:
        return None  # "request body file too big"
    return body


@register("kong.request.get_body", BEFORE_CONTENT, timer_ok=False)
def _req_body(c: CallContext, a: list[Any]) -> Any:
    mimetype = arg(a, 0)
    content_type = mimetype if isinstance(mimetype, str) else c.st.headers.get("content-type")
    if len(c.st.body) > c.env.client_body_buffer_size and not (
        isinstance(arg(a, 2), int | float) and arg(a, 2) >= 0
    ):
        return None
    return parse_body(c.st.body, content_type)


@register("kong.request.get_start_time", REQUEST, timer_ok=True)
def _req_start_time(c: CallContext, _a: list[Any]) -> Any:
    return c.st.start_ms


@register("kong.request.get_uri_captures", REQUEST, timer_ok=True)
def _req_uri_captures(c: CallContext, _a: list[Any]) -> Any:
    caps = dict(c.st.match.captures) if c.st.match else {}
    return {"unnamed": caps.get("unnamed") or {}, "named": caps.get("named") or {}}


# --- kong.client ----------------------------------------------------------------------------------

_CLIENT_ADDR = (
    "certificate",
    "rewrite",
    "access",
    "balancer",
    "response",
    "header_filter",
    "body_filter",
    "log",
)


@register("kong.client.get_ip", _CLIENT_ADDR, timer_ok=False)
def _client_ip(c: CallContext, _a: list[Any]) -> Any:
    return c.st.client_ip


@register("kong.client.get_forwarded_ip", _CLIENT_ADDR, timer_ok=False)
def _client_fwd_ip(c: CallContext, _a: list[Any]) -> Any:
    return c.st.client_ip


@register("kong.client.get_port", _CLIENT_ADDR, timer_ok=False)
def _client_port(c: CallContext, _a: list[Any]) -> Any:
    return c.st.client_port


@register("kong.client.get_forwarded_port", _CLIENT_ADDR, timer_ok=False)
def _client_fwd_port(c: CallContext, _a: list[Any]) -> Any:
    return c.st.client_port


@register("kong.client.get_protocol", AUTH_AND_LATER, timer_ok=False)
def _client_protocol(c: CallContext, _a: list[Any]) -> Any:
    return c.st.scheme


@register("kong.client.get_consumer", AUTH_AND_LATER, timer_ok=True, step="plugin.StepConsumer")
def _client_consumer(c: CallContext, _a: list[Any]) -> Any:
    return c.st.consumer


@register("kong.client.get_credential", AUTH_AND_LATER, timer_ok=True, step="plugin.StepCredential")
def _client_credential(c: CallContext, _a: list[Any]) -> Any:
    return c.st.credential


@register("kong.client.load_consumer", AUTH_AND_LATER, timer_ok=True, step="plugin.StepConsumer")
def _client_load_consumer(c: CallContext, a: list[Any]) -> Any:
    wanted = arg(a, 0)
    if not isinstance(wanted, str):
        raise LuaError("consumer_id must be a string")
    found = c.env.decl.consumer(wanted)
    if found is None and arg(a, 1):
        found = c.env.decl.find_consumer(wanted)
    return found.entity() if found else None


@register("kong.client.authenticate", ACCESS_ONLY, timer_ok=False, step="plugin.StepCredential")
def _client_authenticate(c: CallContext, a: list[Any]) -> Any:
    consumer, credential = arg(a, 0), arg(a, 1)
    for value, what in ((consumer, "consumer"), (credential, "credential")):
        if value is not None and not isinstance(value, dict):
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


@register("kong.plugin.get_id", REQUEST, timer_ok=True)
def _plugin_id(c: CallContext, _a: list[Any]) -> Any:
    return c.plugin.id if c.plugin else None


@register("kong.node.get_id", None, timer_ok=True)
def _node_id(c: CallContext, _a: list[Any]) -> Any:
    return c.env.node_id


@register("kong.node.get_hostname", None, timer_ok=True)
def _node_hostname(c: CallContext, _a: list[Any]) -> Any:
    return c.env.hostname


@register("kong.ip.is_trusted", None, timer_ok=True)
def _ip_trusted(_c: CallContext, _a: list[Any]) -> Any:
    return False
