"""The entities of a declarative config: services, routes, consumers, credentials, plugins.

Frozen dataclasses. Each ``entity()`` method returns the table Kong's PDK hands to plugins
(``kong.router.get_route()`` and friends), with nil fields left out.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

NAMESPACE = uuid.UUID("5b1c5a3e-8f0e-4c4a-9d64-6b6f6e677369")
"""Namespace of the uuid5 ids kongsim gives to entities without an ``id``."""

DEFAULT_WORKSPACE_ID = str(uuid.uuid5(NAMESPACE, "workspace:default"))


@dataclass(frozen=True)
class Service:
    """A Kong service: where matched requests are proxied."""

    id: str
    name: str | None
    protocol: str
    host: str
    port: int
    path: str | None
    connect_timeout: int = 60000
    write_timeout: int = 60000
    read_timeout: int = 60000
    retries: int = 5
    enabled: bool = True
    tags: tuple[str, ...] = ()
    created_at: int = 0

    @property
    def label(self) -> str:
        return f"service '{self.name or self.id}'"

    def entity(self) -> dict[str, Any]:
        """The table ``kong.router.get_service()`` returns (nil fields left out)."""
        out: dict[str, Any] = {
            "id": self.id,
            "name": self.name,
            "protocol": self.protocol,
            "host": self.host,
            "port": self.port,
            "path": self.path,
            "retries": self.retries,
            "connect_timeout": self.connect_timeout,
            "write_timeout": self.write_timeout,
            "read_timeout": self.read_timeout,
            "enabled": self.enabled,
            "tags": list(self.tags) or None,
            "created_at": self.created_at,
            "updated_at": self.created_at,
            "ws_id": DEFAULT_WORKSPACE_ID,
        }
        return {k: v for k, v in out.items() if v is not None}


@dataclass(frozen=True)
class Route:
    """A Kong route: request criteria plus how to rewrite the request for its service."""

    id: str
    name: str | None
    service_id: str | None
    index: int
    protocols: tuple[str, ...] = ("http", "https")
    methods: tuple[str, ...] = ()
    hosts: tuple[str, ...] = ()
    paths: tuple[str, ...] = ()
    headers: tuple[tuple[str, tuple[str, ...]], ...] = ()
    strip_path: bool = True
    preserve_host: bool = False
    regex_priority: int = 0
    path_handling: str = "v0"
    https_redirect_status_code: int = 426
    request_buffering: bool = True
    response_buffering: bool = True
    tags: tuple[str, ...] = ()
    created_at: int = 0

    @property
    def label(self) -> str:
        return f"route '{self.name}'" if self.name else f"route #{self.index} ({self.id})"

    def entity(self) -> dict[str, Any]:
        """The table ``kong.router.get_route()`` returns (nil fields left out)."""
        out: dict[str, Any] = {
            "id": self.id,
            "name": self.name,
            "protocols": list(self.protocols),
            "methods": list(self.methods) or None,
            "hosts": list(self.hosts) or None,
            "paths": list(self.paths) or None,
            "headers": {k: list(v) for k, v in self.headers} or None,
            "strip_path": self.strip_path,
            "preserve_host": self.preserve_host,
            "regex_priority": self.regex_priority,
            "path_handling": self.path_handling,
            "https_redirect_status_code": self.https_redirect_status_code,
            "request_buffering": self.request_buffering,
            "response_buffering": self.response_buffering,
            "service": {"id": self.service_id} if self.service_id else None,
            "tags": list(self.tags) or None,
            "created_at": self.created_at,
            "updated_at": self.created_at,
            "ws_id": DEFAULT_WORKSPACE_ID,
        }
        return {k: v for k, v in out.items() if v is not None}


@dataclass(frozen=True)
class Consumer:
    """A Kong consumer."""

    id: str
    username: str | None
    custom_id: str | None
    tags: tuple[str, ...] = ()
    created_at: int = 0

    @property
    def label(self) -> str:
        return f"consumer '{self.username or self.custom_id}'"

    def entity(self) -> dict[str, Any]:
        """The table ``kong.client.get_consumer()`` returns (nil fields left out)."""
        out: dict[str, Any] = {
            "id": self.id,
            "username": self.username,
            "custom_id": self.custom_id,
            "tags": list(self.tags) or None,
            "type": 0,
            "created_at": self.created_at,
            "updated_at": self.created_at,
            "ws_id": DEFAULT_WORKSPACE_ID,
        }
        return {k: v for k, v in out.items() if v is not None}


@dataclass(frozen=True)
class KeyCredential:
    """A ``keyauth_credentials`` entry of a consumer."""

    id: str
    consumer_id: str
    key: str
    tags: tuple[str, ...] = ()
    created_at: int = 0

    def entity(self) -> dict[str, Any]:
        """The table ``kong.client.get_credential()`` returns after key-auth."""
        out: dict[str, Any] = {
            "id": self.id,
            "consumer": {"id": self.consumer_id},
            "key": self.key,
            "tags": list(self.tags) or None,
            "created_at": self.created_at,
            "ws_id": DEFAULT_WORKSPACE_ID,
        }
        return {k: v for k, v in out.items() if v is not None}


@dataclass(frozen=True)
class PluginEntity:
    """A plugin entity as written in kong.yml (config not yet validated)."""

    id: str
    name: str
    config: Mapping[str, Any] | None
    route_id: str | None
    service_id: str | None
    consumer_id: str | None
    label: str
    """Where it is configured, for messages: ``plugin 'x' on route 'users'``."""
    enabled: bool = True
    instance_name: str | None = None
    protocols: tuple[str, ...] = ("grpc", "grpcs", "http", "https")
    tags: tuple[str, ...] = ()

    @property
    def is_global(self) -> bool:
        return not (self.route_id or self.service_id or self.consumer_id)


@dataclass(frozen=True)
class DeclarativeConfig:
    """The whole kong.yml, parsed."""

    services: tuple[Service, ...] = ()
    routes: tuple[Route, ...] = ()
    consumers: tuple[Consumer, ...] = ()
    credentials: tuple[KeyCredential, ...] = ()
    plugins: tuple[PluginEntity, ...] = ()
    source: str = "<memory>"
    services_by_id: Mapping[str, Service] = field(default_factory=dict)
    consumers_by_id: Mapping[str, Consumer] = field(default_factory=dict)

    def service(self, service_id: str | None) -> Service | None:
        return self.services_by_id.get(service_id) if service_id else None

    def consumer(self, consumer_id: str | None) -> Consumer | None:
        return self.consumers_by_id.get(consumer_id) if consumer_id else None

    def find_consumer(self, id_or_username: str) -> Consumer | None:
        """``kong.client.load_consumer(x, true)``: by id, then by username."""
        found = self.consumers_by_id.get(id_or_username)
        if found:
            return found
        return next((c for c in self.consumers if c.username == id_or_username), None)


def stable_id(kind: str, key: str) -> str:
    """The uuid5 kongsim gives an entity of ``kind`` identified by ``key``."""
    return str(uuid.uuid5(NAMESPACE, f"{kind}:{key}"))


_NAMED_GROUP = re.compile(r"\(\?<(?![=!])")


def to_python_regex(pcre: str) -> str:
    """Make a Kong (PCRE/Rust-regex) path regex acceptable to Python: ``(?<n>...)`` named groups."""
    return _NAMED_GROUP.sub("(?P<", pcre)
