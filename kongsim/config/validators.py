"""Kong's field validators (``Schema.validators`` in ``kong/db/schema/init.lua``), one function
each, in Kong's ``validators_order``, with the Lua value helpers they share.

Each validator returns ``None`` when the value passes, else Kong's message. ``is_regex`` uses
Python's ``re`` (Kong uses PCRE); ``match``-family patterns are Lua patterns on bytes
(:mod:`kongsim.config.luapattern`).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from typing import Any

from kongsim.config.luapattern import lua_match

Field = Mapping[str, Any]

_UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$", re.I)


def is_integral_float(value: Any) -> bool:
    return isinstance(value, float) and math.isfinite(value) and value.is_integer()


def is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def lua_tostring(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if is_integral_float(value):
        return str(int(value))
    if value is None:
        return "null"
    return str(value)


def lua_length(value: Any) -> int:
    if isinstance(value, str):
        return len(value.encode("utf-8"))
    return len(value)


Validator = Callable[[Any, Any, Field], "str | None"]


def _v_eq(value: Any, wanted: Any, _f: Field) -> str | None:
    return None if value == wanted else f"value must be {lua_tostring(wanted)}"


def _v_ne(value: Any, wanted: Any, _f: Field) -> str | None:
    return None if value != wanted else f"value must not be {lua_tostring(value)}"


def _v_not_one_of(value: Any, options: Any, _f: Field) -> str | None:
    if any(value == opt and type(value) is type(opt) for opt in options):
        return "must not be one of: " + ", ".join(lua_tostring(o) for o in options)
    return None


def _v_one_of(value: Any, options: Any, _f: Field) -> str | None:
    if any(value == opt and type(value) is type(opt) for opt in options):
        return None
    if is_int(value) and any(value == opt for opt in options if not isinstance(opt, bool)):
        return None
    return "expected one of: " + ", ".join(lua_tostring(o) for o in options)


def _v_gt(value: Any, limit: Any, _f: Field) -> str | None:
    return None if value > limit else f"value must be greater than {lua_tostring(limit)}"


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
    return None if lua_length(value) == n else f"length must be {int(n)}"


def _v_len_min(value: Any, n: Any, _f: Field) -> str | None:
    return None if lua_length(value) >= n else f"length must be at least {int(n)}"


def _v_len_max(value: Any, n: Any, _f: Field) -> str | None:
    return None if lua_length(value) <= n else f"length must be at most {int(n)}"


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
    return None if wanted in value else f"expected to contain: {lua_tostring(wanted)}"


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
        "(" + ", ".join(f"'{lua_tostring(w)}'" for w in subsets[i]) + ")" for i in member_of
    )
    return f"these sets are mutually exclusive: {listed}"


def _v_custom(value: Any, fn: Any, _f: Field) -> str | None:
    ok, err = fn(value)
    if ok:
        return None
    return str(err or f"failed validating: {value}")


VALIDATORS: dict[str, Validator] = {
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
VALIDATORS_ORDER = (
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
