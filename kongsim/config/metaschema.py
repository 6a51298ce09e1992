"""Checking a plugin's schema itself, as Kong's metaschema does for an external plugin's dump.

:func:`check_schema` follows ``MetaSchema.MetaSubSchema`` (``kong/db/schema/metaschema.lua``),
which ``plugin_loader.load_subschema`` applies; see its docstring for what it checks and for
the one check kongsim adds (Lua patterns must compile).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kongsim.config.luapattern import lua_match
from kongsim.config.schema import VALID_TYPES, field_items, join_path, validate_field
from kongsim.config.validators import Field

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
        problems.extend(_check_field(field, join_path(path, name)))
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
            errs = validate_field(_META_VALUES[attr], value, f"{path}.{attr}")
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
        errs = validate_field({k: v for k, v in field.items() if k != "required"}, default, path)
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
