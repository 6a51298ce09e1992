"""kongsim.config: decK parsing, entity errors, plugin configs, precedence."""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

import pytest

from kongsim.config.declarative import load_file, parse
from kongsim.config.entities import stable_id
from kongsim.config.plugins import PluginInfo, build_plugin_set, kong_version, parse_dump, sort_key
from kongsim.errors import ConfigError, PluginServerError
from kongsim.http import keyauth

from .conftest import write_config

CACHE = PluginInfo(
    name="cache",
    priority=100,
    version="1.0.0",
    phases=("access", "response", "log"),
    schema_fields=[
        {"ttl": {"type": "integer", "default": 30, "gt": 0}},
        {
            "redis": {
                "type": "record",
                "required": True,
                "fields": [
                    {"host": {"type": "string", "default": "localhost"}},
                ],
            }
        },
    ],
    server="cache",
)
CATALOG = {"cache": CACHE, "key-auth": keyauth.INFO}


def messages(data: dict[str, Any]) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse(data)
    return info.value.messages


BASE: dict[str, Any] = {
    "_format_version": "3.0",
    "services": [
        {
            "name": "users",
            "url": "http://upstream:9000/api",
            "routes": [{"name": "users", "paths": ["/users"]}],
        }
    ],
}


def test_parses_services_routes_consumers_and_stable_ids() -> None:
    decl = parse(
        {
            "_format_version": "3.0",
            "services": [
                {
                    "name": "users",
                    "url": "https://upstream/api",
                    "routes": [
                        {"name": "users", "paths": ["/users"], "methods": ["get"]},
                        {"hosts": ["Example.COM"]},
                    ],
                    "plugins": [{"name": "cache"}],
                },
                {"name": "other", "host": "o", "port": 8080, "protocol": "http"},
            ],
            "routes": [{"name": "top", "paths": ["/top"], "service": "other"}],
            "consumers": [{"username": "alice", "keyauth_credentials": [{"key": "k1"}]}],
        }
    )
    users, other = decl.services
    assert (users.protocol, users.host, users.port, users.path) == (
        "https",
        "upstream",
        443,
        "/api",
    )
    assert (other.host, other.port, other.path) == ("o", 8080, None)
    assert users.id == stable_id("service", "users")
    assert [r.name for r in decl.routes] == ["users", None, "top"]
    assert decl.routes[0].methods == ("GET",)
    assert decl.routes[1].hosts == ("example.com",)
    assert decl.routes[2].service_id == other.id
    assert decl.routes[0].strip_path is True and decl.routes[0].preserve_host is False
    assert decl.consumers[0].username == "alice"
    assert decl.credentials[0].consumer_id == decl.consumers[0].id
    assert decl.plugins[0].service_id == users.id
    assert decl.plugins[0].label == "plugin 'cache' on service 'users'"
    again = parse(json.loads(json.dumps(BASE)))
    assert again.routes[0].id == parse(BASE).routes[0].id


def test_given_ids_are_kept() -> None:
    data = json.loads(json.dumps(BASE))
    data["services"][0]["id"] = "2b9b2c4e-6f3e-4a55-9a40-1c4b8b9c3c11"
    assert parse(data).services[0].id == "2b9b2c4e-6f3e-4a55-9a40-1c4b8b9c3c11"


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({"services": []}, "_format_version: required field missing"),
        ({"_format_version": "1.1"}, 'kongsim reads "3.0"'),
        ({"_format_version": "3.0", "servics": []}, "unknown top-level key 'servics'"),
        ({"_format_version": "3.0", "upstreams": []}, "'upstreams' is not supported"),
        (
            {
                "_format_version": "3.0",
                "services": [{"name": "s", "url": "http://h", "routes": [{"name": "r"}]}],
            },
            "route 'r': must set one of 'methods', 'hosts', 'headers', 'paths'",
        ),
        (
            {
                "_format_version": "3.0",
                "routes": [{"name": "r", "paths": ["/"], "service": "nope"}],
            },
            "route 'r': service: unknown service 'nope'",
        ),
        (
            {
                "_format_version": "3.0",
                "services": [{"name": "s", "url": "http://h", "colour": "red"}],
            },
            "service 's': colour: unknown field",
        ),
        (
            {
                "_format_version": "3.0",
                "services": [
                    {"name": "s", "url": "http://h", "routes": [{"name": "r", "paths": ["x"]}]}
                ],
            },
            "route 'r': paths: should start with: /",
        ),
        (
            {"_format_version": "3.0", "services": [{"name": "s", "url": "ftp://h"}]},
            "service 's': protocol: kongsim proxies only http and https",
        ),
        (
            {"_format_version": "3.0", "plugins": [{"name": "cache", "route": "ghost"}]},
            "plugin 'cache' in top-level: route: unknown route 'ghost'",
        ),
        (
            {"_format_version": "3.0", "consumers": [{"tags": ["x"]}]},
            "consumer #0: at least one of these fields must be non-empty",
        ),
        (
            {
                "_format_version": "3.0",
                "services": [
                    {"name": "s", "url": "http://h", "routes": [{"name": "r", "paths": ["~/("]}]}
                ],
            },
            "route 'r': paths: invalid regex",
        ),
    ],
)
def test_entity_errors_name_the_entity_and_field(data: dict[str, Any], expected: str) -> None:
    assert any(expected in m for m in messages(data)), messages(data)


def test_duplicates_are_errors() -> None:
    data = {
        "_format_version": "3.0",
        "services": [{"name": "s", "url": "http://h"}, {"name": "s", "url": "http://h"}],
        "plugins": [{"name": "cache"}, {"name": "cache"}],
        "consumers": [
            {"username": "a", "keyauth_credentials": [{"key": "k"}]},
            {"username": "b", "keyauth_credentials": [{"key": "k"}]},
        ],
    }
    found = messages(data)
    assert any("duplicate service name" in m for m in found)
    assert any("configured twice at the same scope" in m for m in found)
    assert any("duplicate key 'k'" in m for m in found)


def test_bad_yaml_and_missing_file(tmp_path: Path) -> None:
    bad = write_config(tmp_path, "services: [\n")
    with pytest.raises(ConfigError, match="invalid YAML"):
        load_file(bad)
    with pytest.raises(ConfigError, match="cannot read"):
        load_file(tmp_path / "missing.yml")


def _plugins(data: dict[str, Any]) -> Any:
    return build_plugin_set(parse(data), CATALOG, itertools.count(1))


def test_plugin_configs_are_validated_with_entity_and_field_in_the_message() -> None:
    data = json.loads(json.dumps(BASE))
    data["services"][0]["routes"][0]["plugins"] = [{"name": "cache", "config": {"ttl": 0}}]
    data["plugins"] = [{"name": "nope"}, {"name": "key-auth", "config": {"key_names": ["a b"]}}]
    with pytest.raises(ConfigError) as info:
        _plugins(data)
    assert info.value.messages == [
        "plugin 'cache' on route 'users': config.ttl: value must be greater than 0",
        "plugin 'nope' (global): unknown plugin 'nope' (available: cache, key-auth)",
        "plugin 'key-auth' (global): config.key_names.1: bad header name 'a b', allowed "
        "characters are A-Z, a-z, 0-9, '_', and '-'",
    ]


def test_key_auth_defaults_and_no_consumer_rule() -> None:
    data = json.loads(json.dumps(BASE))
    data["plugins"] = [{"name": "key-auth"}]
    cfg = _plugins(data).lookup("key-auth", None, None, None).config
    assert cfg == {
        "key_names": ["apikey"],
        "hide_credentials": False,
        "anonymous": None,
        "key_in_header": True,
        "key_in_query": True,
        "key_in_body": False,
        "run_on_preflight": True,
        "realm": None,
    }
    data["consumers"] = [{"username": "bob", "plugins": [{"name": "key-auth"}]}]
    with pytest.raises(ConfigError, match="cannot be configured on a consumer"):
        _plugins(data)


def test_precedence_route_over_service_over_global_and_consumer_combos() -> None:
    data = json.loads(json.dumps(BASE))
    data["plugins"] = [{"name": "cache", "config": {"ttl": 1}}]
    data["services"][0]["plugins"] = [{"name": "cache", "config": {"ttl": 2}}]
    data["services"][0]["routes"][0]["plugins"] = [{"name": "cache", "config": {"ttl": 3}}]
    data["consumers"] = [{"username": "bob", "plugins": [{"name": "cache", "config": {"ttl": 4}}]}]
    data["services"][0]["routes"][0]["plugins"].append(
        {"name": "cache", "consumer": "bob", "config": {"ttl": 5}}
    )
    decl = parse(data)
    ps = build_plugin_set(decl, CATALOG, itertools.count(1))
    route, service, bob = decl.routes[0].id, decl.services[0].id, decl.consumers[0].id

    def ttl(r: str | None, s: str | None, c: str | None) -> int:
        found = ps.lookup("cache", r, s, c)
        assert found is not None
        return int(found.config["ttl"])

    assert ttl(route, service, None) == 3
    assert ttl(None, service, None) == 2
    assert ttl(None, None, None) == 1
    assert ttl("other-route", "other-service", None) == 1
    assert ttl(None, None, bob) == 4
    assert ttl(route, service, bob) == 5


def test_wire_config_has_the_fields_kong_adds() -> None:
    data = json.loads(json.dumps(BASE))
    data["services"][0]["routes"][0]["plugins"] = [{"name": "cache", "config": {"ttl": 7.0}}]
    decl = parse(data)
    cp = build_plugin_set(decl, CATALOG, itertools.count(41)).by_id[decl.plugins[0].id]
    wire = json.loads(cp.config_json())
    assert wire["ttl"] == 7 and '"ttl":7,' in cp.config_json()
    assert wire["redis"] == {"host": "localhost"}
    assert wire["route_id"] == decl.routes[0].id
    assert "service_id" not in wire and "consumer_id" not in wire
    assert wire["__plugin_id"] == decl.plugins[0].id
    assert wire["__seq__"] == 41
    assert wire["__key__"].startswith(f"plugins:cache:{decl.routes[0].id}:")
    assert "__ws_id" in wire


def test_disabled_plugins_are_validated_but_not_applied() -> None:
    data = json.loads(json.dumps(BASE))
    data["plugins"] = [{"name": "cache", "enabled": False}]
    assert _plugins(data).lookup("cache", None, None, None) is None


def test_priority_order_ties_by_name_descending() -> None:
    infos = [
        PluginInfo("a", 10, "1.0.0", (), []),
        PluginInfo("b", 10, "1.0.0", (), []),
        PluginInfo("c", 20, "1.0.0", (), []),
        PluginInfo("ab", 10, "1.0.0", (), []),
    ]
    assert [i.name for i in sorted(infos, key=sort_key)] == ["c", "b", "ab", "a"]


def test_parse_dump_uses_first_element_and_checks_version_priority_schema() -> None:
    good: list[dict[str, Any]] = [
        {
            "Name": "p",
            "Phases": ["access"],
            "Priority": 5,
            "Version": "1.2.3",
            "Schema": {
                "name": "p",
                "fields": [
                    {
                        "config": {
                            "type": "record",
                            "fields": [{"ttl": {"type": "integer", "default": 1}}],
                        }
                    }
                ],
            },
        },
        {"Name": "ignored"},
    ]
    info = parse_dump("srv", json.dumps(good))
    assert (info.name, info.priority, info.version, info.phases) == ("p", 5, "1.2.3", ("access",))
    assert info.server == "srv"
    bad = dict(good[0], Version=None, Priority=1.5)
    with pytest.raises(PluginServerError) as err:
        parse_dump("srv", json.dumps([bad]))
    assert 'VERSION field does not follow the "x.y.z" format' in str(err.value)
    assert "Priority must be an integer" in str(err.value)
    with pytest.raises(PluginServerError, match="no 'config' field"):
        parse_dump("srv", json.dumps([dict(good[0], Schema={"name": "p", "fields": []})]))
    with pytest.raises(PluginServerError, match="failed decoding plugin info"):
        parse_dump("srv", "INFO - hello\n[]")


@pytest.mark.parametrize(
    ("given", "kept"),
    [
        ("1.2.3", "1.2.3"),
        ("v1.2.3-rc1", "1.2.3"),  # the first run of digits and dots is taken
        ("1.2", "1.2"),  # fewer elements are fine
        ("1.2.", "1.2"),  # a trailing dot adds nothing
        ("01.2.3", "1.2.3"),  # elements are numbers
        ("1.2.3.4", None),  # at most three elements
        ("1..2", None),  # an empty element is not a number
        ("latest", None),
        ("", None),
        (None, None),
        (3, None),
    ],
)
def test_plugin_version_follows_kongs_valid_version(given: object, kept: str | None) -> None:
    """kong/db/dao/plugins.lua valid_version with the version rock 1.0.1 (non-strict)."""
    assert kong_version(given) == kept
    dump = [
        {
            "Name": "p",
            "Version": given,
            "Priority": 1,
            "Phases": ["access"],
            "Schema": {"name": "p", "fields": [{"config": {"type": "record", "fields": []}}]},
        }
    ]
    if kept is None:
        with pytest.raises(PluginServerError, match="VERSION field"):
            parse_dump("srv", json.dumps(dump))
    else:
        assert parse_dump("srv", json.dumps(dump)).version == kept
