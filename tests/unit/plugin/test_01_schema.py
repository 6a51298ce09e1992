"""The config schema: Kong's schema language, a superset of proxy-cache's fields."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from kong_plugin.errors import ConfigError
from kong_plugin.schema import (
    MAX_ADDRESS,
    MAX_LIST,
    PLUGIN_NAME,
    SCHEMA,
    apply_schema,
    dump_schema,
    field_names,
    find_field,
    plugin_schema,
)
from kongsim.config.metaschema import check_schema

# Attributes Kong's metaschema accepts that this schema may use, and the types each may
# appear on (kong/db/schema/metaschema.lua).
ALLOWED = {
    "type",
    "default",
    "required",
    "one_of",
    "between",
    "gt",
    "len_min",
    "len_max",
    "match_all",
    "match_none",
    "match_any",
    "elements",
    "fields",
    "description",
    "keys",
    "values",
    "err",  # field_schema's `err`: replaces a failing validator's message
}
ONLY_ON = {
    "between": {"integer", "number"},
    "gt": {"integer", "number"},
    "one_of": {"string", "integer", "number"},
    "len_min": {"string", "array", "set", "map"},
    "len_max": {"string", "array", "set", "map"},
    "elements": {"array", "set"},
    "fields": {"record"},
    # Kong's metaschema allows match_* on any type, but Lua's value:match needs a string.
    "match_all": {"string"},
    "match_none": {"string"},
    "match_any": {"string"},
}

# Kong proxy-cache config fields and their defaults (anchors.md §1.1, schema.lua).
KONG_FIELDS: dict[str, Any] = {
    "response_code": [200, 301, 404],
    "request_method": ["GET", "HEAD"],
    "content_type": ["text/plain", "application/json"],
    "cache_ttl": 300,
    "cache_control": False,
    "ignore_uri_case": False,
    "storage_ttl": None,
    "vary_query_params": None,
    "vary_headers": None,
}


def walk(fields: list[dict[str, Any]], prefix: str = ""):
    for entry in fields:
        ((name, spec),) = entry.items()
        yield f"{prefix}{name}", spec
        if spec["type"] == "record":
            yield from walk(spec["fields"], f"{prefix}{name}.")


ALL_FIELDS = list(walk(SCHEMA))


@pytest.mark.parametrize(("path", "spec"), ALL_FIELDS, ids=[p for p, _ in ALL_FIELDS])
def test_every_field_has_a_metaschema_valid_description(path, spec):
    """Kong's metaschema: description is a string of 10-500 characters."""
    assert isinstance(spec.get("description"), str), path
    assert 10 <= len(spec["description"]) <= 500, path


@pytest.mark.parametrize(("path", "spec"), ALL_FIELDS, ids=[p for p, _ in ALL_FIELDS])
def test_only_metaschema_attributes_on_the_right_types(path, spec):
    def check(s: dict[str, Any], where: str) -> None:
        assert set(s) <= ALLOWED, f"{where}: {set(s) - ALLOWED}"
        for attr, types in ONLY_ON.items():
            if attr in s:
                assert s["type"] in types, f"{where}: {attr} on {s['type']}"
        if s["type"] == "array":
            assert "elements" in s, f"{where}: an array must declare elements"
            check(s["elements"], f"{where}[]")
        if s["type"] == "record":
            assert "fields" in s, f"{where}: a record must declare fields"
        if "between" in s:
            assert len(s["between"]) == 2

    check(spec, path)


@pytest.mark.parametrize(("path", "spec"), ALL_FIELDS, ids=[p for p, _ in ALL_FIELDS])
def test_every_field_has_a_default_or_is_explicitly_optional(path, spec):
    assert "default" in spec or spec["type"] == "record" or not spec.get("required"), path
    if "default" in spec and "one_of" in spec:
        assert spec["default"] in spec["one_of"]


@pytest.mark.parametrize(("name", "default"), list(KONG_FIELDS.items()))
def test_superset_of_proxy_cache_with_the_same_defaults(name, default):
    """A proxy-cache config keeps its meaning when the plugin name changes."""
    assert name in field_names()
    assert apply_schema(SCHEMA, {})[name] == default


def test_proxy_cache_response_headers_record_defaults():
    rh = apply_schema(SCHEMA, {})["response_headers"]
    assert rh["age"] is True
    assert rh["X-Cache-Status"] is True
    assert rh["X-Cache-Key"] is True


def test_proxy_cache_memory_record_is_accepted():
    """proxy-cache configs carry memory.dictionary_name; Kong rejects unknown fields."""
    assert find_field("memory.dictionary_name")["default"] == "kong_db_cache"
    out = apply_schema(SCHEMA, {"memory": {"dictionary_name": "my_dict"}})
    assert out["memory"]["dictionary_name"] == "my_dict"


def test_strategy_is_optional_and_accepts_proxy_caches_memory():
    spec = find_field("strategy")
    assert not spec.get("required")
    assert spec["default"] == "strata"
    assert apply_schema(SCHEMA, {"strategy": "memory"})["strategy"] == "memory"
    with pytest.raises(ConfigError, match=r"^strategy:"):
        apply_schema(SCHEMA, {"strategy": "redis"})


def test_strata_defaults():
    out = apply_schema(SCHEMA, {})
    assert out["sidecar"] == {
        "address": "unix:/run/strata/sidecar.sock",
        "timeout_ms": 50,
        "uid": None,
    }
    assert out["stale_while_revalidate"] == 0
    assert out["stale_if_error"] == 0
    assert out["tags"] == []
    assert out["tag_headers"] == ["Surrogate-Key", "Cache-Tag"]
    assert out["invalidate_on_write"] is True
    assert out["ignore_query_params"] == []
    assert out["consumer_scope"] == "auto"
    assert out["max_body_bytes"] == 1048576
    assert out["coalesce_wait_ms"] == 5000
    assert out["cache_status_name"] == "strata"


def test_sidecar_address_default_equals_the_sidecars_listen_default():
    sidecar_config = pytest.importorskip("sidecar.config")
    listen = getattr(sidecar_config, "DEFAULT_LISTEN", None)
    if listen is None:
        pytest.skip("sidecar.config has no DEFAULT_LISTEN")
    assert find_field("sidecar.address")["default"] == listen


def test_plugin_schema_wraps_fields_in_a_config_record_as_kong_pdk_does():
    wrapped = plugin_schema()
    assert wrapped["name"] == PLUGIN_NAME == "strata-cache"
    ((key, config),) = wrapped["fields"][0].items()
    assert key == "config"
    assert config == {"type": "record", "fields": SCHEMA}
    assert json.loads(dump_schema()) == json.loads(json.dumps(wrapped))


def test_handler_can_export_schema_as_kong_pdk_expects():
    """kong-pdk reads a module-level list of one-key dicts."""
    module = importlib.import_module("kong_plugin.schema")
    assert isinstance(module.SCHEMA, list)
    assert all(isinstance(e, dict) and len(e) == 1 for e in module.SCHEMA)


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        ({"cache_ttl": 0}, "cache_ttl"),
        ({"cache_ttl": True}, "cache_ttl"),
        ({"cache_ttl": "300"}, "cache_ttl"),
        ({"response_code": []}, "response_code"),
        ({"response_code": [200, 99]}, "response_code[1]"),
        ({"request_method": ["GET", "DELETE"]}, "request_method[1]"),
        ({"cache_control": "yes"}, "cache_control"),
        ({"sidecar": {"timeout_ms": 0}}, "sidecar.timeout_ms"),
        ({"sidecar": "unix:/x"}, "sidecar"),
        ({"consumer_scope": "sometimes"}, "consumer_scope"),
        ({"tags": "a"}, "tags"),
        ({"storage_ttl": 0}, "storage_ttl"),
        ({"coalesce_wait_ms": 60001}, "coalesce_wait_ms"),
    ],
)
def test_invalid_values_name_the_field(raw, field):
    with pytest.raises(ConfigError) as err:
        apply_schema(SCHEMA, raw)
    assert err.value.field == field
    assert str(err.value).startswith(f"{field}: ")


def test_null_takes_the_default_as_kong_sends_unset_fields_as_null():
    out = apply_schema(SCHEMA, {"cache_ttl": None, "storage_ttl": None})
    assert out["cache_ttl"] == 300
    assert out["storage_ttl"] is None


def test_empty_json_object_is_an_empty_array():
    """cjson cannot tell {} from []: an empty Lua table may arrive as {}."""
    assert apply_schema(SCHEMA, {"tags": {}})["tags"] == []


def test_integral_float_is_an_integer():
    assert apply_schema(SCHEMA, {"cache_ttl": 60.0})["cache_ttl"] == 60
    with pytest.raises(ConfigError):
        apply_schema(SCHEMA, {"cache_ttl": 60.5})


def test_defaults_are_not_shared_between_configs():
    first = apply_schema(SCHEMA, {})
    first["tag_headers"].append("X")
    assert apply_schema(SCHEMA, {})["tag_headers"] == ["Surrogate-Key", "Cache-Tag"]


def test_kongs_metaschema_accepts_the_schema():
    """kongsim's emulation of MetaSchema.MetaSubSchema (kong/db/schema/metaschema.lua)."""
    assert check_schema(SCHEMA) == []
    assert check_schema(plugin_schema()["fields"]) == []


def test_dump_prints_the_schema_as_json_for_kong():
    """Kong reads ``python -m kong_plugin --dump`` with cjson (plugin_servers/process.lua)."""
    root = Path(__file__).resolve().parents[3]
    out = subprocess.run(
        [sys.executable, "-m", "kong_plugin", "--dump"],
        cwd=root,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    (info,) = json.loads(out)
    assert info["Name"] == PLUGIN_NAME
    assert info["Schema"] == json.loads(json.dumps(plugin_schema()))
    assert check_schema(info["Schema"]["fields"][0]["config"]["fields"]) == []


@pytest.mark.parametrize(("path", "spec"), ALL_FIELDS, ids=[p for p, _ in ALL_FIELDS])
def test_no_string_or_list_is_unbounded(path, spec):
    """Every list has a len_max; every string a len_max or a closed one_of."""

    def check(s: dict[str, Any], where: str) -> None:
        if s["type"] == "array":
            assert s.get("len_max") == MAX_LIST, where
            check(s["elements"], f"{where}[]")
        if s["type"] == "string":
            assert "one_of" in s or s.get("len_max", MAX_ADDRESS + 1) <= MAX_ADDRESS, where

    check(spec, path)


def test_strings_are_non_empty_and_measured_in_bytes_like_kong():
    """Kong's validate_field: len_min 1 by default; Lua's # counts bytes."""
    with pytest.raises(ConfigError, match=r"^memory.dictionary_name: length must be at least 1"):
        apply_schema(SCHEMA, {"memory": {"dictionary_name": ""}})
    assert apply_schema(SCHEMA, {"tags": ["t" * 256]})["tags"] == ["t" * 256]
    with pytest.raises(ConfigError, match=r"^tags\[0\]: length must be at most 256"):
        apply_schema(SCHEMA, {"tags": ["\u00e9" * 129]})  # 258 bytes, 129 characters


def test_apply_schema_leaves_lua_patterns_to_parse_config():
    """apply_schema does not evaluate match_* (documented); parse_config does."""
    assert apply_schema(SCHEMA, {"vary_headers": ["X Bad"]})["vary_headers"] == ["X Bad"]
