"""The bearer token: where it comes from, and every request checked against it."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from sidecar.admin.auth import check_authorization, load_token
from sidecar.config import load_config
from sidecar.core.errors import ConfigError
from tests.unit.sidecar.admin.conftest import TOKEN, Admin


@pytest.mark.parametrize(
    ("headers", "challenge"),
    [
        ("", 'Bearer realm="strata-admin"'),
        (
            "Authorization: Bearer wrong-token\r\n",
            'Bearer realm="strata-admin", error="invalid_token"',
        ),
        (f"Authorization: Basic {TOKEN}\r\n", 'Bearer realm="strata-admin"'),
        (
            f"Authorization: Bearer {TOKEN}x\r\n",
            'Bearer realm="strata-admin", error="invalid_token"',
        ),
        (
            f"Authorization: Bearer {TOKEN} extra\r\n",
            'Bearer realm="strata-admin", error="invalid_token"',
        ),
        (f"Authorization: {TOKEN}\r\n", 'Bearer realm="strata-admin"'),
    ],
)
async def test_without_the_right_token_401_and_nothing_purged(
    admin: Admin, caplog: pytest.LogCaptureFixture, headers: str, challenge: str
) -> None:
    caplog.set_level(logging.INFO, "strata.admin")
    for method, path in (("DELETE", "/proxy-cache"), ("POST", "/purge?all=true")):
        status, got, body = await admin.request(method, path, headers=headers)
        assert status == 401
        assert got["www-authenticate"] == challenge
        assert "Authorization: Bearer" in json.loads(body)["message"]
    assert admin.invalidations.events == []
    assert admin.engine.peeks == []
    assert admin.observer.counts[("proxy_cache", "unauthorized")] == 1
    assert admin.observer.counts[("purge", "unauthorized")] == 1
    refused = [r for r in caplog.records if getattr(r, "event.action", "") == "admin_refused"]
    assert len(refused) == 1  # the second within a few seconds is only counted
    assert refused[0].levelno == logging.WARNING
    assert getattr(refused[0], "event.reason") == "unauthorized"
    assert getattr(refused[0], "client.address").startswith("127.0.0.1:")
    assert getattr(refused[0], "http.request.method") == "DELETE"
    assert getattr(refused[0], "url.path") == "/proxy-cache"
    assert TOKEN not in caplog.text


async def test_unknown_paths_are_not_revealed_without_the_token(admin: Admin) -> None:
    status, _, _ = await admin.request("GET", "/secret-path", headers="")
    assert status == 401


async def test_the_right_token_in_any_scheme_case_is_accepted(admin: Admin) -> None:
    for scheme in ("Bearer", "bearer", "BEARER"):
        status, _, _ = await admin.request(
            "DELETE", "/proxy-cache", headers=f"Authorization: {scheme} {TOKEN}\r\n"
        )
        assert status == 204
    assert len(admin.invalidations.events) == 3


async def test_an_unauthorized_body_is_refused_401_before_its_size(admin: Admin) -> None:
    status, _, _ = await admin.request("POST", "/purge", headers="Content-Length: 999999999\r\n")
    assert status == 401
    assert admin.observer.counts == {("purge", "unauthorized"): 1}


def test_check_authorization_labels() -> None:
    assert check_authorization([], "t0k").problem == "missing"
    assert check_authorization(["Basic t0k"], "t0k").problem == "other_scheme"
    assert check_authorization(["Bearer"], "t0k").problem == "malformed"
    assert check_authorization(["Bearer t0k", "Bearer t0k"], "t0k").problem == "malformed"
    assert check_authorization(["Bearer t0kk"], "t0k").problem == "wrong"
    assert check_authorization(["Bearer t0k"], "t0k").allowed


def test_load_token_sources(tmp_path: Path) -> None:
    assert load_token("", "") is None
    assert load_token("  abcdefghijklmnop  ", "") == "abcdefghijklmnop"
    path = tmp_path / "token"
    path.write_text("\n  file-token-0123456789 \n")
    assert load_token("", str(path)) == "file-token-0123456789"


@pytest.mark.parametrize(
    ("token", "content", "field", "words"),
    [
        ("a", "x", "admin_token", "not both"),
        ("   ", None, "admin_token", "empty"),
        ("two words", None, "admin_token", "without spaces"),
        ("", "", "admin_token_file", "empty"),
        ("", " \n\t", "admin_token_file", "empty"),
        ("", "caf\u00e9", "admin_token_file", "printable ASCII"),
        ("", "missing", "admin_token_file", "cannot read"),
        ("abcdefghijklmno", None, "admin_token", "15 characters; at least 16"),
        ("", "short-token\n", "admin_token_file", "11 characters; at least 16"),
    ],
)
def test_unusable_tokens_are_config_errors_naming_the_setting(
    tmp_path: Path, token: str, content: str | None, field: str, words: str
) -> None:
    path = ""
    if content is not None:
        file = tmp_path / "token"
        if content != "missing":
            file.write_text(content, encoding="utf-8")
        path = str(file)
    with pytest.raises(ConfigError) as err:
        load_token(token, path)
    assert err.value.field == field
    assert words in err.value.message


def test_settings_check_the_token_file_at_load_time(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        load_config({"STRATA_ADMIN_TOKEN_FILE": str(tmp_path / "nope")})
    assert "admin_token_file" in str(err.value)
    assert "cannot read" in str(err.value)
    with pytest.raises(ConfigError) as err:
        load_config({}, {"admin_listen": "nowhere"})
    assert "admin_listen" in str(err.value)


@pytest.mark.parametrize(
    ("listen", "words"),
    [
        ("0.0.0.0:99999", "the port 99999 is out of range (0-65535)"),
        ("127.0.0.1:http", "'http' is not a number"),
        ("nowhere", "expected HOST:PORT"),
        (":8790", "expected HOST:PORT"),
        ("[::1:8790", "unbalanced brackets"),
        ("unix:/run/strata/admin.sock", "TCP only"),
    ],
)
def test_a_bad_admin_listen_says_what_is_wrong_and_nothing_of_unix_paths(
    listen: str, words: str
) -> None:
    with pytest.raises(ConfigError) as err:
        load_config({"STRATA_ADMIN_LISTEN": listen})
    assert err.value.field.startswith("admin_listen")
    assert words in err.value.message
    assert "unix:/path" not in err.value.message


def test_a_short_token_is_a_config_error_that_does_not_show_it() -> None:
    with pytest.raises(ConfigError) as err:
        load_config({"STRATA_ADMIN_TOKEN": "short-secret"})
    assert err.value.field.startswith("admin_token ")
    assert "at least 16" in err.value.message
    assert "short-secret" not in str(err.value)
    for listen in ("[::1]:8790", "localhost:0", "0.0.0.0:65535"):
        assert load_config({"STRATA_ADMIN_LISTEN": listen}).admin_listen == listen


def test_the_token_is_masked_in_the_printed_settings() -> None:
    config = load_config({"STRATA_ADMIN_TOKEN": "very-secret-token-value"})
    assert config.admin_token == "very-secret-token-value"
    assert config.redacted()["admin_token"] == "***"
    assert "very-secret-token-value" not in repr(config)
    assert load_config({}).redacted()["admin_token"] == ""
    assert load_config({}).admin_listen == "127.0.0.1:8790"
