"""`strata purge`: argument handling, token sources, exit codes, and one purge end to end
against the real admin server (fake Invalidations behind it)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from sidecar.admin import purge_cli
from sidecar.events import InvalidationEvent
from tests.unit.sidecar.admin.conftest import TOKEN, Admin


def _run(argv: list[str]) -> int:
    return purge_cli.main(argv)


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        ([], "nothing to purge"),
        (["--soft"], "nothing to purge"),
        (["--all", "--tag", "a"], "--all purges everything"),
        (["--tag", "a", "--admin", "ftp://x"], "--admin must be"),
        (["--tag"], "expected one argument"),
        (["--bogus"], "unrecognized arguments"),
    ],
)
def test_usage_errors_exit_2(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, argv: list[str], words: str
) -> None:
    monkeypatch.setenv(purge_cli.TOKEN_ENV, "t")
    assert _run(argv) == 2
    assert words in capsys.readouterr().err


def test_help_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    assert _run(["--help"]) == 0
    assert "usage: strata purge" in capsys.readouterr().out


def test_no_token_is_a_usage_error(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv(purge_cli.TOKEN_ENV, raising=False)
    assert _run(["--tag", "a"]) == 2
    assert "no token" in capsys.readouterr().err
    empty = tmp_path / "t"
    empty.write_text("\n")
    assert _run(["--tag", "a", "--token-file", str(empty)]) == 2
    assert "is empty" in capsys.readouterr().err
    assert _run(["--tag", "a", "--token-file", str(tmp_path / "missing")]) == 2
    assert "cannot read the token file" in capsys.readouterr().err


def test_event_of_combines_items() -> None:
    args = purge_cli.build_parser().parse_args(
        ["--tag", "a", "--tag", "b", "--url", "/u", "--prefix", "/p/", "--key", "k", "--route", "r"]
    )
    assert purge_cli.event_of(args) == {
        "tags": ["a", "b"],
        "urls": ["/u"],
        "prefixes": ["/p/"],
        "keys": ["k"],
        "routes": ["r"],
    }
    args = purge_cli.build_parser().parse_args(["--all", "--soft"])
    assert purge_cli.event_of(args) == {"flush": "*", "soft": True}
    args = purge_cli.build_parser().parse_args(["--flush", "catalog"])
    assert purge_cli.event_of(args) == {"flush": "catalog"}


def test_unreachable_admin_exits_1(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from tools.services.procs import free_port  # noqa: PLC0415

    monkeypatch.setenv(purge_cli.TOKEN_ENV, "t")
    assert _run(["--tag", "a", "--admin", f"http://127.0.0.1:{free_port()}"]) == 1
    assert "cannot reach" in capsys.readouterr().err


async def test_purge_through_the_admin_api(
    admin: Admin,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    url = f"http://{admin.host}:{admin.port}"
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    monkeypatch.setenv("http_proxy", "http://127.0.0.1:9")  # never used for the admin API
    argv = ["--tag", "products:42", "--soft", "--admin", url, "--token-file", str(token_file)]
    assert await asyncio.to_thread(_run, argv) == 0
    assert capsys.readouterr().out == "purged id=evt-1 dropped=3 queued=yes duplicate=no\n"
    assert admin.invalidations.events == [InvalidationEvent(tags=("products:42",), soft=True)]

    monkeypatch.setenv(purge_cli.TOKEN_ENV, "wrong")
    assert await asyncio.to_thread(_run, ["--all", "--admin", url]) == 1
    err = capsys.readouterr().err
    assert err.startswith("strata purge: refused (401):")
    assert len(admin.invalidations.events) == 1

    assert (
        await asyncio.to_thread(_run, ["--key", "k", "--soft", "--admin", url, "--token", TOKEN])
        == 1
    )
    assert "refused (400)" in capsys.readouterr().err
