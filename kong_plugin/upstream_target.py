"""Where Kong 3.9 sends a request upstream, worked out again by the plugin for a background
refresh (`kong_plugin.refresh`): the service's scheme, host and port, the upstream path and
query, the ``Host`` header and the TLS name. Pure functions of the route and service
entities (``kong.router.get_route()`` / ``get_service()``, i.e. ``ngx.ctx.route`` /
``ngx.ctx.service``, ``kong/pdk/router.lua``) and of the request line.

Kong's rules, read at tag 3.9.3 of Kong/kong:

* service (``kong/router/utils.lua`` ``get_service_info``): ``protocol``, ``host``, ``port``
  (80 / 443 by protocol when absent), ``path`` (``/`` when absent);
* which of the route's paths matched (``kong/router/transform.lua``
  ``split_routes_and_services_by_path``): a route is split into one sub-route per group --
  regex paths (``~...``, anchored at the start, ``(?<name>`` read as a named group) before
  prefix paths, longer prefixes first; within a group, the order the paths are listed in;
* the path the router sees is the request path without its query, normalised
  (``kong/router/atc.lua`` ``exec`` -> ``strip_uri_args`` -> ``kong/tools/uri.lua``
  ``normalize(uri, true)``: percent-escapes decoded except RFC 3986 reserved characters,
  which stay escaped in upper case; dot segments removed; runs of ``/`` merged);
* the prefix is the matched part of that path when the route has ``strip_path``, else
  ``/`` (``atc.lua`` ``matching``: ``request_prefix = strip_path and matched_path``);
* the upstream path is ``get_upstream_uri_v0`` of the prefix's remainder, sanitised
  (``sanitize_uri_postfix``), the normalised path and the service path
  (``kong/router/utils.lua``), then ``escape``d (``kong/runloop/handler.lua``
  ``access.before``: bytes outside the reserved and unreserved sets percent-encoded);
* the query: ``access.after`` appends ``?`` and the raw query when the request line had a
  ``?`` (an empty query included);
* ``Host``: the client's ``Host`` header as sent with ``preserve_host`` (``atc.lua``);
  otherwise the service host, with ``:port`` unless the port is the protocol's default
  (``kong/runloop/balancer/init.lua`` ``set_host_header``);
* TLS: SNI is the ``Host`` without its port (``proxy_ssl_name $upstream_host;
  proxy_ssl_server_name on``, ``kong/templates/nginx_kong.lua``; nginx drops the port
  and sends no SNI for an IP address); the certificate is verified only when the
  service says ``tls_verify: true`` (nginx's default, ``proxy_ssl_verify off``, else).

What this refuses (`Unusable`, and the plugin then revalidates in the foreground as
without background refreshes, since Kong itself would send that request): a service
other than ``http``/``https``; a service with ``ca_certificates`` or a
``client_certificate`` (their keys and certificates are not readable through the PDK); a
route with ``path_handling: v1`` (Kong 3.9 applies it only under ``router_flavor =
traditional``, which a plugin cannot see); a regex path Python's ``re`` cannot compile; a
request path none of the route's paths matches here (a regex the Rust crate reads
differently).

Not guaranteed: that ``host`` is what Kong connects to -- a service host that names a Kong
Upstream entity is load-balanced by Kong over its targets, while a refresh resolves the
name with the system resolver (usually: no such host, and the refresh fails); changes
other plugins make to the upstream request (``kong.service.request.set_path``, a changed
query, headers) are not known here.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

Scheme = Literal["http", "https"]

#: RFC 3986 §2.2 reserved characters plus ``%``: Kong's normalize keeps them escaped.
_RESERVED = frozenset(b"!*'();:@&=+$,/?%#[]")
_PCT = re.compile(rb"%([0-9A-Fa-f]{2})")
#: What Kong's ``escape`` leaves alone: reserved, unreserved and ``%``.
_NOT_SAFE = re.compile(rb"[^!#$&'()*+,/:;=?@\[\]A-Za-z0-9\-_.~%]")
_NAMED_GROUP = re.compile(r"\(\?<(?![=!])")
_DEFAULT_PORTS = {"http": 80, "https": 443}


@dataclass(frozen=True, slots=True)
class Unusable:
    """Why no refresh target can be worked out (the plugin revalidates in the foreground)."""

    reason: str


@dataclass(frozen=True, slots=True)
class RoutePath:
    """One of a route's paths: a prefix (`regex` None) or an anchored regex."""

    text: str
    regex: re.Pattern[str] | None = None


@dataclass(frozen=True, slots=True)
class Target:
    """Where a route's requests go: its service, and the route's path rules (`paths` in
    the order Kong tries them). `route_name`/`service_name` (``""``: none) are for the
    event tags of a refreshed entry."""

    scheme: Scheme
    host: str
    port: int
    base_path: str
    tls_verify: bool
    paths: tuple[RoutePath, ...]
    strip_path: bool
    preserve_host: bool
    route_name: str = ""
    service_name: str = ""


@dataclass(frozen=True, slots=True)
class Destination:
    """One request's upstream: connect to `host`:`port` over `scheme`, ask for `target`
    (path and query), send `host_header`; over TLS, check the certificate against
    `tls_name` (only with `tls_verify`) and send it as SNI unless it is an IP address."""

    scheme: Scheme
    host: str
    port: int
    target: str
    host_header: str
    tls_name: str
    tls_verify: bool


# -- Kong's URI helpers (kong/tools/uri.lua) --------------------------------------------


def _decode(m: re.Match[bytes]) -> bytes:
    num = int(m.group(1), 16)
    return m.group(0).upper() if num in _RESERVED else bytes([num])


def normalize(path: str) -> str:
    """Kong's ``normalize(uri, true)`` of a path without its query."""
    if path in ("", "/"):
        return path
    data = path.encode("utf-8", "surrogateescape")
    if b"%" in data:
        data = _PCT.sub(_decode, data)
    if b"." in data or b"//" in data:
        data = _remove_dot_segments(data)
    return data.decode("utf-8", "surrogateescape")


def _remove_dot_segments(data: bytes) -> bytes:
    """RFC 3986 §5.2.4 as Kong writes it, merging runs of ``/`` on the way."""
    out: list[bytes] = []
    rest = data
    while rest:
        if rest in (b"/.", b"/.."):
            if rest == b"/.." and out:
                out.pop()
            rest = b"/"
        elif rest in (b".", b".."):
            rest = b""
        elif rest.startswith(b"../"):
            rest = rest[3:]
        elif rest.startswith((b"./", b"/./")):
            rest = rest[2:]
        elif rest.startswith(b"/../"):
            rest = rest[3:]
            if out:
                out.pop()
        elif rest.startswith(b"//"):
            rest = rest[1:]
        else:
            cut = rest.find(b"/", 1)
            cut = len(rest) if cut == -1 else cut
            out.append(rest[:cut])
            rest = rest[cut:]
    return b"".join(out)


def escape(path: str) -> str:
    """Kong's ``escape``: bytes neither reserved nor unreserved percent-encoded."""
    data = path.encode("utf-8", "surrogateescape")
    return _NOT_SAFE.sub(lambda m: b"%%%02X" % m.group(0)[0], data).decode("ascii")


# -- the upstream path (kong/router/utils.lua) ------------------------------------------


def _sanitize_postfix(postfix: str) -> str:
    if postfix in (".", ".."):
        return ""
    if postfix.startswith("./"):
        return postfix[2:]
    if postfix.startswith("../"):
        return postfix[3:]
    return postfix


def upstream_path_v0(strip_path: bool, prefix: str, path: str, base: str) -> str:
    """``get_upstream_uri_v0``: the service path `base` joined with the normalised request
    `path`, less the matched `prefix` when the route strips it (not yet escaped)."""
    postfix = _sanitize_postfix(path[len(prefix) :])
    if base.endswith("/"):
        if not strip_path:
            return base + path[1:]
        if postfix == "":
            if base == "/":
                return "/"
            return base if path.endswith("/") else base[:-1]
        return base[:-1] + postfix if postfix.startswith("/") else base + postfix
    if not strip_path:
        return base if path == "/" else base + path
    if postfix == "":
        return base + "/" if len(path) > 1 and path.endswith("/") else base
    return base + postfix if postfix.startswith("/") else base + "/" + postfix


def matched_prefix(paths: Sequence[RoutePath], path: str) -> str | None:
    """The part of the normalised `path` the first matching route path matched (`paths`
    in Kong's order); ``/`` for a route without paths; None when none matches."""
    if not paths:
        return "/"
    for p in paths:
        if p.regex is None:
            if path.startswith(p.text):
                return p.text
            continue
        m = p.regex.match(path)
        if m is not None:
            return m.group(0)
    return None


# -- entities -> target -----------------------------------------------------------------


def _route_paths(raw: Any) -> tuple[RoutePath, ...] | Unusable:
    """The route's paths in the order Kong tries them (module docstring)."""
    values = [p for p in raw if isinstance(p, str)] if isinstance(raw, Sequence) else []
    regexes: list[RoutePath] = []
    prefixes: list[str] = []
    for value in values:
        if not value.startswith("~"):
            prefixes.append(value)
            continue
        try:
            regexes.append(RoutePath(value, re.compile(_NAMED_GROUP.sub("(?P<", value[1:]))))
        except re.error as exc:
            return Unusable(f"route path {value!r} is not a Python regex: {exc}")
    ordered = sorted(prefixes, key=len, reverse=True)  # stable: listed order among equals
    return (*regexes, *(RoutePath(p) for p in ordered))


def _text(entity: Mapping[str, Any], name: str) -> str:
    value = entity.get(name)
    return value if isinstance(value, str) else ""


def target_of(route: Any, service: Any) -> Target | Unusable:
    """The refresh target of a route and its service (the PDK's entity maps)."""
    if not isinstance(route, Mapping) or not isinstance(service, Mapping):
        return Unusable("no route or service")
    protocol = service.get("protocol")
    if protocol not in ("http", "https"):
        return Unusable(f"service protocol {protocol!r}")
    host = _text(service, "host")
    if not host:
        return Unusable("service without a host")
    if service.get("ca_certificates") or service.get("client_certificate"):
        return Unusable("service with ca_certificates or a client_certificate")
    if route.get("path_handling", "v0") != "v0":
        return Unusable("route path_handling v1 (depends on the router flavor)")
    port = service.get("port")
    if not isinstance(port, int) or isinstance(port, bool) or not 0 < port < 65536:
        port = _DEFAULT_PORTS[protocol]
    paths = _route_paths(route.get("paths"))
    if isinstance(paths, Unusable):
        return paths
    return Target(
        scheme=protocol,
        host=host,
        port=port,
        base_path=_text(service, "path") or "/",
        tls_verify=service.get("tls_verify") is True,
        paths=paths,
        strip_path=route.get("strip_path", True) is not False,
        preserve_host=route.get("preserve_host") is True,
        route_name=_text(route, "name"),
        service_name=_text(service, "name"),
    )


def _authority(host: str, port: int, scheme: Scheme) -> str:
    host = f"[{host}]" if ":" in host and not host.startswith("[") else host
    return host if port == _DEFAULT_PORTS[scheme] else f"{host}:{port}"


def tls_name(host_header: str) -> str:
    """The name TLS is checked against (and sent as SNI, unless an IP address): the
    ``Host`` without its port or IPv6 brackets."""
    if host_header.startswith("["):
        return host_header[1:].split("]", 1)[0]
    return host_header.rsplit(":", 1)[0] if host_header.count(":") == 1 else host_header


def destination(
    target: Target, raw_path: str, raw_query: str, has_query: bool, client_host: str
) -> Destination | Unusable:
    """Where this request goes upstream: `raw_path` and `raw_query` from the request line
    (`has_query`: it had a ``?``), `client_host` its ``Host`` header as sent."""
    path = normalize(raw_path)
    prefix = matched_prefix(target.paths, path)
    if prefix is None:
        return Unusable("no route path matches the request here")
    upstream = escape(
        upstream_path_v0(
            target.strip_path, prefix if target.strip_path else "/", path, target.base_path
        )
    )
    if has_query:
        upstream += "?" + raw_query
    if target.preserve_host and client_host:
        host_header = client_host
    else:
        host_header = _authority(target.host, target.port, target.scheme)
    return Destination(
        scheme=target.scheme,
        host=target.host.strip("[]"),
        port=target.port,
        target=upstream,
        host_header=host_header,
        tls_name=tls_name(host_header),
        tls_verify=target.tls_verify,
    )
