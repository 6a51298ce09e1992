"""The schema's Lua patterns (what Kong checks at load) and `parse_config` agree.

Kong evaluates the ``match_all``/``match_none``/``match_any`` rules of `SCHEMA` when it loads
``kong.yml``; `parse_config` re-checks them in Python when an instance starts. Both are run
here -- the schema through kongsim's emulation of Kong's validator
(`kongsim.config.schema.validate`, Lua patterns on bytes via `kongsim.config.luapattern`) -- on a
corpus of good and bad values and on generated ones: for every field whose rule a pattern can
express they must agree exactly, and `parse_config` may be stricter only for ``content_type``
parameters (documented).
"""

from __future__ import annotations

import string
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from kong_plugin.config import parse_config
from kong_plugin.errors import ConfigError
from kong_plugin.schema import SCHEMA
from kongsim.config.luapattern import lua_match
from kongsim.config.schema import validate

ROOT = Path(__file__).resolve().parents[3]


class Field:
    """How to put one value of a field into a config, and the paths each side reports."""

    def __init__(self, build: Callable[[str], dict[str, Any]], kong: str, plugin: str) -> None:
        self.build = build
        self.kong = kong  # Kong's (kongsim's) path of the value
        self.plugin = plugin  # ConfigError.field

    def kong_errors(self, value: str) -> list[str]:
        return [e.message for e in validate(SCHEMA, self.build(value))[1] if e.path == self.kong]

    def kong_accepts(self, value: str) -> bool:
        errors = validate(SCHEMA, self.build(value))[1]
        assert all(e.path == self.kong for e in errors), errors
        return not errors

    def plugin_error(self, value: str) -> ConfigError | None:
        try:
            parse_config(self.build(value), strict=True)
        except ConfigError as exc:
            return exc
        return None


FIELDS = {
    "sidecar.address": Field(
        lambda v: {"sidecar": {"address": v}}, "config.sidecar.address", "sidecar.address"
    ),
    "vary_headers": Field(
        lambda v: {"vary_headers": ["Accept", v]}, "config.vary_headers.2", "vary_headers[1]"
    ),
    "tag_headers": Field(lambda v: {"tag_headers": [v]}, "config.tag_headers.1", "tag_headers[0]"),
    "tags": Field(lambda v: {"tags": ["ok", v]}, "config.tags.2", "tags[1]"),
    "cache_status_name": Field(
        lambda v: {"cache_status_name": v}, "config.cache_status_name", "cache_status_name"
    ),
    "content_type": Field(
        lambda v: {"content_type": [v]}, "config.content_type.1", "content_type[0]"
    ),
    "vary_query_params": Field(
        lambda v: {"vary_query_params": [v]}, "config.vary_query_params.1", "vary_query_params[0]"
    ),
    "ignore_query_params": Field(
        lambda v: {"ignore_query_params": [v]},
        "config.ignore_query_params.1",
        "ignore_query_params[0]",
    ),
}

HEADER_GOOD = [
    "Accept",
    "X-Api-Version",
    string.ascii_letters + string.digits + "!#$%&'*+-.^_`|~",  # every tchar
    "A" * 256,
]
HEADER_BAD = ["X Bad", "a:b", "", " X", "X\t", "Ä", "a/b", "a,b", "(x)", "a\x00", "A" * 257]
QUERY_GOOD = ["page", "a b", "utm_*", "x?", "caf\u00e9", "a=b&c", "q" * 256]
QUERY_BAD = ["", "a\nb", "\x00", "tab\there", "del\x7f", "q" * 257]

CORPUS: dict[str, tuple[list[str], list[str]]] = {
    "sidecar.address": (
        [
            "unix:/tmp/strata-sidecar.sock",
            "unix:///run/strata.sock",
            "unix:/a",
            "unix:/srv/caf\u00e9.sock",
            "unix:/x:0",
            "127.0.0.1:50051",
            "sidecar.internal:9000",
            "a:1",
            "a-b.c:65535",
            "strata_sidecar:50051",  # Docker Compose service names hold "_"
            "host:00080",
            "[::1]:50051",
            "[2001:db8::1.2.3.4]:1",
            "999.1.1.1:80",
        ],
        [
            "",
            "tcp://x",
            "unix:relative.sock",
            "unix://host/x",
            "unix:/",
            "unix:///",
            "unix:////x",
            "unix:/tmp/my sock",
            "unix:/tmp/x\n",
            "localhost",
            ":80",
            "my host:80",
            " localhost:80",
            "localhost:80 ",
            "-host:80",
            "host-:80",
            "host:port",
            "host:",
            "host:0",
            "host:00000",
            "host:65536",
            "host:70000",
            "host:99999",
            "host:123456",
            "[::1]:0",
            "[::1]:65540",
            "[::1]80",
            "[]:80",
            "[::g]:80",
            "::1:50051",
            "http://host:80",
            "h\u00f6st:80",
            "a" * 258 + ":80",
        ],
    ),
    "vary_headers": (HEADER_GOOD, HEADER_BAD),
    "tag_headers": (HEADER_GOOD, HEADER_BAD),
    "tags": (
        ["catalogue", "user:42", "a/b;c=d", "!~", "t" * 256],
        ["", "a,b", ",", "a b", " a", "caf\u00e9", "a\tb", "a\x7f", "t" * 257],
    ),
    "cache_status_name": (
        ["strata", "*", "edge-cache/1:a", "A!#$%&'*+-.^_`|~0:/", "c" * 64],
        ["", "1cache", "-x", ":x", "my cache", "cache;x", "caché", "c\x00", "c" * 65],
    ),
    "content_type": (
        ["*", " * ", "*/*", "text/*", "text/plain", " text/plain\t", "application/json; a=b"],
        ["", "json", "text/ html", "text /html", "text/html extra", "*/*/*", "*;q=1", "\n*"],
    ),
    "vary_query_params": (QUERY_GOOD, QUERY_BAD),
    "ignore_query_params": (QUERY_GOOD, QUERY_BAD),
}

GOOD_CASES = [(name, value) for name, (good, _) in CORPUS.items() for value in good]
BAD_CASES = [(name, value) for name, (_, bad) in CORPUS.items() for value in bad]


@pytest.mark.parametrize(("name", "value"), GOOD_CASES)
def test_good_values_pass_kongs_patterns_and_parse_config(name: str, value: str) -> None:
    field = FIELDS[name]
    assert field.kong_errors(value) == []
    assert field.plugin_error(value) is None


@pytest.mark.parametrize(("name", "value"), BAD_CASES)
def test_bad_values_fail_both_naming_the_field(name: str, value: str) -> None:
    field = FIELDS[name]
    assert len(field.kong_errors(value)) == 1, "Kong would accept it at load"
    error = field.plugin_error(value)
    assert error is not None, "parse_config would accept it"
    assert error.field == field.plugin


def test_the_same_message_on_both_sides_for_pattern_rules() -> None:
    """parse_config's message ends with the schema's ``err`` for the same rule."""
    for name, value in [
        ("sidecar.address", "tcp://x"),
        ("sidecar.address", "host:99999"),
        ("vary_headers", "X Bad"),
        ("tags", "a,b"),
        ("tags", "a b"),
        ("cache_status_name", "1x"),
        ("content_type", "json"),
        ("ignore_query_params", "a\nb"),
    ]:
        field = FIELDS[name]
        (kong,) = field.kong_errors(value)
        plugin = field.plugin_error(value)
        assert plugin is not None and kong in plugin.message, (name, value, kong, plugin)


@pytest.mark.parametrize(
    "value",
    ["text/html; charset", "text/html; a=b c", 'text/html; a="unterminated', "a/b;=x"],
)
def test_content_type_parameters_are_checked_by_the_plugin_only(value: str) -> None:
    """The documented gap: ';' parameters are a repeated group no Lua pattern can express."""
    field = FIELDS["content_type"]
    assert field.kong_errors(value) == []
    error = field.plugin_error(value)
    assert error is not None and error.field == "content_type[0]"


# --- generated values: the plugin never accepts what Kong refuses ------------------------------

ASCII = "".join(chr(i) for i in range(128))
TEXT = st.text(alphabet=ASCII + "\u00e9\u00a0\u2028", max_size=10)
DIGITS = st.text(alphabet="0123456789", min_size=0, max_size=7)
PORTS = st.one_of(st.integers(0, 140000).map(str), DIGITS, st.just("65535"), st.just("65536"))
HOSTS = st.one_of(
    st.text(alphabet="ab9.-_ :", max_size=6),
    st.sampled_from(["localhost", "10.0.0.1", "[::1]", "[fe80::1%eth0]", "[]", "a..b", "-a"]),
    st.builds("[{}]".format, st.text(alphabet="0af:.g ", max_size=6)),
)
ADDRESSES = st.one_of(
    TEXT,
    st.builds(
        "{}{}".format,
        st.sampled_from(["unix:", "unix:/", "unix://", "unix:///", "unix:////"]),
        st.text(alphabet="/a b\x01\u00e9.:0", max_size=6),
    ),
    st.builds("{}:{}".format, HOSTS, PORTS),
)
MEDIA = st.one_of(
    TEXT,
    st.builds(
        "{}{}/{}{}{}".format,
        st.sampled_from(["", " ", "\t", "\n"]),
        st.sampled_from(["text", "*", "", "a b"]),
        st.sampled_from(["html", "*", "", "x/y"]),
        st.sampled_from(["", " ", "\t", "\r"]),
        st.sampled_from(["", ";", "; a=b", ";a", " x", "\x00"]),
    ),
    st.builds("{}*{}".format, st.sampled_from(["", " ", "\v"]), st.sampled_from(["", " ", "\f"])),
)
GENERATED = {
    "sidecar.address": ADDRESSES,
    "vary_headers": TEXT,
    "tag_headers": TEXT,
    "tags": TEXT,
    "cache_status_name": TEXT,
    "vary_query_params": TEXT,
    "ignore_query_params": TEXT,
}


@pytest.mark.parametrize("name", sorted(GENERATED))
def test_generated_values_kong_and_the_plugin_agree_exactly(name: str) -> None:
    field = FIELDS[name]

    @settings(max_examples=300, deadline=None)
    @given(GENERATED[name])
    def check(value: str) -> None:
        assert field.kong_accepts(value) == (field.plugin_error(value) is None), value

    check()


@settings(max_examples=300, deadline=None)
@given(MEDIA)
def test_generated_content_types_the_plugin_is_never_more_lenient(value: str) -> None:
    field = FIELDS["content_type"]
    if field.plugin_error(value) is None:
        assert field.kong_accepts(value), value


def test_the_schema_rules_are_lua_patterns_kongsim_can_evaluate() -> None:
    """Every pattern compiles, and each rule refuses its own example (no dead rule)."""
    examples = {
        "vary_headers": "X Bad",
        "tags": "a,b",
        "cache_status_name": "1x",
        "ignore_query_params": "\x01",
        "content_type": "json",
    }
    address = FIELDS["sidecar.address"]
    for port in ("0", "65536", "65540", "65600", "66000", "70000"):
        assert address.kong_errors(f"h:{port}") == ["port must be between 1 and 65535"], port
    for name, value in examples.items():
        assert FIELDS[name].kong_errors(value), name
    assert lua_match("Accept", "^[%w!#%$%%&'%*%+%-%.%^_`|~]+$")


# --- the repository's own kong.yml files -------------------------------------------------------


def strata_configs(doc: Any) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    if isinstance(doc, dict):
        if doc.get("name") == "strata-cache" and isinstance(doc.get("config"), dict):
            found.append(doc["config"])
        for value in doc.values():
            found.extend(strata_configs(value))
    elif isinstance(doc, list):
        for value in doc:
            found.extend(strata_configs(value))
    return found


@pytest.mark.parametrize("path", ["kong.yml", "deploy/kong/kong.yml"])
def test_the_repositorys_configs_pass_kong_and_the_plugin(path: str) -> None:
    configs = strata_configs(yaml.safe_load((ROOT / path).read_text(encoding="utf-8")))
    assert configs
    for config in configs:
        assert validate(SCHEMA, config)[1] == []
        parse_config(config, strict=True)
