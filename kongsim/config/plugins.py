"""Plugin catalog, validated plugin configurations, and Kong's plugin precedence and order.

* :class:`PluginInfo` is what Kong learns about a plugin: from an external plugin server's
  ``--dump`` output (:func:`parse_dump`, Kong 3.9 rules: element ``[0]`` of the JSON array,
  ``Version`` must be ``x.y.z``, ``Priority`` an integer, ``Schema`` a ``config`` record), or
  from a bundled plugin emulated by kongsim (``key-auth``).
* :class:`ConfiguredPlugin` is one plugin entity whose config passed schema validation, plus the
  fields Kong's plugins iterator adds before handing it to a plugin server (``route_id``,
  ``service_id``, ``consumer_id``, ``__plugin_id``, ``__key__``, ``__seq__``, ``__ws_id``).
* :class:`PluginSet` answers "which config of plugin X applies to this request" with Kong 3.x's
  lookup order (route+service+consumer > route+consumer > service+consumer > route+service >
  consumer > route > service > global) and iterates plugins by descending priority (ties: name
  descending, as Kong's ``sort_by_handler_priority``).

NOT emulated: ``protocols`` filtering (every plugin runs on http), plugin ``ordering`` (dynamic
ordering is Enterprise), workspaces other than the default one.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from kongsim.config.entities import DEFAULT_WORKSPACE_ID, DeclarativeConfig, PluginEntity
from kongsim.config.metaschema import check_schema
from kongsim.config.schema import validate
from kongsim.errors import ConfigError, PluginServerError

PHASES = ("certificate", "rewrite", "log", "access", "preread", "response")
_VERSION_RUN = re.compile(r"\d[\d.]*")


def kong_version(value: Any) -> str | None:
    """Kong 3.9's ``valid_version`` (``kong/db/dao/plugins.lua``) with the ``version`` rock
    1.0.1 it uses: the first run of digits and dots is taken (``"v1.2.3-rc1"`` -> ``1.2.3``),
    split on dots (a trailing dot adds nothing), every element must be a number, and at most
    three elements are allowed. Returns the cleaned version Kong stores, or ``None``."""
    if not isinstance(value, str):
        return None
    run = _VERSION_RUN.search(value)
    if run is None:
        return None
    text = run.group(0)
    parts = text.split(".")
    if parts and parts[-1] == "":
        parts.pop()
    if not parts or len(parts) > 3 or not all(p.isdigit() for p in parts):
        return None
    return ".".join(str(int(p)) for p in parts)


@dataclass(frozen=True)
class PluginInfo:
    """What Kong knows about a plugin before any config is applied."""

    name: str
    priority: int
    version: str
    phases: tuple[str, ...]
    schema_fields: Sequence[Any]
    server: str | None = None
    """Name of the plugin server hosting it; ``None`` for plugins bundled in kongsim."""
    no_consumer: bool = False
    """True when the plugin cannot be configured on a consumer (``typedefs.no_consumer``)."""

    @property
    def external(self) -> bool:
        return self.server is not None

    def has_phase(self, phase: str) -> bool:
        return phase in self.phases


def parse_dump(server: str, output: str) -> PluginInfo:
    """Parse a plugin server's query output as Kong 3.9 does; raise :class:`PluginServerError`."""
    try:
        dump = json.loads(output)
    except json.JSONDecodeError as exc:
        snippet = output.strip().splitlines()[:3]
        raise PluginServerError(
            f"plugin server '{server}': failed decoding plugin info: {exc} (output began: "
            f"{snippet!r})"
        ) from exc
    if isinstance(dump, Mapping):
        dump = dump.get("Plugins")
    if not isinstance(dump, list) or not dump or not isinstance(dump[0], Mapping):
        raise PluginServerError(f"plugin server '{server}': not a plugin info table: {output!r}")
    info = dump[0]
    problems: list[str] = []
    name = info.get("Name")
    if not isinstance(name, str) or not name:
        problems.append("Name must be a non-empty string")
    version = kong_version(info.get("Version"))
    if version is None:
        problems.append(
            f'its VERSION field does not follow the "x.y.z" format, got: '
            f'{info.get("Version")!r} (define version = "x.y.z" in the plugin)'
        )
    priority = info.get("Priority")
    if (
        isinstance(priority, bool)
        or not isinstance(priority, int | float)
        or (isinstance(priority, float) and not (math.isfinite(priority) and priority.is_integer()))
    ):
        problems.append(f"Priority must be an integer, got {priority!r}")
    phases = info.get("Phases") or []
    if not isinstance(phases, list) or not all(p in PHASES for p in phases):
        problems.append(f"Phases must be a list of {PHASES}, got {phases!r}")
    fields = _config_fields(info.get("Schema"), problems)
    if fields is not None:
        problems.extend(check_schema(fields))
    if problems:
        raise PluginServerError(
            f"plugin server '{server}' ({name or '?'}): invalid plugin info: " + "; ".join(problems)
        )
    assert isinstance(name, str) and isinstance(version, str) and fields is not None
    return PluginInfo(
        name=name,
        priority=int(priority),  # type: ignore[arg-type]
        version=version,
        phases=tuple(phases),
        schema_fields=fields,
        server=server,
    )


def _config_fields(schema: Any, problems: list[str]) -> list[Any] | None:
    """Extract ``fields`` of the ``config`` record from a ``{"name", "fields": [...]}`` schema."""
    if not isinstance(schema, Mapping) or not isinstance(schema.get("fields"), list):
        problems.append('Schema must be {"name": ..., "fields": [{"config": {...}}]}')
        return None
    for entry in schema["fields"]:
        if isinstance(entry, Mapping) and "config" in entry:
            config = entry["config"]
            if not isinstance(config, Mapping) or config.get("type") != "record":
                problems.append("Schema: 'config' must be a record")
                return None
            fields = config.get("fields", [])
            if not isinstance(fields, list):
                problems.append("Schema: config.fields must be an array")
                return None
            return fields
    problems.append("Schema: no 'config' field")
    return None


@dataclass(frozen=True)
class ConfiguredPlugin:
    """A validated plugin entity, ready to be started as a plugin-server instance."""

    entity: PluginEntity
    info: PluginInfo
    config: Mapping[str, Any]
    """The config after Kong's default filling (nulls included)."""
    seq: int
    """Kong's ``__seq__``: changes whenever the plugins iterator is rebuilt (a reload)."""

    @property
    def id(self) -> str:
        return self.entity.id

    @property
    def name(self) -> str:
        return self.entity.name

    @property
    def cache_key(self) -> str:
        """Kong's ``__key__`` (``kong.db.plugins:cache_key(...)``)."""
        e = self.entity
        return (
            f"plugins:{e.name}:{e.route_id or ''}:{e.service_id or ''}:"
            f"{e.consumer_id or ''}::{DEFAULT_WORKSPACE_ID}"
        )

    def wire_config(self) -> dict[str, Any]:
        """The config table Kong JSON-encodes into ``StartInstance``'s ``Config``."""
        out = dict(self.config)
        e = self.entity
        for key, value in (
            ("route_id", e.route_id),
            ("service_id", e.service_id),
            ("consumer_id", e.consumer_id),
            ("plugin_instance_name", e.instance_name),
        ):
            if value is not None:
                out[key] = value
        out["__plugin_id"] = e.id
        out["__ws_id"] = DEFAULT_WORKSPACE_ID
        out["__key__"] = self.cache_key
        out["__seq__"] = self.seq
        return out

    def config_json(self) -> str:
        """``cjson.encode(conf)``: integral floats printed as integers, like Lua does."""
        return json.dumps(_lua_numbers(self.wire_config()), separators=(",", ":"))


def _lua_numbers(value: Any) -> Any:
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        return int(value)
    if isinstance(value, Mapping):
        return {k: _lua_numbers(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_lua_numbers(v) for v in value]
    return value


Combo = tuple[str | None, str | None, str | None]


@dataclass
class PluginSet:
    """Every enabled, validated plugin of a config, indexed as Kong's plugins iterator does."""

    ordered: tuple[PluginInfo, ...]
    combos: dict[str, dict[Combo, ConfiguredPlugin]] = field(default_factory=dict)
    by_id: dict[str, ConfiguredPlugin] = field(default_factory=dict)

    def lookup(
        self, name: str, route_id: str | None, service_id: str | None, consumer_id: str | None
    ) -> ConfiguredPlugin | None:
        """The config of plugin ``name`` that applies (Kong 3.x ``lookup_cfg``)."""
        combos = self.combos.get(name)
        if not combos:
            return None
        candidates: list[Combo] = []
        if route_id and service_id and consumer_id:
            candidates.append((route_id, service_id, consumer_id))
        if route_id and consumer_id:
            candidates.append((route_id, None, consumer_id))
        if service_id and consumer_id:
            candidates.append((None, service_id, consumer_id))
        if route_id and service_id:
            candidates.append((route_id, service_id, None))
        if consumer_id:
            candidates.append((None, None, consumer_id))
        if route_id:
            candidates.append((route_id, None, None))
        if service_id:
            candidates.append((None, service_id, None))
        candidates.append((None, None, None))
        for key in candidates:
            found = combos.get(key)
            if found is not None:
                return found
        return None

    def globals_with(self, phase: str) -> Iterator[ConfiguredPlugin]:
        """Global plugins having ``phase``, by priority (Kong's global iterator)."""
        for info in self.ordered:
            if info.has_phase(phase):
                cfg = self.combos.get(info.name, {}).get((None, None, None))
                if cfg is not None:
                    yield cfg

    def all(self) -> Iterator[ConfiguredPlugin]:
        for combos in self.combos.values():
            yield from combos.values()


def sort_key(info: PluginInfo) -> tuple[int, tuple[int, ...]]:
    """Kong's order: higher priority first; equal non-zero priorities by name, descending."""
    inverted_name = (*(-ord(c) for c in info.name), 1)
    return (-info.priority, inverted_name if info.priority else ())


def build_plugin_set(
    decl: DeclarativeConfig, catalog: Mapping[str, PluginInfo], next_seq: Iterator[int]
) -> PluginSet:
    """Validate every plugin entity of ``decl`` against ``catalog``; raise :class:`ConfigError`.

    Each configured plugin gets a fresh ``__seq__`` from ``next_seq``: like Kong rebuilding its
    plugins iterator, a (re)load restarts every plugin-server instance on its next use.
    """
    errors: list[str] = []
    used: dict[str, PluginInfo] = {}
    result = PluginSet(ordered=())
    for entity in decl.plugins:
        info = catalog.get(entity.name)
        if info is None:
            known = ", ".join(sorted(catalog)) or "none"
            errors.append(f"{entity.label}: unknown plugin '{entity.name}' (available: {known})")
            continue
        if entity.consumer_id and info.no_consumer:
            errors.append(
                f"{entity.label}: consumer: value must be null "
                f"('{entity.name}' cannot be configured on a consumer)"
            )
            continue
        filled, field_errors = validate(info.schema_fields, entity.config)
        if field_errors or filled is None:
            errors.extend(f"{entity.label}: {e}" for e in field_errors)
            continue
        if not entity.enabled:
            continue
        configured = ConfiguredPlugin(entity=entity, info=info, config=filled, seq=next(next_seq))
        key = (entity.route_id, entity.service_id, entity.consumer_id)
        result.combos.setdefault(entity.name, {})[key] = configured
        result.by_id[entity.id] = configured
        used[info.name] = info
    if errors:
        raise ConfigError(errors)
    result.ordered = tuple(sorted(used.values(), key=sort_key))
    return result
