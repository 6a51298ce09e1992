"""Read a decK declarative file (``_format_version: "3.0"``) into typed, frozen entities.

Supported: ``services`` (``url`` or ``protocol``/``host``/``port``/``path``, nested ``routes`` and
``plugins``), top-level ``routes`` (with a ``service`` reference by name or id), top-level
``plugins`` (global, or with ``service``/``route``/``consumer`` references), ``consumers``
(``username``, ``custom_id``, nested ``keyauth_credentials`` and ``plugins``).

Every entity gets a stable UUID: its ``id`` if given, else a uuid5 of its kind and name (or of its
position when unnamed), so ids survive restarts and reloads.

This module checks the *shape* of entities (unknown fields, references, route criteria). Plugin
configs are validated against the plugins' schemas by :mod:`kongsim.config.plugins`, which needs the
plugin servers' dumps.

NOT supported (a clear error is raised): ``upstreams``/``targets``, ``certificates``, ``snis``,
``vaults``, ``consumer_groups``, other credential types, non-HTTP protocols, expression routes,
``path_handling: v1``, workspaces. Fields Kong accepts but kongsim ignores: ``tags``,
``retries``, ``tls_verify*``, ``client_certificate``, ``ca_certificates``, ``ordering``,
``request_buffering``/``response_buffering``, ``https_redirect_status_code``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from kongsim.config.entities import (
    Consumer,
    DeclarativeConfig,
    KeyCredential,
    PluginEntity,
)
from kongsim.config.reader import ref_value, words
from kongsim.config.routes import ServiceRouteParser
from kongsim.errors import ConfigError

_TOP_LEVEL = words("_format_version _info _transform _workspace consumers plugins routes services")
_UNSUPPORTED_TOP = words(
    "acls basicauth_credentials ca_certificates certificates consumer_groups "
    "filter_chains hmacauth_credentials jwt_secrets key_sets keyauth_credentials keys "
    "mtls_auth_credentials oauth2_credentials partials snis targets upstreams vaults"
)
_PLUGIN_FIELDS = words(
    "config consumer enabled id instance_name name ordering protocols route service tags"
)
_CONSUMER_FIELDS = words("custom_id id keyauth_credentials plugins tags username")
_CREDENTIAL_FIELDS = words("id key tags ttl")


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


class _Parser(ServiceRouteParser):
    """The top level, consumers with their credentials, plugins, and the uniqueness checks."""

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
        wanted = ref_value(ref)
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
