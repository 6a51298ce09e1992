"""README.md stays true: every sidecar setting is documented with its real default."""

from __future__ import annotations

import json
from pathlib import Path

from kong_plugin.schema import SCHEMA
from sidecar.config import SETTINGS, env_name

README = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
SIDECAR_REFERENCE = README.split("## Configuration reference — sidecar", 1)[1].split("\n## ", 1)[0]
PLUGIN_REFERENCE = README.split("### Configuration reference — plugin", 1)[1].split("\n### ", 1)[0]


def test_every_setting_is_in_the_configuration_reference() -> None:
    for f in SETTINGS:
        default = f"`{f.default}`" if f.default != "" else '`""`'
        row = next(
            (line for line in SIDECAR_REFERENCE.splitlines() if line.startswith(f"| `{f.name}` |")),
            None,
        )
        assert row is not None, f"README lacks a row for setting {f.name}"
        assert f"`{env_name(f.name)}`" in row
        assert f"`--{f.name.replace('_', '-')}`" in row
        assert default in row, f"README default for {f.name} is not {default}"


def test_quick_start_is_two_commands() -> None:
    quick = README.split("## Quick start", 1)[1].split("```", 2)[1]
    commands = [line.split("#")[0].strip() for line in quick.strip().splitlines()]
    assert commands == ["make run", "make test"]


def _plugin_fields(
    fields: list[dict[str, dict[str, object]]], prefix: str = ""
) -> list[tuple[str, dict[str, object]]]:
    out = []
    for f in fields:
        ((name, spec),) = f.items()
        if spec.get("type") == "record" and "fields" in spec:
            out.extend(_plugin_fields(spec["fields"], prefix + name + "."))  # type: ignore[arg-type]
        else:
            out.append((prefix + name, spec))
    return out


def test_every_plugin_field_is_in_the_configuration_reference() -> None:
    for name, spec in _plugin_fields(SCHEMA):
        row = next(
            (line for line in PLUGIN_REFERENCE.splitlines() if line.startswith(f"| `{name}` |")),
            None,
        )
        assert row is not None, f"README lacks a row for plugin field {name}"
        if "default" in spec:
            assert f"`{json.dumps(spec['default'])}`" in row, f"README default of {name} is stale"
