"""Each container's command line matches the program it runs (docker-compose.yml).

Strata's own programs are parsed by their real argument parsers, imported from the code
(`strata-sidecar`, the plugin server's ``python -m kong_plugin``, the example upstream's
``python -m deploy.upstream.app``), so a flag renamed or removed there fails here. Foreign
images' commands are checked against the flags their documentation lists (each list cites
it): that catches a typo or a flag this file never vetted, not a flag the image dropped.
"""

from __future__ import annotations

import argparse
import shlex
from pathlib import Path
from typing import Any, NoReturn

import pytest

from deploy.upstream import app as upstream_app
from kong_plugin import PLUGIN_NAME
from kong_plugin.pluginserver import cli as plugin_cli
from kong_plugin.pluginserver.metrics_http import parse_listen
from sidecar.cli import build_parser as sidecar_parser
from sidecar.config import load_config
from tests.unit.test_deploy import (
    DEPLOY,
    NODES,
    ROOT,
    _defaults,
    _environment,
    _services,
)

#: kafka-topics.sh (Apache Kafka 3.9, `kafka-topics.sh --help`;
#: https://kafka.apache.org/39/documentation/#basic_ops_add_topic).
KAFKA_TOPICS_FLAGS = {
    "--bootstrap-server",
    "--create",
    "--if-not-exists",
    "--topic",
    "--partitions",
    "--replication-factor",
    "--config",
    "--list",
    "--describe",
    "--command-config",
}
#: kafka-broker-api-versions.sh (Apache Kafka 3.9, `kafka-broker-api-versions.sh --help`).
KAFKA_API_VERSIONS_FLAGS = {"--bootstrap-server", "--command-config", "--version"}
#: memcached 1.6 (`memcached -h`; https://github.com/memcached/memcached/wiki/ConfiguringServer).
MEMCACHED_FLAGS = {"-m", "-I", "-c", "-t", "-p", "-U", "-l", "-v"}
#: redis-server: any redis.conf directive as ``--name value``
#: (https://redis.io/docs/latest/operate/oss_and_stack/management/config/); those vetted.
REDIS_SERVER_FLAGS = {
    "--requirepass",
    "--save",
    "--appendonly",
    "--maxmemory",
    "--maxmemory-policy",
}
#: prometheus 2.55 (`prometheus --help`;
#: https://prometheus.io/docs/prometheus/latest/command-line/prometheus/).
PROMETHEUS_FLAGS = {"--config.file", "--storage.tsdb.path", "--storage.tsdb.retention.time"}
#: filebeat 8.15 (https://www.elastic.co/guide/en/beats/filebeat/8.15/command-line-options.html).
FILEBEAT_FLAGS = {"-e", "-strict.perms"}


def _flags(argv: list[str]) -> set[str]:
    """The options of `argv` (``--name=value`` as ``--name``)."""
    return {arg.split("=", 1)[0] for arg in argv if arg.startswith("-")}


def _option(argv: list[str], name: str) -> str:
    return argv[argv.index(name) + 1]


# --- Strata's programs ----------------------------------------------------------------------


def test_sidecar_healthcheck_is_a_strata_sidecar_command() -> None:
    for _, name in NODES:
        test = _services()[name]["healthcheck"]["test"]
        assert test[0] == "CMD" and test[1] == "strata-sidecar", test
        args = sidecar_parser().parse_args(test[2:])
        assert args.probe
        # The probe checks the address the sidecar listens on: its own STRATA_LISTEN.
        env = {k: _defaults(v) for k, v in _environment(_services()[name]).items()}
        assert load_config(env).listen.startswith("unix:")


def test_sidecar_image_runs_strata_sidecar() -> None:
    dockerfile = (DEPLOY / "sidecar" / "Dockerfile").read_text(encoding="utf-8")
    assert 'exec strata-sidecar \\"$@\\"' in dockerfile
    scripts = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    assert 'strata-sidecar = "sidecar.cli:entry"' in scripts
    for _, name in NODES:
        assert "command" not in _services()[name]  # the image's entrypoint, no arguments


class _CapturedError(Exception):
    def __init__(self, parser: argparse.ArgumentParser) -> None:
        self.parser = parser


def _upstream_parser(monkeypatch: pytest.MonkeyPatch) -> argparse.ArgumentParser:
    """The upstream's own parser: `main` builds it and parses; the parse is intercepted."""

    def capture(self: argparse.ArgumentParser, *args: Any, **kwargs: Any) -> NoReturn:
        raise _CapturedError(self)

    monkeypatch.setattr(argparse.ArgumentParser, "parse_args", capture)
    with pytest.raises(_CapturedError) as caught:
        upstream_app.main([])
    monkeypatch.undo()
    return caught.value.parser


def test_upstream_command_is_accepted_by_its_parser(monkeypatch: pytest.MonkeyPatch) -> None:
    parser = _upstream_parser(monkeypatch)
    command = _services()["upstream"]["command"]
    assert command[:3] == ["python", "-m", "deploy.upstream.app"]
    args = parser.parse_args(command[3:])
    host, _, port = args.listen.rpartition(":")
    assert host == "0.0.0.0" and port.isdigit()
    # The image's default command is the same one.
    dockerfile = (DEPLOY / "sidecar" / "Dockerfile").read_text(encoding="utf-8")
    assert f"CMD {command}".replace("'", '"') in dockerfile


def _plugin_argv(variable: str) -> list[str]:
    for kong, _ in NODES:
        argv = _environment(_services()[kong])[variable].split()
        assert argv[1:3] == ["-m", "kong_plugin"], argv
        return argv[3:]
    raise AssertionError("no Kong node")


@pytest.mark.parametrize(
    "variable",
    ["KONG_PLUGINSERVER_STRATA_CACHE_START_CMD", "KONG_PLUGINSERVER_STRATA_CACHE_QUERY_CMD"],
)
def test_plugin_server_commands_are_accepted_by_its_parser(variable: str) -> None:
    for kong, _ in NODES:  # both nodes run the same commands
        assert (
            _environment(_services()[kong])[variable]
            == _environment(_services()["kong-1"])[variable]
        )
    argv = _plugin_argv(variable)
    assert not set(argv) & set(plugin_cli.REFUSED), argv
    args = plugin_cli.parser(PLUGIN_NAME).parse_args(argv)
    if variable.endswith("QUERY_CMD"):
        assert args.dump
    else:
        assert not args.dump and args.prefix == "/usr/local/kong"
        host, port = parse_listen(args.metrics_listen)
        assert (host, port) == ("0.0.0.0", 9465)


def test_kong_image_checks_the_query_command_at_build_time() -> None:
    dockerfile = (DEPLOY / "kong" / "Dockerfile").read_text(encoding="utf-8")
    query = " ".join(_plugin_argv("KONG_PLUGINSERVER_STRATA_CACHE_QUERY_CMD"))
    assert f"/opt/strata/bin/python3 -m kong_plugin {query} >/dev/null" in dockerfile


# --- foreign images -------------------------------------------------------------------------


def _kafka_init_commands() -> list[list[str]]:
    command = _services()["kafka-init"]["command"]
    assert command[:2] == ["bash", "-ec"], command  # -e: the first failure fails the service
    lines = [shlex.split(line) for line in command[2].splitlines() if line.strip()]
    assert lines
    return lines


def test_kafka_init_creates_the_sidecars_topics() -> None:
    env = {k: _defaults(v) for k, v in _environment(_services()["sidecar-1"]).items()}
    config = load_config(env)
    created = {}
    for argv in _kafka_init_commands():
        assert argv[0] == "/opt/kafka/bin/kafka-topics.sh", argv
        assert _flags(argv) <= KAFKA_TOPICS_FLAGS, _flags(argv) - KAFKA_TOPICS_FLAGS
        assert {"--create", "--if-not-exists"} <= set(argv), argv  # safe to run again
        assert _option(argv, "--bootstrap-server") == config.kafka_bootstrap
        assert _option(argv, "--replication-factor") == "1"  # one broker
        created[_option(argv, "--topic")] = int(_option(argv, "--partitions"))
    assert set(created) == {config.kafka_topic, config.analytics_topic}
    assert created[config.kafka_topic] == config.kafka_topic_partitions


def test_kafka_healthcheck_flags() -> None:
    test = _services()["kafka"]["healthcheck"]["test"]
    assert test[:2] == ["CMD", "/opt/kafka/bin/kafka-broker-api-versions.sh"]
    assert _flags(test[2:]) <= KAFKA_API_VERSIONS_FLAGS
    bootstrap = _environment(_services()["sidecar-1"])["STRATA_KAFKA_BOOTSTRAP"]
    assert _option(test, "--bootstrap-server") == bootstrap


@pytest.mark.parametrize(
    ("service", "program", "flags"),
    [
        ("memcached", "memcached", MEMCACHED_FLAGS),
        ("redis", "redis-server", REDIS_SERVER_FLAGS),
        ("filebeat", "filebeat", FILEBEAT_FLAGS),
    ],
)
def test_foreign_commands_use_documented_flags(service: str, program: str, flags: set[str]) -> None:
    command = [str(arg) for arg in _services()[service]["command"]]
    assert command[0] == program
    assert _flags(command[1:]) <= flags, _flags(command[1:]) - flags


def test_prometheus_flags_and_config_path() -> None:
    prometheus = _services()["prometheus"]
    command = prometheus["command"]  # the image's entrypoint is prometheus itself
    assert _flags(command) <= PROMETHEUS_FLAGS, _flags(command) - PROMETHEUS_FLAGS
    config = next(arg.split("=", 1)[1] for arg in command if arg.startswith("--config.file="))
    mounted = {str(v).split(":")[1]: str(v).split(":")[0] for v in prometheus["volumes"]}
    assert mounted[config] == "./deploy/prometheus/prometheus.yml"
    assert Path(ROOT / mounted[config]).is_file()
