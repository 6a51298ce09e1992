"""Typed config: defaults from the one schema, cross-field checks, precompiled matchers."""

from __future__ import annotations

import dataclasses

import pytest

from kong_plugin.config import PluginConfig, parse_config
from kong_plugin.errors import ConfigError
from kong_plugin.mime import MediaRange
from kong_plugin.schema import SCHEMA, apply_schema


def test_defaults_come_from_the_schema():
    """Every scalar/array default of the schema shows up unchanged on PluginConfig."""
    c = parse_config({})
    defaults = apply_schema(SCHEMA, {})
    for name, value in defaults.items():
        if isinstance(value, dict):
            continue
        got = getattr(c, name)
        expected = tuple(value) if isinstance(value, list) else value
        assert got == expected, name
    assert c.sidecar.address == defaults["sidecar"]["address"]
    assert c.sidecar.timeout_ms == defaults["sidecar"]["timeout_ms"]
    assert c.response_headers.x_cache_key is True
    assert c.response_headers.cache_status is True
    assert c.memory_dictionary_name == "kong_db_cache"


def test_config_is_frozen():
    c = parse_config({})
    with pytest.raises(dataclasses.FrozenInstanceError):
        c.cache_ttl = 1  # type: ignore[misc]


def test_kong_iterator_keys_are_ignored():
    """Kong adds route_id, __seq__ ... to every config map (pluginserver reference §7.1)."""
    raw = {
        "route_id": "r1",
        "service_id": "s1",
        "consumer_id": None,
        "__key__": "k",
        "__seq__": 3,
        "__plugin_id": "p",
        "__ws_id": "w",
        "plugin_instance_name": "x",
        "__future_thing": 1,
    }
    c = parse_config(raw, strict=True)
    assert c.warnings == ()


def test_unknown_field_is_a_warning_or_a_strict_error():
    assert any("cache_tll" in w for w in parse_config({"cache_tll": 5}).warnings)
    with pytest.raises(ConfigError, match=r"^cache_tll: unknown field"):
        parse_config({"cache_tll": 5}, strict=True)


def test_kong_shaped_json_with_nulls_parses():
    raw = {
        "response_code": [200],
        "request_method": ["GET"],
        "content_type": ["*/*"],
        "cache_ttl": 10,
        "strategy": "memory",
        "cache_control": True,
        "ignore_uri_case": False,
        "storage_ttl": None,
        "memory": {"dictionary_name": "d"},
        "vary_query_params": None,
        "vary_headers": None,
        "response_headers": {"age": True, "X-Cache-Status": False, "X-Cache-Key": True},
    }
    c = parse_config(raw)
    assert c.cache_control is True
    assert c.response_headers.x_cache_status is False
    assert c.response_headers.cache_status is True  # Strata's field, defaulted
    assert c.storage_ttl is None


def test_storage_ttl_must_not_be_shorter_than_cache_ttl():
    with pytest.raises(ConfigError) as err:
        parse_config({"cache_ttl": 300, "storage_ttl": 60})
    assert err.value.field == "storage_ttl"
    assert "cache_ttl" in str(err.value)
    assert parse_config({"cache_ttl": 300, "storage_ttl": 300}).storage_ttl == 300


def test_vary_and_ignore_query_params_may_not_overlap():
    with pytest.raises(ConfigError) as err:
        parse_config(
            {"vary_query_params": ["page", "utm_source"], "ignore_query_params": ["utm_*"]}
        )
    assert err.value.field == "vary_query_params"
    assert "utm_source" in str(err.value)
    assert "ignore_query_params" in str(err.value)
    parse_config({"vary_query_params": ["page"], "ignore_query_params": ["utm_*"]})


@pytest.mark.parametrize(
    "address",
    [
        "unix:/tmp/strata-sidecar.sock",
        "unix:///run/strata.sock",
        "127.0.0.1:50051",
        "sidecar.internal:9000",
        "[::1]:50051",
        "localhost:1",
        "localhost:65535",
        "unix:/srv/caf\u00e9.sock",
    ],
)
def test_sidecar_address_accepted(address):
    assert parse_config({"sidecar": {"address": address}}).sidecar.address == address


@pytest.mark.parametrize(
    "address",
    [
        "unix:relative.sock",
        "unix://host/x",
        "localhost",
        "localhost:0",
        "host:65536",
        "http://host:80",
        ":80",
        "host:port",
        "unix:/",
        "unix:/tmp/my sock",
        "unix:/tmp/x\x01",
        " localhost:80",
        "my host:80",
        "host:123456",
        "[::1]:0",
    ],
)
def test_sidecar_address_rejected(address):
    with pytest.raises(ConfigError) as err:
        parse_config({"sidecar": {"address": address}})
    assert err.value.field == "sidecar.address"


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        ({"content_type": ["application/json", "json"]}, "content_type[1]"),
        ({"vary_headers": ["Accept Encoding"]}, "vary_headers[0]"),
        ({"tag_headers": ["Surrogate Key"]}, "tag_headers[0]"),
        ({"tags": ["a b"]}, "tags[0]"),
        ({"tags": ["a,b"]}, "tags[0]"),
        ({"tags": ["caf\u00e9"]}, "tags[0]"),
        ({"cache_status_name": "1cache"}, "cache_status_name"),
        ({"cache_status_name": "my cache"}, "cache_status_name"),
        ({"content_type": ["\n*"]}, "content_type[0]"),
        ({"vary_headers": ["Accept", "Accept", "X Bad"]}, "vary_headers[2]"),
        ({"vary_query_params": ["a\nb"]}, "vary_query_params[0]"),
        ({"ignore_query_params": ["utm_*", "x\ty"]}, "ignore_query_params[1]"),
    ],
)
def test_cross_field_and_format_errors_name_the_field(raw, field):
    with pytest.raises(ConfigError) as err:
        parse_config(raw)
    assert err.value.field == field


def test_kong_allows_unsafe_methods_in_request_method_with_a_warning():
    c = parse_config({"request_method": ["GET", "POST"]})
    assert "POST" in c.methods
    assert any("POST" in w and "body" in w for w in c.warnings)


def test_head_without_get_warns():
    assert any("HEAD" in w for w in parse_config({"request_method": ["HEAD"]}).warnings)
    assert not parse_config({}).warnings


def test_never_stored_status_codes_warn():
    assert any("206" in w for w in parse_config({"response_code": [200, 206]}).warnings)


def test_precompiled_sets_and_names():
    c = parse_config(
        {
            "request_method": ["GET", "GET", "HEAD"],
            "response_code": [200, 404],
            "vary_headers": ["X-B", "Accept-Encoding", "x-b"],
            "tag_headers": ["Surrogate-Key", "X-Tags"],
        }
    )
    assert c.methods == frozenset({"GET", "HEAD"})
    assert c.request_method == ("GET", "HEAD")
    assert c.status_codes == frozenset({200, 404})
    assert c.vary_header_names == ("accept-encoding", "x-b")
    assert c.tag_header_names == ("surrogate-key", "x-tags")
    assert c.content_type_ranges == (
        MediaRange("text", "plain"),
        MediaRange("application", "json"),
    )


def test_ignore_query_globs_are_anchored_and_escaped():
    c = parse_config({"ignore_query_params": ["utm_*", "a.b", "x?"]})
    assert c.query_param_ignored("utm_source")
    assert c.query_param_ignored("utm_")
    assert not c.query_param_ignored("xutm_source")
    assert c.query_param_ignored("a.b")
    assert not c.query_param_ignored("axb")
    assert c.query_param_ignored("x1")
    assert not c.query_param_ignored("x12")
    assert c.query_param_ignored("utm_a\nb")  # a decoded name may hold any character
    assert not parse_config({}).query_param_ignored("utm_source")


def test_empty_vary_query_params_means_all_params_like_kong():
    assert parse_config({"vary_query_params": []}).vary_query_names is None
    assert parse_config({"vary_query_params": ["a"]}).vary_query_names == frozenset({"a"})


def test_storage_ttl_shorter_than_stale_windows_warns():
    c = parse_config({"cache_ttl": 60, "storage_ttl": 90, "stale_if_error": 600})
    assert any("storage_ttl" in w for w in c.warnings)


def test_equal_configs_compare_equal():
    assert parse_config({"ignore_query_params": ["a*"]}) == parse_config(
        {"ignore_query_params": ["a*"]}
    )
    assert isinstance(parse_config({}), PluginConfig)


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"sidecar": {"address": "host:99999"}}, "port must be between 1 and 65535, got 99999"),
        ({"tags": ["a,b c"]}, "'a,b c' must not contain a comma"),
        ({"tags": ["a b"]}, "'a b' must be printable ASCII without spaces"),
    ],
)
def test_messages_are_the_schemas_in_the_schemas_order(raw, message):
    """A comma is reported before a space, as Kong runs match_none before match_all."""
    with pytest.raises(ConfigError) as err:
        parse_config(raw)
    assert err.value.message == message
