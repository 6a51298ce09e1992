"""README.md stays true: every sidecar setting is documented with its real default."""

from __future__ import annotations

from pathlib import Path

from sidecar.config import SETTINGS, env_name

README = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")


def test_every_setting_is_in_the_configuration_reference() -> None:
    for f in SETTINGS:
        default = f"`{f.default}`" if f.default != "" else '`""`'
        row = next(
            (line for line in README.splitlines() if line.startswith(f"| `{f.name}` |")), None
        )
        assert row is not None, f"README lacks a row for setting {f.name}"
        assert f"`{env_name(f.name)}`" in row
        assert f"`--{f.name.replace('_', '-')}`" in row
        assert default in row, f"README default for {f.name} is not {default}"


def test_quick_start_is_two_commands() -> None:
    quick = README.split("## Quick start", 1)[1].split("```", 2)[1]
    commands = [line.split("#")[0].strip() for line in quick.strip().splitlines()]
    assert commands == ["make run", "make test"]
