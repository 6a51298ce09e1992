"""Route matching and upstream path computation.

Matching follows Kong 3.9's ``traditional_compatible`` router in spirit: a route whose paths mix
regex and prefix paths, or prefixes of different lengths, is split into one candidate per group;
candidates are tried in descending priority, where priority compares, in order:

1. the number of criteria the route sets (methods, hosts, headers, paths);
2. hosts that are all plain (no wildcard) beat wildcard hosts;
3. the number of header criteria;
4. regex paths beat prefix paths;
5. among regex paths, higher ``regex_priority``;
6. among prefix paths, the longer prefix.

Ties go to the route defined first in kong.yml. Prefix paths are plain string prefixes (``/users``
matches ``/usersXYZ``, like Kong); regex paths (``~...``) are anchored at the start and matched
with Python's ``re`` (Kong uses the Rust regex crate: no look-arounds or back-references there,
while Python accepts them). Hosts: exact, ``*.suffix`` or ``prefix.*``; a host with ``:port``
also requires that port. Header values compare case-insensitively; ``~*`` values are regexes.

NOT emulated: ``snis``, ``sources``/``destinations``, expression routes, HTTPS redirects (a
route listing only ``https`` never matches), ``path_handling: v1``, the router's LRU cache.

The upstream path uses Kong's ``path_handling: v0`` rules (``get_upstream_uri_v0``), then Kong's
``escape``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from kongsim.config.entities import DeclarativeConfig, Route, Service, to_python_regex
from kongsim.request.uri import escape


@dataclass(frozen=True)
class RouteMatch:
    """The result of routing one request."""

    route: Route
    service: Service | None
    prefix: str
    """Kong's ``match_t.prefix``: the part of the path the route matched when the route has
    ``strip_path`` (``kong/router/atc.lua``), else ``/``; ``/`` if the route has no paths. It
    becomes ``X-Forwarded-Prefix`` and ``kong.request.get_forwarded_prefix()`` unless ``/``."""
    upstream_path: str
    """The path to send upstream (v0 path handling, escaped), without query string."""
    upstream_host: str | None
    """The Host header to send upstream when ``preserve_host`` is on, else ``None``."""
    captures: Mapping[str, Any] = field(default_factory=dict)
    """``ctx.router_matches.uri_captures`` as ``kong.request.get_uri_captures()`` shapes it:
    ``{"unnamed": {0: full, 1: ...}, "named": {...}}`` (groups that did not take part are
    absent); ``{}`` when no group other than the whole match took part (Kong: nil)."""


@dataclass(frozen=True)
class _Candidate:
    route: Route
    paths: tuple[str, ...]
    patterns: tuple[re.Pattern[str] | None, ...]
    key: tuple[int, ...]


def _priority(route: Route, paths: Sequence[str]) -> tuple[int, ...]:
    weight = sum(1 for c in (route.methods, route.hosts, route.headers, paths) if c)
    plain_hosts = 1 if route.hosts and all("*" not in h for h in route.hosts) else 0
    is_regex = 1 if paths and paths[0].startswith("~") else 0
    length = 0 if is_regex or not paths else len(paths[0])
    return (
        weight,
        plain_hosts,
        min(len(route.headers), 255),
        is_regex,
        route.regex_priority if is_regex else 0,
        length,
    )


def _group_paths(paths: Sequence[str]) -> list[tuple[str, ...]]:
    groups: dict[int, list[str]] = {}
    for p in paths:
        groups.setdefault(0 if p.startswith("~") else len(p), []).append(p)
    return [tuple(g) for g in groups.values()]


class Router:
    """Matches requests against the routes of one declarative config."""

    def __init__(self, decl: DeclarativeConfig) -> None:
        self._decl = decl
        candidates: list[tuple[tuple[int, ...], int, int, _Candidate]] = []
        for route in decl.routes:
            if "http" not in route.protocols:
                continue
            groups = _group_paths(route.paths) if route.paths else [()]
            for gi, group in enumerate(groups):
                patterns = tuple(
                    re.compile(to_python_regex(p[1:])) if p.startswith("~") else None for p in group
                )
                key = _priority(route, group)
                candidates.append((key, route.index, gi, _Candidate(route, group, patterns, key)))
        candidates.sort(key=lambda c: (tuple(-k for k in c[0]), c[1], c[2]))
        self._candidates = [c[3] for c in candidates]

    def match(
        self,
        method: str,
        host_header: str | None,
        path: str,
        headers: Mapping[str, Sequence[str]],
        server_port: int,
    ) -> RouteMatch | None:
        """Route a request; ``path`` is the normalized path, ``headers`` have lower-case names."""
        host, port = split_host_port(host_header, server_port)
        for cand in self._candidates:
            route = cand.route
            if route.methods and method.upper() not in route.methods:
                continue
            if route.hosts and not any(_host_matches(h, host, port) for h in route.hosts):
                continue
            if route.headers and not all(
                _header_matches(headers.get(name, ()), wanted) for name, wanted in route.headers
            ):
                continue
            prefix: str = "/"
            captures: dict[str, Any] = {}
            if cand.paths:
                found = _match_paths(cand, path)
                if found is None:
                    continue
                prefix, captures = found
            service = self._decl.service(route.service_id)
            upstream = upstream_path_v0(
                route.strip_path,
                prefix if cand.paths else "/",
                path,
                (service.path if service else None) or "/",
            )
            return RouteMatch(
                route=route,
                service=service,
                # atc.lua: match_t.prefix is the matched path only with strip_path
                prefix=prefix if route.strip_path else "/",
                upstream_path=escape(upstream),
                upstream_host=host_header if route.preserve_host else None,
                captures=captures,
            )
        return None


def split_host_port(host_header: str | None, default_port: int) -> tuple[str, int]:
    """``"Example.com:8080"`` → ``("example.com", 8080)``; no port → ``default_port``."""
    if not host_header:
        return "", default_port
    value = host_header.strip().lower()
    if value.startswith("["):
        end = value.find("]")
        host, rest = value[: end + 1], value[end + 1 :]
        port_text = rest[1:] if rest.startswith(":") else ""
    elif value.count(":") == 1:
        host, port_text = value.split(":", 1)
    else:
        host, port_text = value, ""
    port = int(port_text) if port_text.isdigit() else default_port
    return host, port


def _host_matches(pattern: str, host: str, port: int) -> bool:
    want_port: int | None = None
    if ":" in pattern and not pattern.startswith("["):
        pattern, port_text = pattern.rsplit(":", 1)
        want_port = int(port_text) if port_text.isdigit() else None
    if want_port is not None and want_port != port:
        return False
    if pattern.startswith("*."):
        return host.endswith(pattern[1:]) and len(host) > len(pattern) - 1
    if pattern.endswith(".*"):
        return host.startswith(pattern[:-1]) and len(host) > len(pattern) - 1
    return host == pattern


def _header_matches(values: Sequence[str], wanted: Sequence[str]) -> bool:
    for value in values:
        for w in wanted:
            if w.startswith("~*"):
                if re.match(to_python_regex(w[2:]), value, re.I):
                    return True
            elif value.lower() == w.lower():
                return True
    return False


def _match_paths(cand: _Candidate, path: str) -> tuple[str, dict[str, Any]] | None:
    for p, pattern in zip(cand.paths, cand.patterns, strict=True):
        if pattern is None:
            if path.startswith(p):
                return p, {}
            continue
        m = pattern.match(path)
        if m is not None:
            # atc.lua: uri_captures is nil unless a group other than [0] matched
            unnamed = {i: g for i, g in enumerate(m.groups(), start=1) if g is not None}
            named = {k: v for k, v in m.groupdict().items() if v is not None}
            if not unnamed and not named:
                return m.group(0), {}
            return m.group(0), {"unnamed": {0: m.group(0), **unnamed}, "named": named}
    return None


def _sanitize_postfix(postfix: str) -> str:
    if postfix in (".", ".."):
        return ""
    if postfix.startswith("./"):
        return postfix[2:]
    if postfix.startswith("../"):
        return postfix[3:]
    return postfix


def upstream_path_v0(strip_path: bool, prefix: str, req_path: str, base: str) -> str:
    """Kong's ``get_upstream_uri_v0``: join the service path ``base`` and the request path."""
    postfix = _sanitize_postfix(req_path[len(prefix) :] if req_path.startswith(prefix) else "")
    if base.endswith("/"):
        if strip_path:
            if postfix == "":
                if base == "/":
                    return "/"
                return base if req_path.endswith("/") else base[:-1]
            if postfix.startswith("/"):
                return base[:-1] + postfix
            return base + postfix
        return base + req_path[1:]
    if strip_path:
        if postfix == "":
            return base + "/" if len(req_path) > 1 and req_path.endswith("/") else base
        if postfix.startswith("/"):
            return base + postfix
        return base + "/" + postfix
    return base if req_path == "/" else base + req_path
