"""kongsim.config.schema: Kong's schema language (defaults and validation), as a pure function."""

from __future__ import annotations

from typing import Any

import pytest

from kongsim.config.luapattern import lua_match
from kongsim.config.metaschema import check_schema
from kongsim.config.schema import validate


def errs(schema: list[Any], config: object) -> list[str]:
    return [str(e) for e in validate(schema, config)[1]]


def test_defaults_are_filled_recursively_for_required_records() -> None:
    schema = [
        {"ttl": {"type": "integer", "default": 30}},
        {"name": {"type": "string"}},
        {
            "redis": {
                "type": "record",
                "required": True,
                "fields": [
                    {"host": {"type": "string", "default": "127.0.0.1"}},
                    {"port": {"type": "integer", "default": 6379}},
                    {
                        "tls": {
                            "type": "record",
                            "required": True,
                            "fields": [
                                {"verify": {"type": "boolean", "default": True}},
                            ],
                        }
                    },
                ],
            }
        },
        {"tags": {"type": "array", "elements": {"type": "string"}, "default": ["a"]}},
    ]
    filled, errors = validate(schema, {})
    assert errors == []
    assert filled == {
        "ttl": 30,
        "name": None,
        "redis": {"host": "127.0.0.1", "port": 6379, "tls": {"verify": True}},
        "tags": ["a"],
    }


def test_partial_record_gets_its_nested_defaults() -> None:
    schema = [
        {
            "redis": {
                "type": "record",
                "fields": [
                    {"host": {"type": "string", "default": "h"}},
                    {"port": {"type": "integer", "default": 1}},
                ],
            }
        }
    ]
    filled, errors = validate(schema, {"redis": {"port": 2}})
    assert errors == []
    assert filled == {"redis": {"host": "h", "port": 2}}


def test_records_are_required_unless_they_say_otherwise_like_kong_entities() -> None:
    nested = {"fields": [{"host": {"type": "string", "default": "h"}}]}
    schema = [
        {"implicit": {"type": "record", **nested}},
        {"optional": {"type": "record", "required": False, **nested}},
    ]
    assert validate(schema, {})[0] == {"implicit": {"host": "h"}, "optional": None}
    assert errs(schema, {"implicit": None}) == ["config.implicit: required field missing"]


def test_record_default_is_copied_then_completed() -> None:
    schema = [
        {
            "r": {
                "type": "record",
                "default": {"a": 1},
                "fields": [{"a": {"type": "integer"}}, {"b": {"type": "integer", "default": 2}}],
            }
        }
    ]
    filled, errors = validate(schema, {})
    assert errors == []
    assert filled == {"r": {"a": 1, "b": 2}}


def test_explicit_null_is_kept_and_required_null_fails() -> None:
    schema = [{"a": {"type": "integer", "default": 5}}, {"b": {"type": "string", "required": True}}]
    filled, errors = validate(schema, {"a": None, "b": None})
    assert filled is not None and filled["a"] is None
    assert [str(e) for e in errors] == ["config.b: required field missing"]


def test_none_config_means_defaults() -> None:
    assert validate([{"a": {"type": "integer", "default": 1}}], None) == ({"a": 1}, [])


def test_not_a_record() -> None:
    assert errs([], [1]) == ["config: expected a record"]


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ({"type": "string"}, 5, "expected a string"),
        ({"type": "string"}, "", "length must be at least 1"),
        ({"type": "integer"}, 1.5, "expected an integer"),
        ({"type": "integer"}, True, "expected an integer"),
        ({"type": "number"}, "1", "expected a number"),
        ({"type": "boolean"}, "true", "expected a boolean"),
        ({"type": "array", "elements": {"type": "string"}}, "x", "expected an array"),
        ({"type": "set", "elements": {"type": "integer"}}, {"a": 1}, "expected a set"),
        (
            {"type": "map", "keys": {"type": "string"}, "values": {"type": "integer"}},
            [],
            "expected a map",
        ),
        ({"type": "record", "fields": []}, "x", "expected a record"),
        ({"type": "integer", "gt": 0}, 0, "value must be greater than 0"),
        ({"type": "number", "gt": 0.5}, 0.5, "value must be greater than 0.5"),
        ({"type": "integer", "between": [1, 10]}, 11, "value should be between 1 and 10"),
        ({"type": "string", "one_of": ["a", "b"]}, "c", "expected one of: a, b"),
        ({"type": "integer", "one_of": [1, 2]}, 3, "expected one of: 1, 2"),
        ({"type": "string", "len_min": 3}, "ab", "length must be at least 3"),
        ({"type": "string", "len_max": 2}, "abc", "length must be at most 2"),
        ({"type": "string", "len_max": 2}, "é", None),
        ({"type": "string", "len_max": 1}, "é", "length must be at most 1"),
        ({"type": "string", "len_eq": 2}, "abc", "length must be 2"),
        (
            {"type": "array", "elements": {"type": "string"}, "len_min": 1},
            [],
            "length must be at least 1",
        ),
        ({"type": "string", "match": "^[%w-]+$"}, "a b", "invalid value: a b"),
        ({"type": "string", "match": "^[%w-]+$"}, "ab-9", None),
        ({"type": "string", "not_match": "%s"}, "a b", "invalid value: a b"),
        ({"type": "string", "starts_with": "/"}, "x", "should start with: /"),
        ({"type": "string", "uuid": True}, "nope", "expected a valid UUID"),
        ({"type": "string", "is_regex": True}, "(", "not a valid regex: ("),
        ({"type": "string", "eq": "x"}, "y", "value must be x"),
        ({"type": "string", "ne": "x"}, "x", "value must not be x"),
        (
            {"type": "array", "elements": {"type": "string"}, "contains": "a"},
            ["b"],
            "expected to contain: a",
        ),
        ({"type": "string", "match_all": [{"pattern": "a", "err": "needs a"}]}, "b", "needs a"),
        ({"type": "string", "match_none": [{"pattern": "a", "err": "no a"}]}, "a", "no a"),
        ({"type": "string", "match_any": {"patterns": ["a", "b"], "err": "a or b"}}, "c", "a or b"),
        ({"type": "integer", "timestamp": True}, 0, "expected a valid timestamp"),
    ],
)
def test_every_attribute_kind(field: dict[str, object], value: object, message: str | None) -> None:
    got = errs([{"f": field}], {"f": value})
    assert got == ([] if message is None else [f"config.f: {message}"])


def test_errors_name_the_nested_field_path() -> None:
    schema = [
        {
            "redis": {
                "type": "record",
                "required": True,
                "fields": [
                    {
                        "timeouts": {
                            "type": "record",
                            "required": True,
                            "fields": [
                                {"connect": {"type": "integer", "gt": 0, "default": 1}},
                            ],
                        }
                    },
                ],
            }
        }
    ]
    assert errs(schema, {"redis": {"timeouts": {"connect": 0}}}) == [
        "config.redis.timeouts.connect: value must be greater than 0"
    ]
    assert errs(schema, {"redis": {"bogus": 1}}) == ["config.redis.bogus: unknown field"]


def test_unknown_and_required_fields_are_all_reported() -> None:
    schema = [{"a": {"type": "string", "required": True}}, {"b": {"type": "integer"}}]
    assert errs(schema, {"zz": 1, "b": "x"}) == [
        "config.a: required field missing",
        "config.b: expected an integer",
        "config.zz: unknown field",
    ]


def test_map_keys_and_values_are_validated() -> None:
    schema = [
        {
            "m": {
                "type": "map",
                "keys": {"type": "string", "match": "^x"},
                "values": {"type": "integer", "gt": 0},
            }
        }
    ]
    assert errs(schema, {"m": {"xa": 1}}) == []
    assert errs(schema, {"m": {"ya": 1}}) == ["config.m: invalid value: ya"]
    assert errs(schema, {"m": {"xa": 0}}) == ["config.m: value must be greater than 0"]


def test_sets_are_deduplicated_and_integral_floats_become_ints() -> None:
    schema = [
        {"s": {"type": "set", "elements": {"type": "string"}}},
        {"i": {"type": "integer"}},
        {"n": {"type": "number"}},
    ]
    filled, errors = validate(schema, {"s": ["a", "b", "a"], "i": 5.0, "n": 2.0})
    assert errors == []
    assert filled == {"s": ["a", "b"], "i": 5, "n": 2}
    assert isinstance(filled["i"], int)


def test_array_elements_are_filled_and_every_bad_element_is_reported() -> None:
    schema = [
        {
            "rules": {
                "type": "array",
                "elements": {
                    "type": "record",
                    "fields": [
                        {"path": {"type": "string", "required": True}},
                        {"ttl": {"type": "integer", "default": 5}},
                    ],
                },
            }
        }
    ]
    filled, errors = validate(schema, {"rules": [{"path": "/a"}]})
    assert errors == [] and filled == {"rules": [{"path": "/a", "ttl": 5}]}
    assert errs(schema, {"rules": [{"path": "/a"}, {"ttl": 1}, {"path": 3}]}) == [
        "config.rules.2.path: required field missing",
        "config.rules.3.path: expected a string",
    ]
    strings = [{"s": {"type": "array", "elements": {"type": "string"}}}]
    assert errs(strings, {"s": ["a", 1, ""]}) == [
        "config.s.2: expected a string",
        "config.s.3: length must be at least 1",
    ]


def test_referenceable_and_encrypted_are_ignored() -> None:
    schema = [
        {"pw": {"type": "string", "referenceable": True, "encrypted": True, "description": "x"}}
    ]
    assert validate(schema, {"pw": "secret"}) == ({"pw": "secret"}, [])


def test_input_is_not_modified() -> None:
    config = {"r": {"a": 1}}
    schema = [
        {
            "r": {
                "type": "record",
                "fields": [{"a": {"type": "integer"}}, {"b": {"type": "integer", "default": 2}}],
            }
        }
    ]
    validate(schema, config)
    assert config == {"r": {"a": 1}}


def test_check_schema_reports_what_kongs_metaschema_refuses() -> None:
    assert check_schema([{"a": {"type": "string", "description": "ten chars!"}}]) == []
    assert check_schema([{"a": {"type": "strin"}}]) == ["config.a: invalid type: strin"]
    assert check_schema([{"a": {"type": "array"}}]) == [
        "config.a: field of type 'array' must declare 'elements'"
    ]
    assert check_schema([{"a": {"type": "integer", "default": "x"}}]) == [
        "config.a: default value does not validate: expected an integer"
    ]
    assert check_schema([{"a": {"type": "string", "desc": "typo"}}]) == [
        "config.a.desc: unknown field"
    ]
    assert check_schema([{"a": {"type": "string", "between": [1, 2]}}]) == [
        "config.a: field of type 'string' cannot have attribute 'between'"
    ]
    assert check_schema([{"a": {"type": "string", "description": "short"}}]) == [
        "config.a.description: length must be at least 10"
    ]
    assert check_schema({"a": 1}) == ["config: 'fields' must be an array"]


def test_not_one_of() -> None:
    field = {"type": "string", "not_one_of": ["a", "b"]}
    assert errs([{"f": field}], {"f": "a"}) == ["config.f: must not be one of: a, b"]


@pytest.mark.parametrize(
    ("value", "pattern", "matches"),
    [
        ("abc", "^%a+$", True),
        ("ab1", "^%a+$", False),
        ("a.b", "a%.b", True),
        ("axb", "a%.b", False),
        ("x-y", "^[%w%-]+$", True),
        ("hello world", "o w", True),
        ("aaa", "^a-$", True),
        ("/path/x", "^/[^/]+/", True),
        ("aab", "^(a)%1b$", True),
        ("A", "^%u$", True),
        ("é", "^.$", False),  # bytes: é is two
        ("é", "^..$", True),
    ],
)
def test_lua_patterns(value: str, pattern: str, matches: bool) -> None:
    assert lua_match(value, pattern) is matches


def test_unsupported_lua_pattern_items_raise() -> None:
    with pytest.raises(ValueError, match="%b"):
        lua_match("(x)", "%b()")


# --- Kong 3.9.3 details (kong/db/schema/init.lua, metaschema.lua; LuaJIT's lib_string.c) ---


def test_empty_object_for_an_array_is_an_empty_array_like_kongs_is_sequence() -> None:
    schema = [
        {"a": {"type": "array", "elements": {"type": "string"}, "default": ["x"]}},
        {"s": {"type": "set", "elements": {"type": "string"}}},
        {"n": {"type": "array", "elements": {"type": "string"}, "len_min": 1}},
    ]
    assert validate(schema, {"a": {}, "s": {}}) == ({"a": [], "s": [], "n": None}, [])
    assert errs(schema, {"n": {}}) == ["config.n: length must be at least 1"]
    assert errs(schema, {"a": {"k": "v"}}) == ["config.a: expected an array"]


def test_a_fields_err_replaces_any_validator_message_but_not_type_or_required() -> None:
    field = {"type": "string", "len_max": 3, "match": "^a", "err": "must be short and start a"}
    assert errs([{"f": field}], {"f": "abcd"}) == ["config.f: must be short and start a"]
    assert errs([{"f": field}], {"f": "b"}) == ["config.f: must be short and start a"]
    assert errs([{"f": field}], {"f": 5}) == ["config.f: expected a string"]
    required = {**field, "required": True}
    assert errs([{"f": required}], {"f": None}) == ["config.f: required field missing"]
    elements = {"type": "array", "elements": {"type": "string", "match": "^a", "err": "no a"}}
    assert errs([{"f": elements}], {"f": ["a", "b"]}) == ["config.f.2: no a"]


def test_match_rules_without_err_say_invalid_value() -> None:
    rules: dict[str, Any] = {
        "match_all": [{"pattern": "^a"}],
        "match_none": [{"pattern": "b"}],
        "match_any": {"patterns": ["^x", "^y"]},
    }
    for attr, rule in rules.items():
        assert errs([{"f": {"type": "string", attr: rule}}], {"f": "zb"}) == [
            "config.f: invalid value: zb"
        ], attr


def test_match_validators_run_in_kongs_order_and_stop_at_the_first_failure() -> None:
    field = {
        "type": "string",
        "len_max": 5,
        "not_match": "x",
        "match_none": [{"pattern": "y", "err": "no y"}],
        "match": "^a",
        "match_all": [{"pattern": "b$", "err": "ends with b"}],
        "match_any": {"patterns": ["^ab$"], "err": "only ab"},
    }
    cases = {
        "abxyzzz": "length must be at most 5",
        "axyb": "invalid value: axyb",
        "ayb": "no y",
        "cb": "invalid value: cb",
        "ac": "ends with b",
        "aab": "only ab",
        "ab": None,
    }
    for value, message in cases.items():
        expected = [] if message is None else [f"config.f: {message}"]
        assert errs([{"f": field}], {"f": value}) == expected, value


def test_validators_run_whenever_the_attribute_is_present() -> None:
    """Kong checks ``field[k] ~= nil``: ``uuid = false`` still validates a UUID."""
    assert errs([{"f": {"type": "string", "uuid": False}}], {"f": "x"}) == [
        "config.f: expected a valid UUID"
    ]


def test_eq_null_refuses_any_value() -> None:
    assert errs([{"f": {"type": "string", "eq": None}}], {"f": "x"}) == [
        "config.f: value must be null"
    ]
    assert errs([{"f": {"type": "string", "eq": None}}], {}) == []


def test_mutually_exclusive_subsets() -> None:
    field = {
        "type": "set",
        "elements": {"type": "string"},
        "mutually_exclusive_subsets": [["http", "https"], ["tcp", "tls"]],
    }
    assert errs([{"f": field}], {"f": ["http", "https", "x"]}) == []
    assert errs([{"f": field}], {"f": ["tls", "http"]}) == [
        "config.f: these sets are mutually exclusive: ('tcp', 'tls'), ('http', 'https')"
    ]


@pytest.mark.parametrize(
    ("field", "problem"),
    [
        ({"len_max": "5"}, "config.a.len_max: expected an integer"),
        ({"len_min": 1.5}, "config.a.len_min: expected an integer"),
        ({"type": "integer", "between": [1, 2, 3]}, "config.a.between: length must be 2"),
        ({"type": "integer", "between": [1, "2"]}, "config.a.between.2: expected a number"),
        ({"type": "integer", "gt": "0"}, "config.a.gt: expected a number"),
        ({"match": 5}, "config.a.match: expected a string"),
        ({"match": ""}, "config.a.match: length must be at least 1"),
        ({"err": ""}, "config.a.err: length must be at least 1"),
        ({"required": "yes"}, "config.a.required: expected a boolean"),
        ({"one_of": "a"}, "config.a.one_of: expected an array"),
        ({"match_none": [{"err": "x"}]}, "config.a.match_none.1.pattern: required field missing"),
        ({"match_all": [{"pattern": "a", "msg": "x"}]}, "config.a.match_all.1.msg: unknown field"),
        ({"match_all": {"pattern": "a"}}, "config.a.match_all: expected an array"),
        ({"match_any": {"err": "x"}}, "config.a.match_any.patterns: required field missing"),
        ({"match_any": {"patterns": [""]}}, "config.a.match_any.patterns.1: length must be at "
         "least 1"),
        ({"description": "x" * 501}, "config.a.description: length must be at most 500"),
        ({"unique_across_ws": True}, "config.a.unique: failed conditional validation given "
         "value of field 'unique_across_ws'"),
    ],
)  # fmt: skip
def test_check_schema_validates_attribute_values_like_kongs_metaschema(
    field: dict[str, Any], problem: str
) -> None:
    assert check_schema([{"a": {"type": "string", **field}}]) == [problem]


def test_check_schema_attribute_types_and_declarations() -> None:
    assert check_schema([{"a": {"type": "integer", "match": "^1"}}]) == [
        "config.a: field of type 'integer' cannot have attribute 'match'"
    ]
    assert check_schema([{"a": {"type": "boolean", "one_of": [True]}}]) == [
        "config.a: field of type 'boolean' cannot have attribute 'one_of'"
    ]
    assert check_schema([{"a": {"default": 1}}]) == ["config.a: missing type declaration"]
    bad_elements = {"type": "array", "elements": {"type": "integer", "uuid": True}}
    assert check_schema([{"a": bad_elements}]) == [
        "config.a.elements: field of type 'integer' cannot have attribute 'uuid'"
    ]
    # Kong restricts only match/len_eq/... by type: match_* and len_* are fine on elements.
    elements = {
        "type": "string",
        "len_max": 8,
        "match_all": [{"pattern": "^%w+$", "err": "word"}],
        "match_none": [{"pattern": "x"}],
        "match_any": {"patterns": ["a", "b"]},
    }
    assert check_schema([{"a": {"type": "array", "elements": elements, "len_max": 3}}]) == []


def test_check_schema_validates_the_default_with_every_attribute() -> None:
    field = {
        "type": "string",
        "default": "b",
        "match_all": [{"pattern": "^a", "err": "must start with a"}],
    }
    assert check_schema([{"a": field}]) == [
        "config.a: default value does not validate: must start with a"
    ]
    array = {
        "type": "array",
        "default": ["ok", "no way"],
        "elements": {"type": "string", "match_none": [{"pattern": " ", "err": "no spaces"}]},
    }
    assert check_schema([{"a": array}]) == [
        "config.a.2: default value does not validate: no spaces"
    ]


def test_check_schema_refuses_malformed_lua_patterns_up_front() -> None:
    """Kong would raise only when a value reaches the bad item; kongsim says so at once."""
    for attr, value, where in [
        ("match", "[a", "match"),
        ("not_match", "%", "not_match"),
        ("match_none", [{"pattern": "ok"}, {"pattern": "(a"}], "match_none.2.pattern"),
        ("match_all", [{"pattern": "a%1"}], "match_all.1.pattern"),
        ("match_any", {"patterns": ["a", "b)"]}, "match_any.patterns.2"),
    ]:
        problems = check_schema([{"a": {"type": "string", attr: value}}])
        assert len(problems) == 1 and problems[0].startswith(f"config.a.{where}: bad Lua pattern")


@pytest.mark.parametrize(
    ("value", "pattern", "matches"),
    [
        # a search unless anchored; ^ and $ are anchors only at the ends of the pattern
        ("xaby", "ab", True),
        ("xab", "^ab", False),
        ("a^b", "a^b", True),
        ("a$b", "a$b", True),
        ("ab\n", "^ab$", False),
        # classes are LuaJIT's ASCII tables, on bytes
        ("\x0b", "^%s$", True),
        ("\x85", "%s", False),
        ("\x7f", "^%c$", True),
        ("~", "^%p$", True),
        ("_", "^%w$", False),
        ("é", "%a", False),
        ("é", "^%A%A$", True),
        ("a b", "^%g+$", False),
        ("F", "^%x$", True),
        ("G", "^%x$", False),
        ("\x00", "^%z$", True),
        ("a", "^%Z$", True),
        # % before a non-alphanumeric character is that character
        ("a%b", "^a%%b$", True),
        ("a-b", "^a%-b$", True),
        # sets
        ("]", "^[]]$", True),
        ("a", "^[^]]$", True),
        ("-", "^[a-]$", True),
        ("b", "^[a-]$", False),
        ("-", "^[%a-z]$", True),
        ("5", "^[%a-z]$", False),
        ("!", "^[!-~]+$", True),
        ("a b", "^[!-~]+$", False),
        ("é", "^[^,]+$", True),
        ("a", "^[%W]$", False),
        ("%", "^[%%]$", True),
        ("b", "^[z-a]$", False),  # an empty range
        # quantifiers apply to one item; after ')' or a back-reference they are literals
        ("aaa", "^a*$", True),
        ("", "^a*$", True),
        ("", "^a+$", False),
        ("ab", "^a?b$", True),
        ("b", "^a?b$", True),
        ("a*", "^(a)*$", True),
        ("aa", "^(a)*$", False),
        ("aa*", "^(a)%1*$", True),
        ("éé", "^é+$", False),  # + repeats the last byte of é only
        ("é".encode() + b"\xa9", "^é+$", True),
        # lazy '-' still has to reach the end
        ("abc", "^a.-c$", True),
        # captures, position captures, back-references
        ("abab", "^(ab)%1$", True),
        ("abac", "^(ab)%1$", False),
        ("xa", "()a", True),
        ("aa", "^()a%1a$", False),
        # frontier: previous byte (NUL at the start) outside the set, current one inside
        ("THE (quick) fox", "%f[%a]%a%a%a%f[%A]", True),
        ("abc", "%f[%a]bc", False),
        ("abc", "^%f[%a]abc", True),
        ("ab", "b%f[%z]", True),
    ],
)
def test_lua_pattern_semantics(value: str | bytes, pattern: str, matches: bool) -> None:
    assert lua_match(value, pattern) is matches


@pytest.mark.parametrize(
    ("pattern", "message"),
    [
        ("a%", "malformed pattern (ends with '%')"),
        ("[a", "malformed pattern (missing ']')"),
        ("[]", "malformed pattern (missing ']')"),
        ("[%]", "malformed pattern (missing ']')"),
        ("(a", "unfinished capture"),
        ("a)", "invalid pattern capture"),
        ("%1", "invalid capture index"),
        ("(a%1)", "invalid capture index"),
        ("(a)%0", "invalid capture index"),
        ("%fa", "missing '[' after '%f' in pattern"),
        ("(.)" * 33, "too many captures"),
    ],
)
def test_malformed_lua_patterns_raise_luajits_message(pattern: str, message: str) -> None:
    with pytest.raises(ValueError) as info:
        lua_match("a", pattern)
    assert str(info.value) == message
