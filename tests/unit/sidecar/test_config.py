"""Sidecar settings: defaults, precedence, and start-up errors that name the setting."""

from __future__ import annotations

from pathlib import Path

import pytest

from sidecar.cli import main
from sidecar.config import DEFAULT_LISTEN, SidecarConfig, load_config, parse_size
from sidecar.core.errors import ConfigError
from sidecar.core.redact import redact


def test_defaults_work_together_with_the_plugin_default() -> None:
    cfg = load_config({})
    assert cfg == SidecarConfig()
    assert cfg.listen == DEFAULT_LISTEN == "unix:/run/strata/sidecar.sock"
    assert cfg.metrics_listen == "127.0.0.1:9464"
    assert cfg.redis_url == cfg.postgres_dsn == cfg.memcached_servers == cfg.kafka_bootstrap == ""


def test_precedence_file_then_env_then_flags(tmp_path: Path) -> None:
    f = tmp_path / "strata.toml"
    f.write_text('memory_max_bytes = "64MiB"\nadmission = "always"\nlisten = "127.0.0.1:7001"\n')
    env = {"STRATA_CONFIG": str(f), "STRATA_LISTEN": "127.0.0.1:7002"}
    cfg = load_config(env, {"admission": "tinylfu"})
    assert cfg.memory_max_bytes == 64 * 1024 * 1024
    assert cfg.listen == "127.0.0.1:7002"
    assert cfg.admission == "tinylfu"


@pytest.mark.parametrize(
    ("env", "field", "fragment"),
    [
        ({"STRATA_MEMORY_MAX_BYTES": "lots"}, "memory_max_bytes", "not a size"),
        ({"STRATA_MEMORY_MAX_BYTES": "1k"}, "memory_max_bytes", "or from 1MiB to 16TiB"),
        ({"STRATA_LISTEN": "unix:relative.sock"}, "listen", "absolute"),
        ({"STRATA_LISTEN": "localhost"}, "listen", "HOST:PORT"),
        ({"STRATA_METRICS_LISTEN": "1.2.3.4:99999"}, "metrics_listen", "HOST:PORT"),
        ({"STRATA_ADMISSION": "lru"}, "admission", "one of tinylfu, always"),
        ({"STRATA_LOG_LEVEL": "loud"}, "log_level", "one of"),
        ({"STRATA_SHUTDOWN_GRACE_SECONDS": "-1"}, "shutdown_grace_seconds", "got -1"),
        ({"STRATA_KAFKA_BOOTSTRAP": "127.0.0.1"}, "kafka_bootstrap", "is not HOST:PORT"),
        ({"STRATA_KAFKA_BOOTSTRAP": "a:1,b:0"}, "kafka_bootstrap", "server 2 of the list"),
        ({"STRATA_KAFKA_TOPIC": "a/b"}, "kafka_topic", "not a Kafka topic name"),
        ({"STRATA_KAFKA_TOPIC": ".."}, "kafka_topic", "not a Kafka topic name"),
        ({"STRATA_KAFKA_DEAD_LETTER_TOPIC": "x" * 250}, "kafka_dead_letter_topic", "1-249"),
        (
            {"STRATA_KAFKA_DEAD_LETTER_TOPIC": "strata.invalidations"},
            "kafka_dead_letter_topic",
            "is the invalidation topic itself",
        ),
        ({"STRATA_NODE_ID": "node a"}, "node_id", "not a node id"),
        ({"STRATA_KAFKA_TOPIC_PARTITIONS": "0"}, "kafka_topic_partitions", "from 1 to 1000"),
        ({"STRATA_REDIS_URL": "http://127.0.0.1:6379"}, "redis_url", "unsupported scheme 'http'"),
        ({"STRATA_MEMCACHED_SERVERS": "127.0.0.1"}, "memcached_servers", "is not HOST:PORT"),
        ({"STRATA_POSTGRES_DSN": "host=x port"}, "postgres_dsn", "not a valid PostgreSQL"),
        ({"STRATA_NAMESPACE": "a b"}, "namespace", "must be 1-64"),
        ({"STRATA_REDIS_TIMEOUT_MS": "0"}, "redis_timeout_ms", "from 1ms to 1m"),
        ({"STRATA_MEMROY_MAX_BYTES": "1"}, "memroy_max_bytes", "did you mean 'memory_max_bytes'"),
    ],
)
def test_bad_values_stop_start_up_naming_the_setting(
    env: dict[str, str], field: str, fragment: str
) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(env)
    assert info.value.field.startswith(field)
    assert fragment in str(info.value)


def test_unknown_file_key_and_bad_toml(tmp_path: Path) -> None:
    f = tmp_path / "bad.toml"
    f.write_text("listen_addr = 'x'\n")
    with pytest.raises(ConfigError, match="unknown setting"):
        load_config({}, config_file=f)
    f.write_text("listen = \n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config({}, config_file=f)
    f.write_text("memory_max_bytes = true\n")
    with pytest.raises(ConfigError, match="memory_max_bytes"):
        load_config({}, config_file=f)
    with pytest.raises(ConfigError, match="not found"):
        load_config({}, config_file=tmp_path / "missing.toml")


def test_other_components_env_names_are_ignored() -> None:
    assert (
        load_config({"STRATA_TEST_REDIS_URL": "x", "STRATA_PLUGIN_DEBUG": "1"}) == SidecarConfig()
    )


def test_sizes() -> None:
    assert parse_size("1048576") == 1048576
    assert parse_size("64k") == parse_size("64KiB") == parse_size("64KB") == 65536
    assert parse_size("2g") == 2 * 1024**3
    with pytest.raises(ValueError, match="not a size"):
        parse_size("12 parsecs")


def test_secrets_are_masked() -> None:
    assert redact("postgresql://app:s3cret@db:5432/x") == "postgresql://app:***@db:5432/x"
    assert redact("redis://127.0.0.1:6379/0") == "redis://127.0.0.1:6379/0"


def test_cli_exit_codes(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("STRATA_CONFIG", raising=False)
    assert main(["--memory-max-bytes", "nope", "--print-config"]) == 2
    assert "memory_max_bytes (from --memory-max-bytes): not a size" in capsys.readouterr().err
    assert main(["--memory-max-bytes", "1m", "--print-config"]) == 0
    assert '"memory_max_bytes": 1048576' in capsys.readouterr().out
