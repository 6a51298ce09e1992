"""Secrets in the sidecar's settings never reach its output: every URL and DSN form is
masked in `--print-config`, in config errors and in anything logged."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from sidecar.cli import mask_secrets_in_output, scrubber_for
from sidecar.config import SidecarConfig, load_config
from sidecar.core.errors import ConfigError
from sidecar.core.redact import RedactingFormatter, Scrubber, redact, secrets_in

ROOT = Path(__file__).resolve().parents[3]

# (setting, value, a piece of its secret, what must survive, the secret as a driver reads it)
FORMS = [
    ("redis_url", "redis://app:Pw-user-1@cache:6379/0", "Pw-user-1", "redis://app:***@cache", ""),
    ("redis_url", "redis://:Pw-nouser-2@cache:6379", "Pw-nouser-2", "redis://:***@cache:6379", ""),
    (
        "redis_url",
        "unix://:Pw-unix-3@/run/redis.sock?db=1",
        "Pw-unix-3",
        "@/run/redis.sock?db=1",
        "",
    ),
    (
        "redis_url",
        "rediss://Tok-user-only-4@cache:6380",
        "Tok-user-only-4",
        "rediss://***@cache",
        "",
    ),
    ("redis_url", "redis://cache:6379/0?password=Pw-query-5", "Pw-query-5", "cache:6379/0?", ""),
    ("redis_url", "redis://cache/0?db=1&PassWord=Pw-case-6&x=y", "Pw-case-6", "&x=y", ""),
    ("redis_url", "redis://cache/0?pass=Pw-7&x=1", "Pw-7", "&x=1", ""),
    ("redis_url", "redis://cache/0?pwd=Pw-8x", "Pw-8x", "redis://cache/0?pwd=***", ""),
    ("redis_url", "redis://cache/0?AUTH=Pw-9x", "Pw-9x", "redis://cache/0?AUTH=***", ""),
    ("redis_url", "redis+cluster://:Pw-cluster-10@h1:7000,h2:7001", "Pw-cluster-10", "h2:7001", ""),
    ("redis_url", "redis://:Pw%2Fenc-11@cache:6379", "enc-11", "@cache:6379", "Pw/enc-11"),
    ("postgres_dsn", "postgresql://app:Pw-pg-12@db:5432/x", "Pw-pg-12", "app:***@db", ""),
    ("postgres_dsn", "postgresql://db/x?user=app&password=Pw-pgq-13", "Pw-pgq-13", "user=app", ""),
    ("postgres_dsn", "host=db password=Pw-kv-14 dbname=x", "Pw-kv-14", "host=db", ""),
    (
        "postgres_dsn",
        "host=db password = 'Pw se\\'cret-15' dbname=x",
        "cret-15",
        "dbname=x",
        "Pw se'cret-15",
    ),
    ("postgres_dsn", "host=db sslpassword=Pw-ssl-16 port=5432", "Pw-ssl-16", "port=5432", ""),
    ("postgres_dsn", "host=db PASSWORD=Pw-upper-17", "Pw-upper-17", "host=db", ""),
    ("postgres_dsn", "password=Pw\\ esc-18 host=db", "esc-18", "host=db", "Pw esc-18"),
]
COLUMNS = ("setting", "value", "secret", "kept", "decoded")


@pytest.mark.parametrize(COLUMNS, FORMS)
def test_every_form_is_masked_in_the_printed_settings(
    setting: str, value: str, secret: str, kept: str, decoded: str
) -> None:
    overrides: dict[str, Any] = {setting: value}
    config = SidecarConfig(**overrides)
    shown = config.redacted()[setting]
    assert secret not in shown
    assert "***" in shown
    assert kept in shown
    assert secret not in repr(config)


@pytest.mark.parametrize(COLUMNS, FORMS)
def test_every_form_gives_its_secrets_to_the_scrubber(
    setting: str, value: str, secret: str, kept: str, decoded: str
) -> None:
    full = decoded or secret
    line = f"connect failed for {value}: {full!r} refused; {json.dumps(full)}"
    scrubbed = Scrubber.of_settings([value]).scrub(line)
    assert secret not in scrubbed and full not in scrubbed
    assert redact(redact(value)) == redact(value)  # masking twice changes nothing


def test_malformed_key_value_strings_are_masked_by_pattern() -> None:
    # an unterminated quote: not libpq syntax, still masked to the end
    assert redact("host=db password='Pw-open") == "host=db password=***"
    assert secrets_in("host=db password='Pw-open") == ["Pw-open"]
    assert redact("host=db") == "host=db"
    assert redact("") == ""


def test_an_at_sign_after_the_host_masks_more_never_less() -> None:
    shown = redact("redis://:pa/ss@cache:6379")  # '/' unencoded in the password
    assert "pa" not in shown and "ss" not in shown.split("@")[0]


def test_config_errors_of_secret_settings_quote_no_piece_of_the_secret() -> None:
    # libpq quotes the bad token, redis-py the text it took for a port: both are the secret
    cases = {
        "STRATA_POSTGRES_DSN": ("postgresql://u:pa%zzword@db/x", "zzword"),
        "STRATA_REDIS_URL": ("redis://:pa/ss-word@cache:6379", "ss-word"),
    }
    for env, (value, piece) in cases.items():
        with pytest.raises(ConfigError) as info:
            load_config({env: value})
        assert piece not in str(info.value), str(info.value)
        assert "'pa'" not in str(info.value) and '"pa' not in str(info.value)


@pytest.mark.parametrize(
    ("env", "value", "pieces"),
    [
        # libpq stops at the first word after the password and quotes it
        ("STRATA_POSTGRES_DSN", "host=db password=correct horse battery", ("horse",)),
        # and quotes what follows the first '@' when the URL has spaces
        ("STRATA_POSTGRES_DSN", "postgresql://u:Tr0ub@Horse Battery@db/x", ("Horse", "Battery")),
        # not a secret setting, but a password written into it must not be echoed
        ("STRATA_MEMCACHED_SERVERS", "muser:McPW2@cache:11211", ("McPW2", "muser")),
    ],
)
def test_parse_errors_echo_no_piece_of_what_may_be_a_password(
    env: str, value: str, pieces: tuple[str, ...]
) -> None:
    with pytest.raises(ConfigError) as info:
        load_config({env: value})
    for piece in pieces:
        assert piece not in str(info.value), str(info.value)


def test_log_lines_are_scrubbed_whole_message_extras_and_traceback() -> None:
    dsn = "host=db password='Pw\"json-19' dbname=x"
    scrubber = Scrubber.of_settings([dsn, "redis://:Pw-log-20@cache:6379"])
    formatter = RedactingFormatter(logging.Formatter("%(message)s %(extra_field)s"), scrubber)
    try:
        raise RuntimeError('driver said: password=Pw-log-20 and Pw"json-19')
    except RuntimeError:
        record = logging.LogRecord("t", logging.WARNING, __file__, 1, "dsn %s", (dsn,), None)
        record.exc_info = sys.exc_info()
    record.extra_field = json.dumps({"url": "redis://:Pw-log-20@cache:6379"})
    out = formatter.format(record)
    assert "Pw-log-20" not in out and "json-19" not in out
    assert "RuntimeError" in out and "dbname=x" in out


def test_print_config_prints_no_secret(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("STRATA_")}
    env["STRATA_POSTGRES_DSN"] = "host=127.0.0.1 password='kv se\\'cret-21' sslpassword=ssl-22"
    argv = ["--redis-url", "redis://:url-secret-23@127.0.0.1:6379/0?password=query-secret-24"]
    proc = subprocess.run(
        [sys.executable, "-m", "sidecar", "--print-config", *argv],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    output = proc.stdout + proc.stderr
    for secret in ("cret-21", "ssl-22", "url-secret-23", "query-secret-24"):
        assert secret not in output
    shown = json.loads(proc.stdout)
    assert shown["postgres_dsn"] == "host=127.0.0.1 password=*** sslpassword=***"
    assert shown["redis_url"] == "redis://:***@127.0.0.1:6379/0?password=***"


def test_the_process_masks_its_log_handlers_and_uncaught_tracebacks(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    config = SidecarConfig(redis_url="redis://:Pw-hook-25@cache:6379")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    root = logging.getLogger()
    monkeypatch.setattr(root, "handlers", [handler])
    monkeypatch.setattr(sys, "excepthook", sys.excepthook)
    mask_secrets_in_output(scrubber_for(config))
    logging.getLogger("strata.test").warning("driver: %s", "AUTH Pw-hook-25 refused")
    try:
        raise ValueError("bad URL redis://:Pw-hook-25@cache:6379")
    except ValueError as exc:
        sys.excepthook(type(exc), exc, exc.__traceback__)
    err = capsys.readouterr().err
    assert "Pw-hook-25" not in err
    assert "driver: AUTH *** refused" in err and "ValueError: bad URL" in err


@pytest.mark.parametrize("line", ["password" * 12_000, "redis://" * 12_000, "a" * 100_000])
def test_scrubbing_a_long_hostile_line_takes_linear_time(line: str) -> None:
    scrubber = Scrubber.of_settings(["redis://:Pw-time-26@cache:6379"])
    started = time.monotonic()
    scrubber.scrub(line)
    assert time.monotonic() - started < 3.0  # ~0.2 s at most here; quadratic took 10-30 s
