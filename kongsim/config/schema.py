"""Kong's schema language: fill defaults and validate a plugin config, as Kong does at load.

The entry point is :func:`validate`, a pure function::

    filled, errors = validate(schema_fields, config)

``schema_fields`` is the plugin's field list in Kong's Lua schema syntax, i.e. the Python
plugin's module-level ``Schema`` (a list of one-key dicts, ``[{"ttl": {"type": "integer"}}]``), or
``dump["Schema"]["fields"][0]["config"]["fields"]``. It follows Kong 3.9.3's
``kong/db/schema/init.lua``: first ``process_auto_fields(config, "insert")`` (defaults), then
``validate`` on the result. Messages are Kong's own (``validation_errors`` in that file:
``"value must be greater than 0"``, ``"unknown field"``, ``"required field missing"``, ...).

Kong behaviours reproduced on purpose (they surprise people):

* plugin schemas are *entity* subschemas, and Kong makes every record field required unless it
  says ``required = false`` (``make_records_required`` in ``kong/db/schema/entity.lua``): an
  omitted record is therefore expanded with its nested defaults, and an explicit ``null`` for it
  is "required field missing";
* an omitted field with a ``default`` gets a deep copy of it; an omitted field without default
  that is not ``required`` becomes ``null``; an explicit ``null`` is kept even if there is a
  default; an optional (``required = false``) record without default becomes ``null``;
* defaults are filled inside records that are elements of arrays/sets or values of maps too;
* an empty JSON/YAML object ``{}`` given for an array or set is an empty array (Lua cannot
  tell them apart: ``is_sequence``/``make_array`` in ``init.lua``);
* strings must be non-empty unless ``len_min`` says otherwise; lengths count UTF-8 bytes;
* sets are de-duplicated; an integral float given for an ``integer``/``number`` becomes an int
  (Lua has one number type and cjson prints ``5.0`` as ``5``);
* every bad element of an array/set is reported, as ``path.N`` (1-based, like Kong's flattened
  errors); a map reports its first bad key or value on the map field itself;
* validators run in Kong's ``Schema.validators_order`` and stop at the first failure; they run
  whenever the attribute is present, whatever its value (``field[k] ~= nil``); a field's own
  ``err`` attribute replaces the message of any failing validator (``Schema:validate_field``
  returns ``field.err or err``), but not type errors or "required field missing";
* ``match_all``/``match_none`` rules and ``match_any`` report their ``err``, or
  ``"invalid value: <value>"`` without one; patterns are Lua patterns matched on bytes
  (:mod:`kongsim.config.luapattern`).

Attributes supported: ``type`` (string, integer, number, boolean, array, set, map, record),
``required``, ``default``, ``fields``, ``elements``, ``keys``, ``values``, ``err``, ``eq``,
``ne``, ``one_of``, ``not_one_of``, ``gt``, ``between``, ``len_eq``, ``len_min``, ``len_max``,
``starts_with``, ``match``, ``not_match``, ``match_all``, ``match_none``, ``match_any``,
``contains``, ``uuid``, ``is_regex`` (checked with Python's ``re``, Kong uses PCRE),
``timestamp``, ``mutually_exclusive_subsets``, and ``custom_validator`` (a Python callable; only
kongsim's built-in schemas use it: a Lua function cannot cross the plugin server's JSON dump).
Ignored: ``referenceable``, ``encrypted``, ``description`` and the other attributes Kong's
metaschema allows. NOT emulated: ``entity_checks``, subschemas, ``foreign``, ``function`` and
``json`` fields, shorthand fields, vault references, deprecation warnings.

The validators themselves are in :mod:`kongsim.config.validators`; Kong's metaschema
(:func:`kongsim.config.metaschema.check_schema`, ``MetaSchema.MetaSubSchema`` in
``kong/db/schema/metaschema.lua``), which ``plugin_loader.load_subschema`` applies to an
external plugin's schema, is in :mod:`kongsim.config.metaschema`.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from kongsim.config.validators import (
    VALIDATORS,
    VALIDATORS_ORDER,
    Field,
    is_int,
    is_integral_float,
    lua_tostring,
)

VALID_TYPES = frozenset({"string", "integer", "number", "boolean", "array", "set", "map", "record"})

REQUIRED = "required field missing"
UNKNOWN = "unknown field"


class _Missing:
    """Lua ``nil`` (an absent key), as opposed to ``None`` which stands for ``ngx.null``."""

    def __repr__(self) -> str:
        return "<missing>"


MISSING = _Missing()


@dataclass(frozen=True)
class FieldError:
    """One validation problem: the dotted path of the field and Kong's message."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message


def field_items(schema_fields: Sequence[Any]) -> list[tuple[str, Field]]:
    """Turn Kong's ``[{name: def}, ...]`` list into ``[(name, def), ...]``."""
    items: list[tuple[str, Field]] = []
    for entry in schema_fields:
        if not isinstance(entry, Mapping) or len(entry) != 1:
            raise ValueError(f"schema field entry must be a one-key mapping, got {entry!r}")
        ((name, definition),) = entry.items()
        if not isinstance(definition, Mapping):
            raise ValueError(f"schema field {name!r} must be a mapping")
        items.append((str(name), definition))
    return items


def validate(
    schema_fields: Sequence[Any], config: Any, *, path: str = "config"
) -> tuple[dict[str, Any] | None, list[FieldError]]:
    """Fill defaults into ``config`` and validate it; return ``(filled, errors)``.

    ``filled`` is a new dict (the input is not modified), or ``None`` when ``config`` is not a
    mapping. ``errors`` is sorted by path; empty means valid. ``config=None`` means "no config
    given" and is treated like ``{}`` (Kong fills the defaults of a plugin created without one).
    """
    fields = [(name, _records_required(f)) for name, f in field_items(schema_fields)]
    if config is None:
        config = {}
    if not isinstance(config, Mapping):
        return None, [FieldError(path, "expected a record")]
    filled = _fill_record(fields, config)
    errors = _validate_record(fields, filled, path)
    return filled, sorted(errors, key=lambda e: e.path)


# --- defaults (process_auto_fields, "insert" context) -------------------------------------------


def _records_required(field: Field) -> Field:
    """Kong's ``make_records_required``: records (recursively) default to ``required = true``."""
    if field.get("type") != "record":
        return field
    out = dict(field)
    if out.get("required") is None:
        out["required"] = True
    out["fields"] = [
        {name: _records_required(sub)} for name, sub in field_items(field.get("fields", []))
    ]
    return out


def _handle_missing(field: Field) -> Any:
    if field.get("default") is not None:
        return copy.deepcopy(field["default"])
    if field.get("required") is not True:
        return None
    if field.get("type") == "record":
        return _fill_record(field_items(field.get("fields", [])), {})
    return MISSING


def _adjust(field: Field, value: Any) -> Any:
    """Kong's ``adjust_field_for_context`` for an insert: fill defaults, normalize values."""
    ftype = field.get("type")
    if ftype == "record":
        if value is not None and (value is not MISSING or field.get("required") is True):
            if value is MISSING:
                value = _handle_missing(field)
            if isinstance(value, Mapping):
                return _fill_record(field_items(field.get("fields", [])), value)
    elif ftype in ("array", "set") and isinstance(value, list | Mapping):
        if isinstance(value, Mapping):
            if value:
                return value  # not a sequence: left for validation to refuse
            value = []  # Kong's make_array: an empty table is an empty array
        items = _dedupe(value) if ftype == "set" else value
        elements = field.get("elements")
        value = [_adjust(elements, v) for v in items] if isinstance(elements, Mapping) else items
    elif ftype == "map" and isinstance(value, Mapping):
        values = field.get("values")
        if isinstance(values, Mapping):
            value = {k: _adjust(values, v) for k, v in value.items()}
    if value is MISSING:
        return _handle_missing(field)
    if ftype in ("integer", "number") and is_integral_float(value):
        return int(value)
    return value


def _fill_record(fields: list[tuple[str, Field]], value: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = copy.deepcopy(dict(value))
    for name, field in fields:
        adjusted = _adjust(field, out.get(name, MISSING))
        if adjusted is not MISSING:
            out[name] = adjusted
    return out


def _dedupe(values: list[Any]) -> list[Any]:
    out: list[Any] = []
    for v in values:
        if v not in out:
            out.append(v)
    return out


# --- validation ----------------------------------------------------------------------------------


def join_path(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def _validate_record(
    fields: list[tuple[str, Field]], value: Mapping[str, Any], path: str
) -> list[FieldError]:
    by_path: dict[str, FieldError] = {}
    known = dict(fields)
    for key, item in value.items():
        sub = join_path(path, str(key))
        definition = known.get(str(key))
        if definition is None:
            by_path[sub] = FieldError(sub, UNKNOWN)
            continue
        for err in validate_field(definition, item, sub):
            by_path.setdefault(err.path, err)
    for name, definition in fields:
        if definition.get("required") is True and value.get(name) is None:
            sub = join_path(path, name)
            by_path[sub] = FieldError(sub, REQUIRED)
    return list(by_path.values())


def _with_required(definition: Any) -> Field:
    if not isinstance(definition, Mapping):
        return {"type": "__invalid__"}
    return {**definition, "required": True}


def validate_field(field: Field, value: Any, path: str) -> list[FieldError]:
    """Kong's ``Schema:validate_field`` (``kong/db/schema/init.lua``)."""
    own_err = field.get("err")
    if value is None:
        if "ne" in field and field["ne"] is None:
            return [FieldError(path, own_err or "value must not be null")]
        if field.get("eq") is not None:
            return [FieldError(path, f"value must be {lua_tostring(field['eq'])}")]
        if field.get("required") is True:
            return [FieldError(path, REQUIRED)]
        return []
    if "eq" in field and field["eq"] is None:
        return [FieldError(path, own_err or "value must be null")]

    ftype = field.get("type")
    if ftype in ("array", "set"):
        if isinstance(value, Mapping) and not value:
            value = []  # is_sequence({}) is true in Kong
        if not isinstance(value, list):
            return [FieldError(path, f"expected {'an array' if ftype == 'array' else 'a set'}")]
        elements = _with_required(field.get("elements"))
        items = _dedupe(value) if ftype == "set" else value
        element_errors: list[FieldError] = []
        for index, item in enumerate(items, start=1):
            element_errors.extend(validate_field(elements, item, f"{path}.{index}"))
        if element_errors:
            return element_errors
    elif ftype == "map":
        if not isinstance(value, Mapping):
            return [FieldError(path, "expected a map")]
        keys = _with_required(field.get("keys"))
        values = _with_required(field.get("values"))
        for k, v in value.items():
            errs = validate_field(keys, k, path) or validate_field(values, v, path)
            if errs:
                return errs
    elif ftype == "record":
        if not isinstance(value, Mapping):
            return [FieldError(path, "expected a record")]
        sub_fields = field_items(field.get("fields", []))
        errs = _validate_record(sub_fields, _fill_record(sub_fields, value), path)
        if errs:
            return errs
    elif ftype == "integer":
        if not (is_int(value) or is_integral_float(value)):
            return [FieldError(path, "expected an integer")]
    elif ftype == "number":
        if not (is_int(value) or isinstance(value, float)):
            return [FieldError(path, "expected a number")]
    elif ftype == "string":
        if not isinstance(value, str):
            return [FieldError(path, "expected a string")]
        if "len_min" not in field:
            field = {**field, "len_min": 1}
    elif ftype == "boolean":
        if not isinstance(value, bool):
            return [FieldError(path, "expected a boolean")]
    elif ftype == "function":
        if not callable(value):
            return [FieldError(path, "expected a function")]
    elif ftype != "any":  # "any": Kong's internal marker (metaschema), validators only
        return [FieldError(path, f"invalid type: {ftype}")]

    for name in VALIDATORS_ORDER:
        # Kong runs a validator whenever ``field[k] ~= nil``; a JSON null is ngx.null, which
        # is not nil either, but only ``eq``/``ne`` give it a meaning (handled above).
        if name in field and field[name] is not None:
            message = VALIDATORS[name](value, field[name], field)
            if message is not None:
                return [FieldError(path, own_err or message)]
    return []
