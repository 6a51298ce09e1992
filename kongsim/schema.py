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
  (:mod:`kongsim.luapattern`).

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

:func:`check_schema` is Kong's metaschema (``MetaSchema.MetaSubSchema`` in
``kong/db/schema/metaschema.lua``), which ``plugin_loader.load_subschema`` applies to an
external plugin's schema; see its docstring for what it checks.
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
    """Kong's ``Schema:validate_field`` (``kong/db/schema/init.lua``)."""
    own_err = field.get("err")
    if value is None:
        if "ne" in field and field["ne"] is None:
            return [FieldError(path, own_err or "value must not be null")]
        if field.get("eq") is not None:
            return [FieldError(path, f"value must be {_lua_tostring(field['eq'])}")]
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
    elif ftype == "function":
        if not callable(value):
            return [FieldError(path, "expected a function")]
    elif ftype != "any":  # "any": Kong's internal marker (metaschema), validators only
        return [FieldError(path, f"invalid type: {ftype}")]

    for name in _VALIDATORS_ORDER:
        # Kong runs a validator whenever ``field[k] ~= nil``; a JSON null is ngx.null, which
        # is not nil either, but only ``eq``/``ne`` give it a meaning (handled above).
        if name in field and field[name] is not None:
            message = _VALIDATORS[name](value, field[name], field)
            if message is not None:
                return [FieldError(path, own_err or message)]
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


def _v_mutually_exclusive_subsets(value: Any, subsets: Any, _f: Field) -> str | None:
    owner: dict[Any, int] = {}
    for index, subset in enumerate(subsets):
        for element in subset:
            owner[element] = index  # a later subset wins, as in Kong's table
    member_of: list[int] = []
    for item in value:
        found = owner.get(item) if isinstance(item, str | int | float) else None
        if found is not None and found not in member_of:
            member_of.append(found)
    if len(member_of) <= 1:
        return None
    listed = ", ".join(
        "(" + ", ".join(f"'{_lua_tostring(w)}'" for w in subsets[i]) + ")" for i in member_of
    )
    return f"these sets are mutually exclusive: {listed}"


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
    "mutually_exclusive_subsets": _v_mutually_exclusive_subsets,
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
    "mutually_exclusive_subsets",
)


# --- checking a schema itself (what Kong's MetaSubSchema does for a plugin's dump) -----------

_BOOL: Field = {"type": "boolean"}
_STR: Field = {"type": "string"}
_INT: Field = {"type": "integer"}
_ANY: Field = {"type": "any"}
_MATCH_LIST: Field = {
    "type": "array",
    "elements": {
        "type": "record",
        "fields": [{"pattern": {"type": "string", "required": True}}, {"err": _STR}],
    },
}
_MATCH_ANY_LIST: Field = {
    "type": "record",
    "fields": [
        {"patterns": {"type": "array", "elements": _STR, "required": True}},
        {"err": _STR},
    ],
}

# The value each field attribute must have: ``field_schema`` and ``validators`` in Kong's
# metaschema.lua (all optional -- ``nilable`` -- except ``type``). Their strings are Kong
# strings, hence non-empty. ``json_schema``, ``entity_checks`` and ``shorthand_fields`` are
# accepted as anything: kongsim emulates neither json fields nor entity checks.
_META_VALUES: dict[str, Field] = {
    "required": _BOOL,
    "reference": _STR,
    "description": {"type": "string", "len_min": 10, "len_max": 500},
    "examples": {"type": "array", "elements": _ANY},
    "auto": _BOOL,
    "unique": _BOOL,
    "unique_across_ws": _BOOL,
    "on_delete": {"type": "string", "one_of": ["restrict", "cascade", "null"]},
    "abstract": _BOOL,
    "generate_admin_api": _BOOL,
    "immutable": _BOOL,
    "err": _STR,
    "encrypted": _BOOL,
    "referenceable": _BOOL,
    "json_schema": _ANY,
    "transient": _BOOL,
    "deprecation": {
        "type": "record",
        "fields": [
            {"message": {"type": "string", "required": True}},
            {"removal_in_version": {"type": "string", "required": True}},
            {"old_default": _ANY},
            {
                "replaced_with": {
                    "type": "array",
                    "elements": {
                        "type": "record",
                        "fields": [
                            {
                                "path": {
                                    "type": "array",
                                    "len_min": 1,
                                    "required": True,
                                    "elements": _STR,
                                }
                            },
                            {"reverse_mapping_function": {"type": "function"}},
                        ],
                    },
                }
            },
        ],
    },
    "between": {"type": "array", "elements": {"type": "number"}, "len_eq": 2},
    "eq": _ANY,
    "ne": _ANY,
    "gt": {"type": "number"},
    "len_eq": _INT,
    "len_min": _INT,
    "len_max": _INT,
    "match": _STR,
    "not_match": _STR,
    "match_all": _MATCH_LIST,
    "match_none": _MATCH_LIST,
    "match_any": _MATCH_ANY_LIST,
    "starts_with": _STR,
    "one_of": {"type": "array", "elements": _ANY},
    "not_one_of": {"type": "array", "elements": _ANY},
    "contains": _ANY,
    "is_regex": _BOOL,
    "timestamp": _BOOL,
    "uuid": _BOOL,
    "custom_validator": {"type": "function"},
    "mutually_exclusive_subsets": {
        "type": "array",
        "elements": {"type": "array", "elements": _STR},
    },
    "entity_checks": _ANY,
    "shorthand_fields": _ANY,
}
_STRUCTURAL = frozenset({"type", "default", "elements", "keys", "values", "fields"})
_META_ATTRIBUTES = frozenset(_META_VALUES) | _STRUCTURAL

# Kong's metaschema ``attribute_types``: attributes allowed only on some field types (the
# ``foreign`` and ``json`` types, which kongsim does not emulate, are left out).
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
    "unique_across_ws": {"string", "number", "integer"},
    "abstract": {"string", "number", "integer", "record", "array", "set", "map"},
    "transient": {"string", "number", "integer", "array", "set", "boolean"},
}

# Kong's ``required_attributes``.
_REQUIRED_ATTRIBUTES = {
    "array": ("elements",),
    "set": ("elements",),
    "map": ("keys", "values"),
    "record": ("fields",),
}


def check_schema(schema_fields: Any, path: str = "config") -> list[str]:
    """Check a field list as Kong's metaschema would; return problems (empty = fine).

    Follows ``MetaSchema.MetaSubSchema`` and ``check_field`` in Kong 3.9.3's
    ``kong/db/schema/metaschema.lua``: the field list shape; a known ``type`` (``"missing type
    declaration"`` without one); the attributes each type must declare (``elements``,
    ``keys``/``values``, ``fields``); unknown attributes (``"unknown field"``); the value of
    every attribute (``len_max`` an integer, ``between`` two numbers, ``match_none`` a list of
    ``{pattern, err}`` records, ``description`` 10-500 bytes, non-empty strings...); attributes
    not allowed on the type (``attribute_types``: ``match`` only on strings, ``between`` only on
    numbers...); ``unique_across_ws`` without ``unique``; and that each ``default`` validates
    against its own field (``default = { type = "self" }``). Everything recurses into
    ``elements``, ``keys``, ``values`` and record ``fields``; an array's ``elements`` may carry
    any attribute its type allows (``len_max``, ``match_all``...).

    One check Kong does not make: every Lua pattern (``match``, ``not_match``, the
    ``match_all``/``match_none`` rules, ``match_any.patterns``) must compile. Kong's metaschema
    only requires a string, and a malformed pattern makes ``string.match`` raise a Lua error
    when some value reaches the bad item; kongsim refuses it up front.
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
    if ftype is None:
        return [f"{path}: missing type declaration"]
    if ftype not in VALID_TYPES:
        return [f"{path}: invalid type: {ftype}"]
    problems: list[str] = []
    for attr, value in field.items():
        if attr not in _META_ATTRIBUTES:
            problems.append(f"{path}.{attr}: unknown field")
        elif attr in _META_VALUES:
            errs = _validate_field(_META_VALUES[attr], value, f"{path}.{attr}")
            problems.extend(str(e) for e in errs)
    for attr, types in _ATTRIBUTE_TYPES.items():
        if attr in field and ftype not in types:
            problems.append(f"{path}: field of type '{ftype}' cannot have attribute '{attr}'")
    if field.get("unique_across_ws") is True and field.get("unique") is not True:
        problems.append(
            f"{path}.unique: failed conditional validation given value of field 'unique_across_ws'"
        )
    problems.extend(_check_patterns(field, path))
    for required in _REQUIRED_ATTRIBUTES.get(str(ftype), ()):
        if not isinstance(field.get(required), Mapping | list | tuple):
            return [*problems, f"{path}: field of type '{ftype}' must declare '{required}'"]
    if ftype == "record":
        problems.extend(check_schema(field.get("fields"), path))
    for attr in ("elements", "keys", "values"):
        sub = field.get(attr)
        if sub is None:
            continue
        if not isinstance(sub, Mapping):
            problems.append(f"{path}: '{attr}' must be a table")
        else:
            problems.extend(_check_field(sub, f"{path}.{attr}"))
    default = field.get("default")
    if default is not None and not problems:
        errs = _validate_field({k: v for k, v in field.items() if k != "required"}, default, path)
        problems.extend(f"{e.path}: default value does not validate: {e.message}" for e in errs)
    return problems


def _check_patterns(field: Field, path: str) -> list[str]:
    """kongsim's extra check: every Lua pattern of ``field`` compiles."""
    patterns: list[tuple[str, Any]] = []
    for attr in ("match", "not_match"):
        if attr in field:
            patterns.append((attr, field[attr]))
    for attr in ("match_all", "match_none"):
        rules = field.get(attr)
        if isinstance(rules, list):
            patterns.extend(
                (f"{attr}.{i}.pattern", rule.get("pattern"))
                for i, rule in enumerate(rules, start=1)
                if isinstance(rule, Mapping)
            )
    match_any = field.get("match_any")
    if isinstance(match_any, Mapping) and isinstance(match_any.get("patterns"), list):
        patterns.extend(
            (f"match_any.patterns.{i}", p) for i, p in enumerate(match_any["patterns"], start=1)
        )
    problems = []
    for where, pattern in patterns:
        if not isinstance(pattern, str) or not pattern:
            continue  # reported by the attribute's own validation
        try:
            lua_match("", pattern)
        except ValueError as exc:
            problems.append(
                f"{path}.{where}: bad Lua pattern {pattern!r}: {exc} (Kong would raise it "
                "when validating a value)"
            )
    return problems
