"""The settings a tier reads itself (Memcached servers, Redis URL, PostgreSQL DSN) are checked
at start-up by that tier's own parser: a value the configuration accepts builds its tier,
and one the tier would refuse stops start-up with a message naming the setting (through
`load_config` and through the command line's exit code), quoting nothing secret."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from sidecar.app import build_tiers
from sidecar.cli import main
from sidecar.config import SidecarConfig, load_config
from sidecar.core.clock import ManualClock
from sidecar.core.errors import ConfigError
from sidecar.core.observer import NullObserver
from sidecar.tiers.memcached import ServerListError, parse_servers
from sidecar.tiers.pg_connections import connection_string
from sidecar.tiers.redis_conn import check_url

ROOT = Path(__file__).resolve().parents[3]

REFUSED = [
    # (setting, value, fragment of the message, pieces the message must not quote)
    ("memcached_servers", "a:1,a:1", "server 2 of the list is listed twice", ()),
    ("memcached_servers", "a:1,", "server 2 of the list is empty", ()),
    ("memcached_servers", "a:1,,b:2", "server 2 of the list is empty", ()),
    ("memcached_servers", "127.0.0.1", "server 1 of the list is not HOST:PORT", ()),
    ("memcached_servers", "a:1,b:0", "server 2 of the list has a port outside 1-65535", ()),
    ("memcached_servers", "::1:11211", "server 1 of the list has an IPv6 address", ()),
    ("memcached_servers", "[::1:1", "server 1 of the list", ()),
    ("memcached_servers", "u:Pw-mc-31@cache:1", "takes no user or password", ("Pw-mc-31",)),
    ("redis_url", "http://127.0.0.1:6379", "unsupported scheme 'http'", ()),
    ("redis_url", "redis+cluster://", "not a valid Redis URL", ()),
    ("redis_url", "redis+cluster://:Pw-rc-32@h", "not a valid Redis URL", ("Pw-rc-32",)),
    ("redis_url", "redis://:Pw-r-33@cache:port-34/0", "not a valid Redis URL", ("port-34",)),
    ("postgres_dsn", "host=x port", "not a valid PostgreSQL connection string", ()),
    ("postgres_dsn", "host=db password=Pw-pg-35 x", "not a valid PostgreSQL", ("Pw-pg-35",)),
]

ACCEPTED = [
    ("memcached_servers", "127.0.0.1:11211"),
    ("memcached_servers", " mc-a:1 , [::1]:11211,[fe80::1%eth0]:2"),
    ("memcached_servers", "mc_a:11211"),
    ("redis_url", "redis://:pw@127.0.0.1:6379/0?socket_keepalive=true"),
    ("redis_url", "unix:///run/redis.sock?db=1"),
    ("redis_url", "rediss+cluster://u:p%40ss@h1:7000,[::1]:7001/"),
    ("postgres_dsn", "host=127.0.0.1 port=5432 dbname=strata password='se cret'"),
    ("postgres_dsn", "postgresql://u:pw@db:5432/strata?sslmode=disable"),
]


@pytest.mark.parametrize(("setting", "value", "fragment", "hidden"), REFUSED)
def test_a_value_its_tier_refuses_stops_start_up_naming_the_setting(
    setting: str, value: str, fragment: str, hidden: tuple[str, ...]
) -> None:
    env = "STRATA_" + setting.upper()
    with pytest.raises(ConfigError) as info:
        load_config({env: value})
    message = str(info.value)
    assert message.startswith(f"invalid configuration: {setting} (from {env}): "), message
    assert fragment in message
    for piece in hidden:
        assert piece not in message, message


@pytest.mark.parametrize(("setting", "value", "fragment", "hidden"), REFUSED)
def test_the_command_line_exits_2_with_the_same_message(
    setting: str,
    value: str,
    fragment: str,
    hidden: tuple[str, ...],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("STRATA_CONFIG", raising=False)
    flag = "--" + setting.replace("_", "-")
    assert main([flag, value, "--print-config"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert f"strata-sidecar: invalid configuration: {setting} (from {flag}): " in captured.err
    assert fragment in captured.err
    for piece in hidden:
        assert piece not in captured.err


@pytest.mark.parametrize(("setting", "value"), ACCEPTED)
def test_a_value_the_configuration_accepts_builds_its_tier(setting: str, value: str) -> None:
    config = load_config({"STRATA_" + setting.upper(): value})
    assert getattr(config, setting) == value
    tiers = build_tiers(config, ManualClock(), NullObserver())  # no I/O
    assert [t.name for t in tiers] == ["memory", setting.split("_", maxsplit=1)[0]]


@pytest.mark.parametrize(("setting", "value", "fragment", "hidden"), REFUSED)
def test_the_tier_parser_refuses_what_the_configuration_refuses(
    setting: str, value: str, fragment: str, hidden: tuple[str, ...]
) -> None:
    parse = {"memcached_servers": parse_servers, "redis_url": check_url}.get(
        setting, connection_string
    )
    with pytest.raises(ValueError):
        parse(value)


def test_a_server_list_error_names_the_item_by_position_and_quotes_it_only_in_str() -> None:
    with pytest.raises(ServerListError) as info:
        parse_servers("a:1,b:2,a:1")
    assert (info.value.position, info.value.reason) == (3, "is listed twice")
    assert str(info.value) == "memcached server 'a:1' is listed twice"


def test_default_config_builds_the_memory_tier_alone() -> None:
    assert [t.name for t in build_tiers(SidecarConfig(), ManualClock(), NullObserver())] == [
        "memory"
    ]


def test_the_process_refuses_a_duplicate_memcached_server_before_starting() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("STRATA_")}
    env["STRATA_MEMCACHED_SERVERS"] = "127.0.0.1:11211,127.0.0.1:11211"
    proc = subprocess.run(
        [sys.executable, "-m", "sidecar", "--print-config"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 2, proc.stderr
    assert proc.stdout == ""
    assert proc.stderr.strip() == (
        "strata-sidecar: invalid configuration: memcached_servers (from "
        "STRATA_MEMCACHED_SERVERS): server 2 of the list is listed twice"
    )
