"""The state of one parse of a declarative file, and the typed field readers every entity
parser uses: each reader records Kong-style errors (``label: field: message``) and returns a
default, so that one pass reports every problem. Nothing here knows an entity kind.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Mapping
from typing import Any

from kongsim.config.entities import Consumer, KeyCredential, PluginEntity, Route, Service, stable_id


def words(text: str) -> frozenset[str]:
    return frozenset(text.split())


def ref_value(ref: Any) -> str:
    if isinstance(ref, Mapping):
        return str(ref.get("id") or ref.get("name") or ref.get("username") or "")
    return str(ref)


class DeclReader:
    """Errors and entities collected so far, and the field readers."""

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
