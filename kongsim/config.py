"""Read a decK declarative file (``_format_version: "3.0"``) into typed, frozen entities.

Supported: ``services`` (``url`` or ``protocol``/``host``/``port``/``path``, nested ``routes`` and
``plugins``), top-level ``routes`` (with a ``service`` reference by name or id), top-level
``plugins`` (global, or with ``service``/``route``/``consumer`` references), ``consumers``
(``username``, ``custom_id``, nested ``keyauth_credentials`` and ``plugins``).

Every entity gets a stable UUID: its ``id`` if given, else a uuid5 of its kind and name (or of its
position when unnamed), so ids survive restarts and reloads.

This module checks the *shape* of entities (unknown fields, references, route criteria). Plugin
configs are validated against the plugins' schemas by :mod:`kongsim.plugins`, which needs the
plugin servers' dumps.

NOT supported (a clear error is raised): ``upstreams``/``targets``, ``certificates``, ``snis``,
``vaults``, ``consumer_groups``, other credential types, non-HTTP protocols, expression routes,
``path_handling: v1``, workspaces. Fields Kong accepts but kongsim ignores: ``tags``,
``retries``, ``tls_verify*``, ``client_certificate``, ``ca_certificates``, ``ordering``,
``request_buffering``/``response_buffering``, ``https_redirect_status_code``.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from kongsim.entities import (
    Consumer,
    DeclarativeConfig,
    KeyCredential,
    PluginEntity,
    Route,
    Service,
    stable_id,
    to_python_regex,
)
from kongsim.errors import ConfigError


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


_TOP_LEVEL = _words("_format_version _info _transform _workspace consumers plugins routes services")
_UNSUPPORTED_TOP = _words(
    "acls basicauth_credentials ca_certificates certificates consumer_groups "
    "filter_chains hmacauth_credentials jwt_secrets key_sets keyauth_credentials keys "
    "mtls_auth_credentials oauth2_credentials partials snis targets upstreams vaults"
)
_SERVICE_FIELDS = _words(
    "ca_certificates client_certificate connect_timeout enabled host id name path "
    "plugins port protocol read_timeout retries routes tags tls_verify "
    "tls_verify_depth url write_timeout"
)
_ROUTE_FIELDS = _words(
    "destinations expression headers hosts https_redirect_status_code id methods name "
    "path_handling paths plugins preserve_host priority protocols regex_priority "
    "request_buffering response_buffering service snis sources strip_path tags"
)
_PLUGIN_FIELDS = _words(
    "config consumer enabled id instance_name name ordering protocols route service tags"
)
_CONSUMER_FIELDS = _words("custom_id id keyauth_credentials plugins tags username")
_CREDENTIAL_FIELDS = _words("id key tags ttl")
_HTTP_METHOD = re.compile(r"^[A-Z]+$")


def load_file(path: str | Path) -> DeclarativeConfig:
    """Read and parse a kong.yml (YAML or JSON); raise :class:`ConfigError` when invalid."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError([f"{p}: cannot read: {exc.strerror or exc}"]) from exc
    try:
        data = json.loads(text) if p.suffix == ".json" else yaml.safe_load(text)
    except (yaml.YAMLError, json.JSONDecodeError) as exc:
        raise ConfigError(
            [f"{p}: invalid {'JSON' if p.suffix == '.json' else 'YAML'}: {exc}"]
        ) from exc
    return parse(data, source=str(p))


def parse(data: Any, *, source: str = "<memory>") -> DeclarativeConfig:
    """Parse already-decoded declarative data; raise :class:`ConfigError` listing all problems."""
    return _Parser(source).run(data)


class _Parser:
    def __init__(self, source: str) -> None:
        self.source = source
        self.errors: list[str] = []
        self.created_at = int(time.time())
        self.services: list[Service] = []
        self.routes: list[Route] = []
        self.consumers: list[Consumer] = []
        self.credentials: list[KeyCredential] = []
        self.plugins: list[PluginEntity] = []
        # raw plugin entries to resolve once every service/route/consumer is known
        self.pending_plugins: list[tuple[Mapping[str, Any], dict[str, str | None], str]] = []

    def err(self, message: str) -> None:
        self.errors.append(message)

    # --- top level -------------------------------------------------------------------------------

    def run(self, data: Any) -> DeclarativeConfig:
        if not isinstance(data, Mapping):
            raise ConfigError([f"{self.source}: the declarative config must be a mapping"])
        version = data.get("_format_version")
        if version is None:
            self.err(f'{self.source}: _format_version: required field missing (use "3.0")')
        elif str(version) != "3.0":
            self.err(f'{self.source}: _format_version: kongsim reads "3.0", got {version!r}')
        for key in data:
            if key in _UNSUPPORTED_TOP:
                self.err(f"{self.source}: top-level key '{key}' is not supported by kongsim")
            elif key not in _TOP_LEVEL:
                self.err(f"{self.source}: unknown top-level key '{key}'")
        for i, raw in enumerate(self._list(data, "services", self.source)):
            self._service(raw, i)
        for i, raw in enumerate(self._list(data, "routes", self.source)):
            self._route(raw, i, parent_service=None)
        for i, raw in enumerate(self._list(data, "consumers", self.source)):
            self._consumer(raw, i)
        for raw in self._list(data, "plugins", self.source):
            self.pending_plugins.append((raw, {}, "top-level"))
        self._check_unique()
        for raw, scope, where in self.pending_plugins:
            self._plugin(raw, scope, where)
        self._check_unique_plugins()
        if self.errors:
            raise ConfigError(self.errors)
        return DeclarativeConfig(
            services=tuple(self.services),
            routes=tuple(self.routes),
            consumers=tuple(self.consumers),
            credentials=tuple(self.credentials),
            plugins=tuple(self.plugins),
            source=self.source,
            services_by_id={s.id: s for s in self.services},
            consumers_by_id={c.id: c for c in self.consumers},
        )

    def _list(self, data: Mapping[str, Any], key: str, where: str) -> list[Mapping[str, Any]]:
        value = data.get(key)
        if value is None:
            return []
        if not isinstance(value, list):
            self.err(f"{where}: {key}: expected an array")
            return []
        out = []
        for i, item in enumerate(value):
            if isinstance(item, Mapping):
                out.append(item)
            else:
                self.err(f"{where}: {key}[{i}]: expected a mapping")
        return out

    def _unknown(self, raw: Mapping[str, Any], allowed: frozenset[str], label: str) -> None:
        for key in raw:
            if key not in allowed:
                self.err(f"{label}: {key}: unknown field")

    def _id(self, raw: Mapping[str, Any], kind: str, key: str, label: str) -> str:
        given = raw.get("id")
        if given is None:
            return stable_id(kind, key)
        try:
            return str(uuid.UUID(str(given)))
        except ValueError:
            self.err(f"{label}: id: expected a valid UUID")
            return stable_id(kind, key)

    def _str(self, raw: Mapping[str, Any], key: str, label: str) -> str | None:
        value = raw.get(key)
        if value is None:
            return None
        if not isinstance(value, str) or not value:
            self.err(f"{label}: {key}: expected a non-empty string")
            return None
        return value

    def _int(
        self,
        raw: Mapping[str, Any],
        key: str,
        label: str,
        default: int,
        *,
        low: int = 0,
        high: int = 2**31 - 1,
    ) -> int:
        value = raw.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int):
            self.err(f"{label}: {key}: expected an integer")
            return default
        if not low <= value <= high:
            self.err(f"{label}: {key}: value should be between {low} and {high}")
            return default
        return value

    def _bool(self, raw: Mapping[str, Any], key: str, label: str, default: bool) -> bool:
        value = raw.get(key, default)
        if not isinstance(value, bool):
            self.err(f"{label}: {key}: expected a boolean")
            return default
        return value

    def _strings(self, raw: Mapping[str, Any], key: str, label: str) -> tuple[str, ...]:
        value = raw.get(key)
        if value is None:
            return ()
        if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
            self.err(f"{label}: {key}: expected an array of non-empty strings")
            return ()
        return tuple(value)

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
        wanted = _ref_value(ref)
        for s in self.services:
            if wanted in (s.id, s.name):
                return s.id
        self.err(f"{label}: {key}: unknown service {wanted!r}")
        return None

    # --- consumers ---------------------------------------------------------------------------

    def _consumer(self, raw: Mapping[str, Any], index: int) -> None:
        username = self._str(raw, "username", f"consumer #{index}")
        custom_id = self._str(raw, "custom_id", f"consumer #{index}")
        label = (
            f"consumer '{username or custom_id}'" if username or custom_id else f"consumer #{index}"
        )
        self._unknown(raw, _CONSUMER_FIELDS, label)
        if not (username or custom_id):
            self.err(
                f"{label}: at least one of these fields must be non-empty: 'custom_id', 'username'"
            )
        cid = self._id(raw, "consumer", username or custom_id or f"#{index}", label)
        self.consumers.append(
            Consumer(cid, username, custom_id, self._strings(raw, "tags", label), self.created_at)
        )
        for i, cred in enumerate(self._list(raw, "keyauth_credentials", label)):
            clabel = f"{label}: keyauth_credentials[{i}]"
            self._unknown(cred, _CREDENTIAL_FIELDS, clabel)
            key = self._str(cred, "key", clabel)
            if key is None:
                self.err(f"{clabel}: key: required field missing (kongsim does not generate keys)")
                continue
            self.credentials.append(
                KeyCredential(
                    id=self._id(cred, "keyauth_credential", key, clabel),
                    consumer_id=cid,
                    key=key,
                    tags=self._strings(cred, "tags", clabel),
                    created_at=self.created_at,
                )
            )
        for p in self._list(raw, "plugins", label):
            self.pending_plugins.append((p, {"consumer": cid}, label))

    # --- plugins -----------------------------------------------------------------------------

    def _plugin(self, raw: Mapping[str, Any], scope: dict[str, str | None], where: str) -> None:
        name = raw.get("name")
        if not isinstance(name, str) or not name:
            self.err(f"plugin in {where}: name: required field missing")
            return
        scope = dict(scope)
        for kind in ("service", "route", "consumer"):
            ref = raw.get(kind)
            if ref is None:
                continue
            if scope.get(kind):
                self.err(f"plugin '{name}' in {where}: {kind}: already given by nesting")
                continue
            scope[kind] = self._resolve_ref(kind, ref, f"plugin '{name}' in {where}")
        label = self._plugin_label(name, scope)
        self._unknown(raw, _PLUGIN_FIELDS, label)
        config = raw.get("config")
        if config is not None and not isinstance(config, Mapping):
            self.err(f"{label}: config: expected a record")
            config = None
        route_id, service_id, consumer_id = (
            scope.get("route"),
            scope.get("service"),
            scope.get("consumer"),
        )
        key = f"{name}:{route_id or ''}:{service_id or ''}:{consumer_id or ''}"
        self.plugins.append(
            PluginEntity(
                id=self._id(raw, "plugin", key, label),
                name=name,
                config=config,
                route_id=route_id,
                service_id=service_id,
                consumer_id=consumer_id,
                label=label,
                enabled=self._bool(raw, "enabled", label, True),
                instance_name=self._str(raw, "instance_name", label),
                protocols=self._strings(raw, "protocols", label)
                or ("grpc", "grpcs", "http", "https"),
                tags=self._strings(raw, "tags", label),
            )
        )

    def _resolve_ref(self, kind: str, ref: Any, label: str) -> str | None:
        wanted = _ref_value(ref)
        if kind == "service":
            return self._ref_service(ref, label, kind)
        if kind == "route":
            for r in self.routes:
                if wanted in (r.id, r.name):
                    return r.id
            self.err(f"{label}: route: unknown route {wanted!r}")
            return None
        for c in self.consumers:
            if wanted in (c.id, c.username, c.custom_id):
                return c.id
        self.err(f"{label}: consumer: unknown consumer {wanted!r}")
        return None

    def _plugin_label(self, name: str, scope: Mapping[str, str | None]) -> str:
        parts = []
        if scope.get("route"):
            route = next((r for r in self.routes if r.id == scope["route"]), None)
            parts.append(route.label if route else f"route {scope['route']}")
        if scope.get("service"):
            service = next((s for s in self.services if s.id == scope["service"]), None)
            parts.append(service.label if service else f"service {scope['service']}")
        if scope.get("consumer"):
            consumer = next((c for c in self.consumers if c.id == scope["consumer"]), None)
            parts.append(consumer.label if consumer else f"consumer {scope['consumer']}")
        where = " and ".join(parts) if parts else "global"
        return f"plugin '{name}' on {where}" if parts else f"plugin '{name}' (global)"

    # --- uniqueness --------------------------------------------------------------------------

    def _check_unique(self) -> None:
        for kind, items in (
            ("service", self.services),
            ("route", self.routes),
            ("consumer", self.consumers),
        ):
            seen_names: set[str] = set()
            seen_ids: set[str] = set()
            for item in items:
                name = getattr(item, "name", None) or getattr(item, "username", None)
                if name and name in seen_names:
                    self.err(f"{item.label}: name: duplicate {kind} name")
                if item.id in seen_ids:
                    self.err(f"{item.label}: id: duplicate {kind} id")
                if name:
                    seen_names.add(name)
                seen_ids.add(item.id)
        keys: set[str] = set()
        for cred in self.credentials:
            if cred.key in keys:
                self.err(f"keyauth_credentials: key: duplicate key {cred.key!r}")
            keys.add(cred.key)

    def _check_unique_plugins(self) -> None:
        seen: set[tuple[str, str | None, str | None, str | None]] = set()
        for p in self.plugins:
            key = (p.name, p.route_id, p.service_id, p.consumer_id)
            if key in seen:
                self.err(f"{p.label}: configured twice at the same scope")
            seen.add(key)


def _ref_value(ref: Any) -> str:
    if isinstance(ref, Mapping):
        return str(ref.get("id") or ref.get("name") or ref.get("username") or "")
    return str(ref)
