"""Services and routes of a declarative file: their fields, ``url`` splitting, route criteria
(methods, paths as prefixes or ``~`` regexes, hosts, headers) and service references.

Route criteria are only checked for shape and for compiling: matching is
:mod:`kongsim.request.router`'s.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from kongsim.config.entities import Route, Service, to_python_regex
from kongsim.config.reader import DeclReader, ref_value, words

_SERVICE_FIELDS = words(
    "ca_certificates client_certificate connect_timeout enabled host id name path "
    "plugins port protocol read_timeout retries routes tags tls_verify "
    "tls_verify_depth url write_timeout"
)
_ROUTE_FIELDS = words(
    "destinations expression headers hosts https_redirect_status_code id methods name "
    "path_handling paths plugins preserve_host priority protocols regex_priority "
    "request_buffering response_buffering service snis sources strip_path tags"
)
_HTTP_METHOD = re.compile(r"^[A-Z]+$")


class ServiceRouteParser(DeclReader):
    """Parses ``services`` (with nested routes and plugins) and ``routes``."""

    # --- services ----------------------------------------------------------------------------

    def _service(self, raw: Mapping[str, Any], index: int) -> None:
        name = raw.get("name") if isinstance(raw.get("name"), str) else None
        label = f"service '{name}'" if name else f"service #{index}"
        self._unknown(raw, _SERVICE_FIELDS, label)
        sid = self._id(raw, "service", name or f"#{index}", label)
        protocol, host, port, path = "http", None, None, None
        if raw.get("url") is not None:
            for key in ("protocol", "host", "port", "path"):
                if raw.get(key) is not None:
                    self.err(f"{label}: {key}: cannot be set together with 'url'")
            url = raw["url"]
            parts = urlsplit(url) if isinstance(url, str) else None
            if parts is None or not parts.scheme or not parts.hostname:
                self.err(f"{label}: url: invalid URL {url!r}")
            else:
                protocol, host = parts.scheme.lower(), parts.hostname
                try:
                    port = parts.port
                except ValueError:
                    self.err(f"{label}: url: invalid port in {url!r}")
                path = parts.path or None
                if parts.query or parts.fragment:
                    self.err(f"{label}: url: query and fragment are not allowed")
        else:
            protocol = raw.get("protocol", "http")
            host = self._str(raw, "host", label)
            if raw.get("port") is not None:
                port = self._int(raw, "port", label, 80, low=0, high=65535)
            path = self._str(raw, "path", label)
            if host is None:
                self.err(f"{label}: host: required field missing (or give 'url')")
        if protocol not in ("http", "https"):
            self.err(f"{label}: protocol: kongsim proxies only http and https, got {protocol!r}")
        if path is not None and not path.startswith("/"):
            self.err(f"{label}: path: should start with: /")
        if port is None:
            port = 443 if protocol == "https" else 80
        service = Service(
            id=sid,
            name=name,
            protocol=str(protocol),
            host=host or "invalid",
            port=port,
            path=path,
            connect_timeout=self._int(raw, "connect_timeout", label, 60000, low=1),
            write_timeout=self._int(raw, "write_timeout", label, 60000, low=1),
            read_timeout=self._int(raw, "read_timeout", label, 60000, low=1),
            retries=self._int(raw, "retries", label, 5, low=0, high=32767),
            enabled=self._bool(raw, "enabled", label, True),
            tags=self._strings(raw, "tags", label),
            created_at=self.created_at,
        )
        self.services.append(service)
        for i, r in enumerate(self._list(raw, "routes", label)):
            self._route(r, i, parent_service=service)
        for p in self._list(raw, "plugins", label):
            self.pending_plugins.append((p, {"service": sid}, label))

    # --- routes ------------------------------------------------------------------------------

    def _route(self, raw: Mapping[str, Any], index: int, parent_service: Service | None) -> None:
        name = raw.get("name") if isinstance(raw.get("name"), str) else None
        where = f" of {parent_service.label}" if parent_service else ""
        label = f"route '{name}'" if name else f"route #{index}{where}"
        self._unknown(raw, _ROUTE_FIELDS, label)
        parent_key = parent_service.id if parent_service else "-"
        rid = self._id(raw, "route", name or f"{parent_key}#{index}", label)
        service_id = parent_service.id if parent_service else None
        ref = raw.get("service")
        if ref is not None:
            if parent_service is not None:
                self.err(f"{label}: service: not allowed on a route nested in a service")
            else:
                service_id = self._ref_service(ref, label, "service")
        for unsupported in ("snis", "sources", "destinations", "expression", "priority"):
            if raw.get(unsupported) is not None:
                self.err(f"{label}: {unsupported}: not supported by kongsim")
        protocols = self._strings(raw, "protocols", label) or ("http", "https")
        for proto in protocols:
            if proto not in ("http", "https"):
                self.err(f"{label}: protocols: kongsim routes only http and https, got {proto!r}")
        methods = tuple(m.upper() for m in self._strings(raw, "methods", label))
        for m in methods:
            if not _HTTP_METHOD.match(m):
                self.err(f"{label}: methods: invalid method {m!r}")
        hosts = tuple(h.lower() for h in self._strings(raw, "hosts", label))
        for h in hosts:
            if h.count("*") > 1 or ("*" in h and not (h.startswith("*.") or h.endswith(".*"))):
                self.err(f"{label}: hosts: invalid wildcard host {h!r}")
        paths = self._strings(raw, "paths", label)
        for p in paths:
            if not (p.startswith("/") or p.startswith("~")):
                self.err(f"{label}: paths: should start with: / (fixed path) or ~/ (regex path)")
            elif p.startswith("~"):
                try:
                    re.compile(to_python_regex(p[1:]))
                except re.error as exc:
                    self.err(f"{label}: paths: invalid regex {p!r}: {exc}")
        headers = self._headers(raw.get("headers"), label)
        if not (methods or hosts or paths or headers):
            self.err(
                f"{label}: must set one of 'methods', 'hosts', 'headers', 'paths' "
                "when 'protocols' is 'http'"
            )
        path_handling = raw.get("path_handling", "v0")
        if path_handling != "v0":
            self.err(f"{label}: path_handling: kongsim implements 'v0' only (Kong's default)")
        self.routes.append(
            Route(
                id=rid,
                name=name,
                service_id=service_id,
                index=len(self.routes),
                protocols=protocols,
                methods=methods,
                hosts=hosts,
                paths=paths,
                headers=headers,
                strip_path=self._bool(raw, "strip_path", label, True),
                preserve_host=self._bool(raw, "preserve_host", label, False),
                regex_priority=self._int(raw, "regex_priority", label, 0, low=-(2**31)),
                https_redirect_status_code=self._int(
                    raw, "https_redirect_status_code", label, 426, low=300, high=599
                ),
                request_buffering=self._bool(raw, "request_buffering", label, True),
                response_buffering=self._bool(raw, "response_buffering", label, True),
                tags=self._strings(raw, "tags", label),
                created_at=self.created_at,
            )
        )
        for plugin_raw in self._list(raw, "plugins", label):
            self.pending_plugins.append((plugin_raw, {"route": rid}, label))

    def _headers(self, value: Any, label: str) -> tuple[tuple[str, tuple[str, ...]], ...]:
        if value is None:
            return ()
        if not isinstance(value, Mapping):
            self.err(f"{label}: headers: expected a map of header name to values")
            return ()
        out = []
        for k, v in value.items():
            values = [v] if isinstance(v, str) else v
            if not isinstance(values, list) or not all(isinstance(x, str) for x in values):
                self.err(f"{label}: headers.{k}: expected an array of strings")
                continue
            if str(k).lower() == "host":
                self.err(f"{label}: headers: use 'hosts' to match on the Host header")
                continue
            out.append((str(k).lower(), tuple(values)))
        return tuple(out)

    def _ref_service(self, ref: Any, label: str, key: str) -> str | None:
        wanted = ref_value(ref)
        for s in self.services:
            if wanted in (s.id, s.name):
                return s.id
        self.err(f"{label}: {key}: unknown service {wanted!r}")
        return None
