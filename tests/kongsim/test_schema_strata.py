"""kongsim refuses a bad ``strata-cache`` config when it loads ``kong.yml``, as Kong 3.9 does.

The plugin's schema comes from the real ``python -m kong_plugin --dump`` (the JSON Kong reads),
goes through kongsim's metaschema (``parse_dump`` -> ``check_schema``), and every plugin entity
of the file is validated against it (``build_plugin_set``): the error names the plugin, the
route and the field, with the schema's Kong-style message.
"""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from kong_plugin.schema import (
    ERR_ADDRESS,
    ERR_CONTROL,
    ERR_HEADER_NAME,
    ERR_MEDIA_RANGE,
    ERR_PORT,
    ERR_SF_TOKEN,
    ERR_TAG,
    ERR_TAG_COMMA,
)
from kongsim.config.declarative import load_file
from kongsim.config.plugins import PluginInfo, build_plugin_set, parse_dump
from kongsim.errors import ConfigError
from kongsim.http import keyauth

ROOT = Path(__file__).resolve().parents[2]
LABEL = "plugin 'strata-cache' on route 'r'"
ERR_SAMPLE_RATE = "must be a number from 0 to 1"


@pytest.fixture(scope="module")
def strata_info() -> PluginInfo:
    out = subprocess.run(
        [sys.executable, "-m", "kong_plugin", "--dump"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    return parse_dump("strata-cache", out)


def write_kong_yml(directory: Path, config: dict[str, Any]) -> Path:
    doc = {
        "_format_version": "3.0",
        "services": [
            {
                "name": "s",
                "url": "http://127.0.0.1:9000",
                "routes": [
                    {
                        "name": "r",
                        "paths": ["/r"],
                        "plugins": [{"name": "strata-cache", "config": config}],
                    }
                ],
            }
        ],
    }
    path = directory / "kong.yml"
    path.write_text(yaml.safe_dump(doc, allow_unicode=True), encoding="utf-8")
    return path


def load_errors(path: Path, info: PluginInfo) -> list[str]:
    """Load ``path`` as kongsim does at start-up; the messages of the error, or []."""
    catalog = {info.name: info, keyauth.INFO.name: keyauth.INFO}
    try:
        build_plugin_set(load_file(path), catalog, itertools.count(1))
    except ConfigError as exc:
        return exc.messages
    return []


BAD: list[tuple[dict[str, Any], str, str]] = [
    # sidecar.address
    ({"sidecar": {"address": "tcp://x"}}, "sidecar.address", ERR_ADDRESS),
    ({"sidecar": {"address": "unix:relative.sock"}}, "sidecar.address", ERR_ADDRESS),
    ({"sidecar": {"address": "unix://host/x"}}, "sidecar.address", ERR_ADDRESS),
    ({"sidecar": {"address": "unix:/tmp/my sock"}}, "sidecar.address", ERR_ADDRESS),
    ({"sidecar": {"address": "unix:/"}}, "sidecar.address", ERR_ADDRESS),
    ({"sidecar": {"address": ":50051"}}, "sidecar.address", ERR_ADDRESS),
    ({"sidecar": {"address": "my host:50051"}}, "sidecar.address", ERR_ADDRESS),
    ({"sidecar": {"address": " localhost:50051"}}, "sidecar.address", ERR_ADDRESS),
    ({"sidecar": {"address": "localhost"}}, "sidecar.address", ERR_ADDRESS),
    ({"sidecar": {"address": "localhost:123456"}}, "sidecar.address", ERR_ADDRESS),
    ({"sidecar": {"address": "-host:80"}}, "sidecar.address", ERR_ADDRESS),
    ({"sidecar": {"address": "::1:50051"}}, "sidecar.address", ERR_ADDRESS),
    ({"sidecar": {"address": "http://host:80"}}, "sidecar.address", ERR_ADDRESS),
    ({"sidecar": {"address": "host:99999"}}, "sidecar.address", ERR_PORT),
    ({"sidecar": {"address": "host:65536"}}, "sidecar.address", ERR_PORT),
    ({"sidecar": {"address": "10.0.0.1:0"}}, "sidecar.address", ERR_PORT),
    ({"sidecar": {"address": "[::1]:70000"}}, "sidecar.address", ERR_PORT),
    ({"sidecar": {"address": ""}}, "sidecar.address", "length must be at least 1"),
    (
        {"sidecar": {"address": "a" * 258 + ":80"}},
        "sidecar.address",
        "length must be at most 260",
    ),
    # header names
    ({"vary_headers": ["X Bad"]}, "vary_headers.1", ERR_HEADER_NAME),
    ({"vary_headers": ["Accept", "a:b"]}, "vary_headers.2", ERR_HEADER_NAME),
    ({"vary_headers": [""]}, "vary_headers.1", "length must be at least 1"),
    ({"vary_headers": ["X-Ünicode"]}, "vary_headers.1", ERR_HEADER_NAME),
    ({"tag_headers": ["Surrogate Key"]}, "tag_headers.1", ERR_HEADER_NAME),
    ({"tag_headers": ["a:b"]}, "tag_headers.1", ERR_HEADER_NAME),
    ({"tag_headers": [""]}, "tag_headers.1", "length must be at least 1"),
    # Cache-Status name
    ({"cache_status_name": "1cache"}, "cache_status_name", ERR_SF_TOKEN),
    ({"cache_status_name": "my cache"}, "cache_status_name", ERR_SF_TOKEN),
    ({"cache_status_name": "cache;x"}, "cache_status_name", ERR_SF_TOKEN),
    ({"cache_status_name": "c" * 65}, "cache_status_name", "length must be at most 64"),
    # static tags
    ({"tags": ["a,b"]}, "tags.1", ERR_TAG_COMMA),
    ({"tags": ["a b"]}, "tags.1", ERR_TAG),
    ({"tags": ["caf\u00e9"]}, "tags.1", ERR_TAG),
    ({"tags": [""]}, "tags.1", "length must be at least 1"),
    ({"tags": ["t"] * 65}, "tags", "length must be at most 64"),
    # content types
    ({"content_type": ["json"]}, "content_type.1", ERR_MEDIA_RANGE),
    ({"content_type": ["text/ html"]}, "content_type.1", ERR_MEDIA_RANGE),
    ({"content_type": ["text/html charset=utf-8"]}, "content_type.1", ERR_MEDIA_RANGE),
    ({"content_type": ["text/plain", "*/*/*"]}, "content_type.2", ERR_MEDIA_RANGE),
    ({"content_type": [""]}, "content_type.1", "length must be at least 1"),
    # query parameter names
    ({"vary_query_params": ["a\nb"]}, "vary_query_params.1", ERR_CONTROL),
    ({"ignore_query_params": ["utm_*", "x\ty"]}, "ignore_query_params.2", ERR_CONTROL),
    ({"ignore_query_params": ["q" * 257]}, "ignore_query_params.1", "length must be at most 256"),
    # the rest of the schema
    (
        {"request_method": ["GET", "DELETE"]},
        "request_method.2",
        "expected one of: HEAD, GET, POST, PATCH, PUT",
    ),
    ({"response_code": [200, 99]}, "response_code.2", "value should be between 100 and 900"),
    # durations: at most the sidecar's default max_ttl_seconds (365 days)
    ({"cache_ttl": 2**31}, "cache_ttl", "value should be between 1 and 31536000"),
    ({"cache_ttl": 31536001}, "cache_ttl", "value should be between 1 and 31536000"),
    ({"storage_ttl": 31536001}, "storage_ttl", "value should be between 1 and 31536000"),
    (
        {"stale_while_revalidate": 31536001},
        "stale_while_revalidate",
        "value should be between 0 and 31536000",
    ),
    ({"stale_if_error": 10**10}, "stale_if_error", "value should be between 0 and 31536000"),
    ({"cache_ttl": 0}, "cache_ttl", "value must be greater than 0"),
    ({"memory": {"dictionary_name": ""}}, "memory.dictionary_name", "length must be at least 1"),
    # analytics: NaN passes Kong's `between` (both comparisons false); `gt` catches it
    ({"analytics": {"sample_rate": float("nan")}}, "analytics.sample_rate", ERR_SAMPLE_RATE),
    ({"analytics": {"sample_rate": 2}}, "analytics.sample_rate", ERR_SAMPLE_RATE),
    ({"analytics": {"sample_rate": -0.1}}, "analytics.sample_rate", ERR_SAMPLE_RATE),
    ({"analytics": {"sample_rate": float("inf")}}, "analytics.sample_rate", ERR_SAMPLE_RATE),
]


@pytest.mark.parametrize(
    ("config", "field", "message"), BAD, ids=[f"{f}={str(c)[:60]}" for c, f, _ in BAD]
)
def test_kong_refuses_a_bad_strata_config_at_load(
    tmp_path: Path, strata_info: PluginInfo, config: dict[str, Any], field: str, message: str
) -> None:
    errors = load_errors(write_kong_yml(tmp_path, config), strata_info)
    assert errors == [f"{LABEL}: config.{field}: {message}"]


GOOD: list[dict[str, Any]] = [
    {"sidecar": {"address": "unix:/tmp/strata-sidecar.sock"}},
    {"sidecar": {"address": "unix:///run/strata/sidecar.sock"}},
    {"sidecar": {"address": "unix:/srv/caf\u00e9.sock"}},
    {"sidecar": {"address": "127.0.0.1:50051"}},
    {"sidecar": {"address": "sidecar.internal:65535"}},
    {"sidecar": {"address": "a:1"}},
    {"sidecar": {"address": "[::1]:50051"}},
    {"sidecar": {"address": "[2001:db8::1]:9000"}},
    {"vary_headers": ["Accept-Encoding", "X-Api-Version", "x_y.z~!#$%&'*+^`|"]},
    {"tag_headers": ["Surrogate-Key", "X-Tags"]},
    {"cache_status_name": "edge-cache/1:a"},
    {"cache_status_name": "*"},
    {"tags": ["catalogue", "user:42", "a/b;c=d"]},
    {"content_type": ["*", "*/*", "text/*", "application/json; charset=utf-8", " text/plain "]},
    {"vary_query_params": ["page", "a b", "caf\u00e9"], "ignore_query_params": ["utm_*"]},
    {"request_method": ["GET", "HEAD", "POST"], "cache_ttl": 31536000},
    {"storage_ttl": 31536000, "stale_while_revalidate": 31536000, "stale_if_error": 31536000},
    {"tags": ["t"] * 64},
    {"analytics": {"sample_rate": 0}},
    {"analytics": {"sample_rate": 0.25}},
    {"analytics": {"sample_rate": 1}},
]


@pytest.mark.parametrize("config", GOOD)
def test_kong_accepts_good_strata_configs(
    tmp_path: Path, strata_info: PluginInfo, config: dict[str, Any]
) -> None:
    assert load_errors(write_kong_yml(tmp_path, config), strata_info) == []


@pytest.mark.parametrize("path", ["kong.yml", "deploy/kong/kong.yml"])
def test_the_repositorys_kong_yml_files_load(strata_info: PluginInfo, path: str) -> None:
    assert load_errors(ROOT / path, strata_info) == []


def test_every_problem_of_a_config_is_reported_together(
    tmp_path: Path, strata_info: PluginInfo
) -> None:
    path = write_kong_yml(
        tmp_path,
        {"sidecar": {"address": "tcp://x"}, "vary_headers": ["ok", "X Bad"], "tags": ["a,b"]},
    )
    assert load_errors(path, strata_info) == [
        f"{LABEL}: config.sidecar.address: {ERR_ADDRESS}",
        f"{LABEL}: config.tags.1: {ERR_TAG_COMMA}",
        f"{LABEL}: config.vary_headers.2: {ERR_HEADER_NAME}",
    ]


def test_the_dumped_schema_passes_kongs_metaschema_and_is_the_one_checked(
    strata_info: PluginInfo,
) -> None:
    """``parse_dump`` runs ``check_schema``; the patterns really reached kongsim."""
    (address,) = [
        f["address"]
        for entry in strata_info.schema_fields
        if "sidecar" in entry
        for f in entry["sidecar"]["fields"]
        if "address" in f
    ]
    assert address["match_any"]["err"] == ERR_ADDRESS
    assert json.loads(json.dumps(strata_info.schema_fields)) == strata_info.schema_fields


def test_cli_check_exits_2_naming_the_field(tmp_path: Path) -> None:
    bad = write_kong_yml(tmp_path, {"sidecar": {"address": "unix:relative.sock"}})
    result = subprocess.run(
        [sys.executable, "-m", "kongsim", "--config", str(bad), "--check"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2, result.stderr
    assert f"{LABEL}: config.sidecar.address: {ERR_ADDRESS}" in result.stderr


def test_cli_check_accepts_the_repositorys_kong_yml() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "kongsim", "--config", str(ROOT / "kong.yml"), "--check"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
