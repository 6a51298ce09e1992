"""`strata cdc` options: defaults, environment, and one line naming a bad option (exit 2)."""

from __future__ import annotations

from pathlib import Path

import pytest

from sidecar.cdc.cli import UsageError, build_parser, main, options_from

BASE = [
    "--dsn",
    "postgresql://u:secret@h/db",
    "--kafka-bootstrap",
    "k:9092",
    "--tables",
    "products",
]


def test_defaults_and_environment() -> None:
    opts = options_from(BASE, {})
    assert (opts.slot, opts.publication, opts.topic, opts.poll_ms) == (
        "strata_cdc", "strata_cdc", "strata.invalidations", 50
    )  # fmt: skip
    assert [r.name for r in opts.rules] == ["products"]
    env = {"STRATA_CDC_DSN": "dbname=x", "STRATA_CDC_KAFKA_BOOTSTRAP": "a:1,b:2",
           "STRATA_CDC_MAP": "products=product:{id}", "STRATA_CDC_SLOT": "s1"}  # fmt: skip
    opts = options_from(["--poll-ms", "10"], env)
    assert (opts.dsn, opts.kafka_bootstrap, opts.slot, opts.poll_ms) == (
        "dbname=x",
        "a:1,b:2",
        "s1",
        10,
    )
    assert opts.rules[0].templates[0].text == "product:{id}"
    dbz = options_from(
        ["--debezium-topic", "a.b, c", "--kafka-bootstrap", "k:1", "--tables", "t"], {}
    )
    assert dbz.debezium_topics == ("a.b", "c")
    assert options_from(["--drop-slot", "--dsn", "x", "--slot", "s"], {}).drop_slot


@pytest.mark.parametrize(
    ("argv", "option"),
    [
        (["--kafka-bootstrap", "k:1", "--tables", "t"], "--dsn"),
        (["--dsn", "x", "--tables", "t"], "--kafka-bootstrap"),
        (["--dsn", "x", "--kafka-bootstrap", "nope", "--tables", "t"], "--kafka-bootstrap"),
        (["--dsn", "x", "--kafka-bootstrap", "k:1"], "--tables"),
        ([*BASE, "--slot", "Bad-Slot"], "--slot"),
        ([*BASE, "--poll-ms", "0"], "--poll-ms"),
        ([*BASE, "--poll-ms", "fast"], "--poll-ms"),
        ([*BASE, "--topic", "has space"], "--topic"),
        ([*BASE, "--map", "products=x:{id}"], "--map"),  # mapped twice
        ([*BASE, "--map-file", "/nonexistent.toml"], "--map-file"),
        (["--dsn", "x", "--kafka-bootstrap", "k:1", "--tables", "a b"], "--tables"),
        (["--debezium-topic", "t", "--drop-slot", "--dsn", "x"], "--drop-slot"),
        ([*BASE, "--log-format", "xml"], "--log-format"),
        ([*BASE, "--nope"], "usage"),
    ],
)
def test_bad_options_name_the_option(argv: list[str], option: str) -> None:
    with pytest.raises(UsageError) as info:
        options_from(argv, {})
    assert info.value.option == option


def test_main_exits_2_with_one_line_and_no_password(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([*BASE, "--poll-ms", "-1"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("strata cdc: --poll-ms:")
    assert "secret" not in err


def test_inserts_only_and_once_timeout() -> None:
    opts = options_from([*BASE, "--inserts-only", "products", "--once-timeout-ms", "500"], {})
    assert (opts.inserts_only, opts.once_timeout_ms) == (("products",), 500)
    assert options_from(BASE, {}).once_timeout_ms == 30_000
    with pytest.raises(UsageError) as info:
        options_from([*BASE, "--inserts-only", "orders"], {})
    assert info.value.option == "--inserts-only" and "not a mapped table" in str(info.value)
    with pytest.raises(UsageError) as info:
        options_from([*BASE, "--once-timeout-ms", "5"], {})
    assert info.value.option == "--once-timeout-ms"


def test_the_reference_lists_every_option_of_help() -> None:
    """docs/cdc.md's option table holds every flag of `strata cdc --help`."""
    doc = (Path(__file__).resolve().parents[4] / "docs" / "cdc.md").read_text()
    table = {line.split("|")[1].strip().strip("`").split()[0] for line in doc.splitlines()
             if line.startswith("| `--")}  # fmt: skip
    flags = {
        flag
        for action in build_parser()._actions
        for flag in action.option_strings
        if flag.startswith("--") and flag != "--help"
    }
    assert flags == table
