"""Glue to Kong's PDK as the kong-pdk plugin server hands it over: unwrapping results,
reading the request and the upstream's response, and ending a request.

Every function here is one or two PDK round trips (each costs a message over the plugin
server's socket), named for what it reads. `exit_with` is the only way the handler ends a
request: it records, per event, that the request was ended (`kong_plugin.runtime.event`),
since nothing may call the PDK after ``kong.response.exit``.

Not guaranteed: what a kinder stand-in than Kong 3.9 would return -- these read what Kong
hands an external plugin (see `upstream_headers`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kong_plugin import runtime
from kong_plugin.config import PluginConfig
from kong_plugin.headers import MAX_HEADER_LINES, Headers, kong_line_count
from kong_plugin.identity import Identity, classify
from kong_plugin.replies import Reply
from kong_plugin.upstream_target import Target, Unusable, target_of


class PdkError(Exception):
    """A PDK call returned an error (Lua style `nil, err`)."""


def pdk(result: Any) -> Any:
    """Unwrap a Lua-style `(value, err)` PDK result."""
    if isinstance(result, tuple) and len(result) == 2:
        value, err = result
        if err:
            raise PdkError(str(err))
        return value
    return result


def parse_request_line(line: str) -> tuple[str, str]:
    """(method, path?query) of an HTTP request line (nginx's `$request`).

    The absolute form (`GET http://host/p?q HTTP/1.1`) is reduced to its path and query.
    """
    method, _, rest = line.partition(" ")
    target = rest.rpartition(" ")[0] if rest.count(" ") else rest
    if target.startswith(("http://", "https://")):
        after = target.split("://", 1)[1]
        slash = after.find("/")
        target = after[slash:] if slash >= 0 else "/"
    return method, target or "/"


def request_line(kong: Any) -> tuple[str, str]:
    """(method, path?query) of the request: from nginx's ``$request`` in one call, or (a
    request line Kong does not hand over) from the PDK's method and path."""
    line = pdk(kong.nginx.get_var("request"))
    if isinstance(line, str) and " " in line:
        return parse_request_line(line)
    method = pdk(kong.request.get_method())
    return method, pdk(kong.request.get_path_with_query()) or "/"


def identify(kong: Any, h: Headers, cfg: PluginConfig) -> Identity:
    """Who sent the request (`kong_plugin.identity`): the consumer and credential are read
    only when the route's key may be scoped by consumer."""
    if cfg.consumer_scope != "never":
        consumer = pdk(kong.client.get_consumer())
        return classify(h, consumer, lambda: pdk(kong.client.get_credential()))
    return classify(h, None, lambda: None)


def request_target(kong: Any, target: str, h: Headers) -> tuple[str, str, str]:
    """(host, path, raw query) of the request; the host from the headers when present."""
    path, _, query = target.partition("?")
    host = h.get("host")
    if not host:
        host = pdk(kong.request.get_host()) or ""
    return host, path or "/", query


def request_headers(kong: Any) -> tuple[Mapping[str, Any], bool]:
    """The request's header map, and whether it holds all of its lines."""
    headers = pdk(kong.request.get_headers(MAX_HEADER_LINES)) or {}
    return headers, kong_line_count(headers) < MAX_HEADER_LINES


def upstream_headers(kong: Any) -> tuple[Mapping[str, Any], bool]:
    """The upstream's response headers, and whether that list is complete.

    Kong 3.9 keeps them in ``ngx.ctx.buffered_headers`` (the subrequest's ``res.header``,
    ``kong/init.lua`` ``Kong.response``): exactly the upstream's, all of them, in one call.
    Elsewhere, ``kong.response.get_headers`` -- where Kong copied them, mixed with what
    other plugins set before this phase, and cut at `MAX_HEADER_LINES` lines.
    (``kong.service.response.get_headers()`` is an empty map for an external plugin.)
    """
    buffered = pdk(kong.nginx.get_ctx("buffered_headers"))
    if isinstance(buffered, Mapping) and buffered:
        return buffered, True
    headers = pdk(kong.response.get_headers(MAX_HEADER_LINES)) or {}
    return headers, kong_line_count(headers) < MAX_HEADER_LINES


def _name(entity: Any) -> str:
    name = entity.get("name") if isinstance(entity, Mapping) else None
    return name if isinstance(name, str) else ""


def matched_route(kong: Any) -> tuple[str | None, str]:
    """(id, name) of the route Kong matched (name ``""`` when it has none). A plugin
    attached to a route knows the id from its config; one on a service or a global one
    must ask (its config has no ``route_id``)."""
    route = pdk(kong.router.get_route())
    route_id = route.get("id") if isinstance(route, Mapping) else None
    return (route_id if isinstance(route_id, str) and route_id else None), _name(route)


def route_name(kong: Any) -> str:
    """The matched route's name (``""`` when it has none or no route matched)."""
    return _name(pdk(kong.router.get_route()))


def service_facts(kong: Any) -> tuple[str, int | None]:
    """The matched service's name (``""``: none) and ``read_timeout`` in ms (None: none).

    Kong 3.9's ``kong.router.get_service()`` is ``ngx.ctx.service``
    (``kong/pdk/router.lua``), allowed from ``access`` to ``log``."""
    service = pdk(kong.router.get_service())
    timeout = service.get("read_timeout") if isinstance(service, Mapping) else None
    valid = isinstance(timeout, int) and not isinstance(timeout, bool) and timeout > 0
    return _name(service), (timeout if valid else None)


def refresh_target(kong: Any) -> Target | Unusable:
    """Where a background refresh of the matched route goes (`kong_plugin.upstream_target`):
    the route and its service entities, two round trips (``kong.router.get_route()`` and
    ``get_service()``, ``ngx.ctx.route`` / ``ngx.ctx.service`` in Kong 3.9)."""
    return target_of(pdk(kong.router.get_route()), pdk(kong.router.get_service()))


def service_body(kong: Any) -> bytes:
    """The upstream response's body (pulled across the socket: call it only when needed)."""
    body = pdk(kong.service.response.get_raw_body())
    if isinstance(body, str):
        return body.encode("utf-8", "surrogateescape")
    return body or b""


def exit_with(kong: Any, reply: Reply) -> None:
    """End the request with `reply` (``kong.response.exit``); the event's last PDK call."""
    runtime.event.exited = True
    kong.response.exit(reply.status, reply.body, reply.headers)
