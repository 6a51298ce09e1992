"""Kong's schema language: fill defaults and validate a plugin config, as Kong does at load.

The entry point is :func:`validate`, a pure function::

    filled, errors = validate(schema_fields, config)

``schema_fields`` is the plugin's field list in Kong's Lua schema syntax, i.e. the Python
plugin's module-level ``Schema`` (a list of one-key dicts, ``[{"ttl": {"type": "integer"}}]``), or
``dump["Schema"]["fields"][0]["config"]["fields"]``. It follows Kong 3.9's
``kong/db/schema/init.lua``: first ``process_auto_fields(config, "insert")`` (defaults), then
``validate`` on the result. Messages are Kong's own (``"value must be greater than 0"``,
``"unknown field"``, ``"required field missing"``, ...).

Kong behaviours reproduced on purpose (they surprise people):

* plugin schemas are *entity* subschemas, and Kong makes every record field required unless it
  says ``required = false`` (``make_records_required`` in ``kong/db/schema/entity.lua``): an
  omitted record is therefore expanded with its nested defaults, and an explicit ``null`` for it
  is "required field missing";
* an omitted field with a ``default`` gets a deep copy of it; an omitted field without default
  that is not ``required`` becomes ``null``; an explicit ``null`` is kept even if there is a
  default; an optional (``required = false``) record without default becomes ``null``;
* defaults are filled inside records that are elements of arrays/sets or values of maps too;
* strings must be non-empty unless ``len_min`` says otherwise; lengths count UTF-8 bytes;
* sets are de-duplicated; an integral float given for an ``integer``/``number`` becomes an int
  (Lua has one number type and cjson prints ``5.0`` as ``5``);
* every bad element of an array/set is reported, as ``path.N`` (1-based, like Kong's flattened
  errors); a map reports its first bad key or value on the map field itself.

Attributes supported: ``type`` (string, integer, number, boolean, array, set, map, record),
``required``, ``default``, ``fields``, ``elements``, ``keys``, ``values``, ``eq``, ``ne``,
``one_of``, ``not_one_of``, ``gt``, ``between``, ``len_eq``, ``len_min``, ``len_max``,
``starts_with``, ``match``, ``not_match``, ``match_all``, ``match_none``, ``match_any`` (Lua
patterns, see :mod:`kongsim.luapattern`), ``contains``, ``uuid``, ``is_regex`` (checked with
Python's ``re``), ``timestamp``, and ``custom_validator`` (a Python callable; only kongsim's
built-in schemas use it). Ignored: ``referenceable``, ``encrypted``, ``description`` and the
other attributes Kong's metaschema allows. NOT emulated: ``entity_checks``, subschemas,
``foreign`` and ``json`` fields, shorthand fields, vault references, deprecation warnings.
"""

from __future__ import annotations

import copy
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from kongsim.luapattern import lua_match

VALID_TYPES = frozenset({"string", "integer", "number", "boolean", "array", "set", "map", "record"})

_UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$", re.I)

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


Field = Mapping[str, Any]


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
    elif ftype in ("array", "set") and isinstance(value, list):
        items = _dedupe(value) if ftype == "set" else value
        elements = field.get("elements")
        value = [_adjust(elements, v) for v in items] if isinstance(elements, Mapping) else items
    elif ftype == "map" and isinstance(value, Mapping):
        values = field.get("values")
        if isinstance(values, Mapping):
            value = {k: _adjust(values, v) for k, v in value.items()}
    if value is MISSING:
        return _handle_missing(field)
    if ftype in ("integer", "number") and _is_integral_float(value):
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


def _is_integral_float(value: Any) -> bool:
    return isinstance(value, float) and math.isfinite(value) and value.is_integer()


# --- validation ----------------------------------------------------------------------------------


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def _validate_record(
    fields: list[tuple[str, Field]], value: Mapping[str, Any], path: str
) -> list[FieldError]:
    by_path: dict[str, FieldError] = {}
    known = dict(fields)
    for key, item in value.items():
        sub = _join(path, str(key))
        definition = known.get(str(key))
        if definition is None:
            by_path[sub] = FieldError(sub, UNKNOWN)
            continue
        for err in _validate_field(definition, item, sub):
            by_path.setdefault(err.path, err)
    for name, definition in fields:
        if definition.get("required") is True and value.get(name) is None:
            sub = _join(path, name)
            by_path[sub] = FieldError(sub, REQUIRED)
    return list(by_path.values())


def _with_required(definition: Any) -> Field:
    if not isinstance(definition, Mapping):
        return {"type": "__invalid__"}
    return {**definition, "required": True}


def _validate_field(field: Field, value: Any, path: str) -> list[FieldError]:
    if value is None:
        if "ne" in field and field["ne"] is None:
            return [FieldError(path, "value must not be null")]
        if field.get("eq") is not None:
            return [FieldError(path, f"value must be {_lua_tostring(field['eq'])}")]
        if field.get("required") is True:
            return [FieldError(path, REQUIRED)]
        return []

    ftype = field.get("type")
    if ftype in ("array", "set"):
        if not isinstance(value, list):
            return [FieldError(path, f"expected {'an array' if ftype == 'array' else 'a set'}")]
        elements = _with_required(field.get("elements"))
        items = _dedupe(value) if ftype == "set" else value
        element_errors: list[FieldError] = []
        for index, item in enumerate(items, start=1):
            element_errors.extend(_validate_field(elements, item, f"{path}.{index}"))
        if element_errors:
            return element_errors
    elif ftype == "map":
        if not isinstance(value, Mapping):
            return [FieldError(path, "expected a map")]
        keys = _with_required(field.get("keys"))
        values = _with_required(field.get("values"))
        for k, v in value.items():
            errs = _validate_field(keys, k, path) or _validate_field(values, v, path)
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
        if not (_is_int(value) or _is_integral_float(value)):
            return [FieldError(path, "expected an integer")]
    elif ftype == "number":
        if not (_is_int(value) or isinstance(value, float)):
            return [FieldError(path, "expected a number")]
    elif ftype == "string":
        if not isinstance(value, str):
            return [FieldError(path, "expected a string")]
        if "len_min" not in field:
            field = {**field, "len_min": 1}
    elif ftype == "boolean":
        if not isinstance(value, bool):
            return [FieldError(path, "expected a boolean")]
    else:
        return [FieldError(path, f"invalid type: {ftype}")]

    for name in _VALIDATORS_ORDER:
        if name in field and field[name] is not None and field[name] is not False:
            message = _VALIDATORS[name](value, field[name], field)
            if message is not None:
                return [FieldError(path, message)]
    return []


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _lua_tostring(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if _is_integral_float(value):
        return str(int(value))
    if value is None:
        return "null"
    return str(value)


def _length(value: Any) -> int:
    if isinstance(value, str):
        return len(value.encode("utf-8"))
    return len(value)


# Each validator returns None when the value passes, else Kong's message.
Validator = Callable[[Any, Any, Field], "str | None"]


def _v_eq(value: Any, wanted: Any, _f: Field) -> str | None:
    return None if value == wanted else f"value must be {_lua_tostring(wanted)}"


def _v_ne(value: Any, wanted: Any, _f: Field) -> str | None:
    return None if value != wanted else f"value must not be {_lua_tostring(value)}"


def _v_not_one_of(value: Any, options: Any, _f: Field) -> str | None:
    if any(value == opt and type(value) is type(opt) for opt in options):
        return "must not be one of: " + ", ".join(_lua_tostring(o) for o in options)
    return None


def _v_one_of(value: Any, options: Any, _f: Field) -> str | None:
    if any(value == opt and type(value) is type(opt) for opt in options):
        return None
    if _is_int(value) and any(value == opt for opt in options if not isinstance(opt, bool)):
        return None
    return "expected one of: " + ", ".join(_lua_tostring(o) for o in options)


def _v_gt(value: Any, limit: Any, _f: Field) -> str | None:
    return None if value > limit else f"value must be greater than {_lua_tostring(limit)}"


def _v_timestamp(value: Any, _arg: Any, _f: Field) -> str | None:
    return None if value > 0 else "expected a valid timestamp"


def _v_uuid(value: Any, _arg: Any, _f: Field) -> str | None:
    return None if _UUID_RE.match(value) else "expected a valid UUID"


def _v_is_regex(value: Any, _arg: Any, _f: Field) -> str | None:
    try:
        re.compile(value)
    except re.error:
        return f"not a valid regex: {value}"
    return None


def _v_between(value: Any, limits: Any, _f: Field) -> str | None:
    low, high = limits[0], limits[1]
    if value < low or value > high:
        return f"value should be between {int(low)} and {int(high)}"
    return None


def _v_len_eq(value: Any, n: Any, _f: Field) -> str | None:
    return None if _length(value) == n else f"length must be {int(n)}"


def _v_len_min(value: Any, n: Any, _f: Field) -> str | None:
    return None if _length(value) >= n else f"length must be at least {int(n)}"


def _v_len_max(value: Any, n: Any, _f: Field) -> str | None:
    return None if _length(value) <= n else f"length must be at most {int(n)}"


def _v_starts_with(value: Any, prefix: Any, _f: Field) -> str | None:
    return None if value.startswith(prefix) else f"should start with: {prefix}"


def _v_match(value: Any, pattern: Any, _f: Field) -> str | None:
    return None if lua_match(value, pattern) else f"invalid value: {value}"


def _v_not_match(value: Any, pattern: Any, _f: Field) -> str | None:
    return f"invalid value: {value}" if lua_match(value, pattern) else None


def _v_match_all(value: Any, rules: Any, _f: Field) -> str | None:
    for rule in rules:
        if not lua_match(value, rule["pattern"]):
            return str(rule.get("err") or f"invalid value: {value}")
    return None


def _v_match_none(value: Any, rules: Any, _f: Field) -> str | None:
    for rule in rules:
        if lua_match(value, rule["pattern"]):
            return str(rule.get("err") or f"invalid value: {value}")
    return None


def _v_match_any(value: Any, arg: Any, _f: Field) -> str | None:
    if any(lua_match(value, p) for p in arg["patterns"]):
        return None
    return str(arg.get("err") or f"invalid value: {value}")


def _v_contains(value: Any, wanted: Any, _f: Field) -> str | None:
    return None if wanted in value else f"expected to contain: {_lua_tostring(wanted)}"


def _v_custom(value: Any, fn: Any, _f: Field) -> str | None:
    ok, err = fn(value)
    if ok:
        return None
    return str(err or f"failed validating: {value}")


_VALIDATORS: dict[str, Validator] = {
    "eq": _v_eq,
    "ne": _v_ne,
    "not_one_of": _v_not_one_of,
    "one_of": _v_one_of,
    "gt": _v_gt,
    "timestamp": _v_timestamp,
    "uuid": _v_uuid,
    "is_regex": _v_is_regex,
    "between": _v_between,
    "len_eq": _v_len_eq,
    "len_min": _v_len_min,
    "len_max": _v_len_max,
    "starts_with": _v_starts_with,
    "not_match": _v_not_match,
    "match_none": _v_match_none,
    "match": _v_match,
    "match_all": _v_match_all,
    "match_any": _v_match_any,
    "contains": _v_contains,
    "custom_validator": _v_custom,
}

# Kong's Schema.validators_order.
_VALIDATORS_ORDER = (
    "eq",
    "ne",
    "not_one_of",
    "one_of",
    "gt",
    "timestamp",
    "uuid",
    "is_regex",
    "between",
    "len_eq",
    "len_min",
    "len_max",
    "starts_with",
    "not_match",
    "match_none",
    "match",
    "match_all",
    "match_any",
    "contains",
    "custom_validator",
)


# --- checking a schema itself (what Kong's MetaSubSchema does for a plugin's dump) -----------

_META_ATTRIBUTES = frozenset(
    {
        "type", "required", "reference", "description", "examples", "auto", "unique",
        "unique_across_ws", "on_delete", "default", "abstract", "generate_admin_api",
        "immutable", "err", "encrypted", "referenceable", "json_schema", "transient",
        "deprecation", "elements", "keys", "values", "fields", "entity_checks",
        "shorthand_fields", "between", "eq", "ne", "gt", "len_eq", "len_min", "len_max",
        "match", "not_match", "match_all", "match_none", "match_any", "starts_with", "one_of",
        "not_one_of", "contains", "is_regex", "timestamp", "uuid", "custom_validator",
        "mutually_exclusive_subsets",
    }
)  # fmt: skip

# Kong's metaschema ``attribute_types``: attributes allowed only on some field types.
_ATTRIBUTE_TYPES = {
    "between": {"integer", "number"},
    "len_eq": {"array", "set", "string", "map"},
    "match": {"string"},
    "one_of": {"string", "number", "integer"},
    "contains": {"array", "set"},
    "is_regex": {"string"},
    "timestamp": {"number", "integer"},
    "uuid": {"string"},
    "unique": {"string", "number", "integer"},
    "transient": {"string", "number", "integer", "array", "set", "boolean"},
}


def check_schema(schema_fields: Any, path: str = "config") -> list[str]:
    """Check a field list as Kong's metaschema would; return problems (empty = fine).

    Checked: the field list shape, known types and the attributes each type must declare
    (``elements``, ``keys``/``values``, ``fields``), unknown attributes, attributes not allowed
    on the type (``between`` on a string...), ``description`` length (10 to 500), Lua patterns,
    and that each ``default`` validates against its own field.
    """
    if not isinstance(schema_fields, list | tuple):
        return [f"{path}: 'fields' must be an array"]
    problems: list[str] = []
    try:
        items = field_items(schema_fields)
    except ValueError as exc:
        return [f"{path}: {exc}"]
    for name, field in items:
        problems.extend(_check_field(field, _join(path, name)))
    return problems


def _check_field(field: Field, path: str) -> list[str]:
    ftype = field.get("type")
    if ftype not in VALID_TYPES:
        return [f"{path}: invalid type: {ftype}"]
    problems = [f"{path}.{attr}: unknown field" for attr in field if attr not in _META_ATTRIBUTES]
    for attr, types in _ATTRIBUTE_TYPES.items():
        if attr in field and ftype not in types:
            problems.append(f"{path}: field of type '{ftype}' cannot have attribute '{attr}'")
    description = field.get("description")
    if description is not None:
        if not isinstance(description, str):
            problems.append(f"{path}.description: expected a string")
        elif not 10 <= len(description.encode("utf-8")) <= 500:
            problems.append(
                f"{path}.description: length must be between 10 and 500 (Kong's "
                f"metaschema), got {len(description)}"
            )
    if ftype == "record":
        if not isinstance(field.get("fields"), list | tuple):
            return [*problems, f"{path}: field of type 'record' must declare 'fields'"]
        problems.extend(check_schema(field.get("fields"), path))
    elif ftype in ("array", "set"):
        elements = field.get("elements")
        if not isinstance(elements, Mapping):
            return [*problems, f"{path}: field of type '{ftype}' must declare 'elements'"]
        problems.extend(_check_field(elements, path + ".elements"))
    elif ftype == "map":
        for attr in ("keys", "values"):
            sub = field.get(attr)
            if not isinstance(sub, Mapping):
                problems.append(f"{path}: field of type 'map' must declare '{attr}'")
            else:
                problems.extend(_check_field(sub, f"{path}.{attr}"))
    for attr in ("match", "not_match"):
        if isinstance(field.get(attr), str):
            try:
                lua_match("", field[attr])
            except ValueError as exc:
                problems.append(f"{path}: bad Lua pattern in '{attr}': {exc}")
    default = field.get("default")
    if default is not None and not problems:
        errs = _validate_field({k: v for k, v in field.items() if k != "required"}, default, path)
        problems.extend(f"{e.path}: default value does not validate: {e.message}" for e in errs)
    return problems
