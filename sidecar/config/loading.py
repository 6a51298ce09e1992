"""Reading the settings: built-in defaults < a TOML file (`--config` / `STRATA_CONFIG`) <
`STRATA_<NAME>` environment variables < command-line flags `--<name>`, later ones winning.

Everything is checked once, here, at start-up; a bad value raises `ConfigError` naming the
setting and where it came from, with the allowed range of a refused number. A secret
setting's value is never quoted in a `ConfigError` (`sidecar.core.redact`). Nothing is
re-read while the sidecar runs.
"""

from __future__ import annotations

import dataclasses
import difflib
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from sidecar.config.settings import SETTING_NAMES, SETTINGS, SidecarConfig
from sidecar.core.errors import ConfigError
from sidecar.core.quantities import Range
from sidecar.core.redact import Scrubber

ENV_PREFIX = "STRATA_"
#: Environment names under STRATA_ that belong to other components and are not ours.
FOREIGN_ENV_PREFIXES = ("STRATA_TEST_", "STRATA_PLUGIN_", "STRATA_BENCH_", "STRATA_KONGSIM_")
#: Not a setting but where the settings file is.
CONFIG_FILE_ENV = "STRATA_CONFIG"


def env_name(setting: str) -> str:
    return ENV_PREFIX + setting.upper()


def _convert(f: dataclasses.Field[Any], raw: Any, source: str) -> Any:
    """Turn a raw value (str from env/flags, typed from TOML) into the setting's type."""
    check = f.metadata["check"]
    try:
        value = _typed(f, raw)
    except (ValueError, OverflowError) as exc:  # a range is worth knowing here too
        hint = f"; {check.describe()}" if isinstance(check, Range) else ""
        raise _config_error(f, source, f"{exc}{hint}", raw) from None
    try:
        if check is not None:
            check(value)
    except ValueError as exc:
        raise _config_error(f, source, str(exc), raw) from None
    return value


def _typed(f: dataclasses.Field[Any], raw: Any) -> Any:
    if isinstance(raw, str):
        return f.metadata["parse"](raw)
    if isinstance(f.default, bool):
        if not isinstance(raw, bool):
            raise ValueError(f"expected true or false, got {raw!r}")
        return raw
    if isinstance(raw, bool) or not isinstance(raw, (int, float)):
        kind = {int: "whole number", float: "number", str: "string"}.get(type(f.default))
        raise ValueError(f"expected a {kind or type(f.default).__name__}, got {raw!r}")
    if isinstance(f.default, str):
        raise ValueError(f"expected a string, got {raw!r}")
    if isinstance(f.default, int) and isinstance(raw, float):
        raise ValueError(f"expected a whole number, got {raw!r}")
    return float(raw) if isinstance(f.default, float) else raw


def _config_error(f: dataclasses.Field[Any], source: str, message: str, raw: Any) -> ConfigError:
    """One line naming the setting and its source; a secret setting's value never in it."""
    if f.metadata["secret"] and isinstance(raw, str):
        message = Scrubber.of_settings([raw]).scrub(message)
    return ConfigError(f"{f.name} (from {source})", message)


def _unknown(name: str, source: str) -> ConfigError:
    close = difflib.get_close_matches(name, sorted(SETTING_NAMES), n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return ConfigError(name, f"unknown setting in {source}{hint}")


def read_file(path: Path) -> dict[str, Any]:
    """Parse a TOML settings file; unknown keys are errors."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ConfigError("config", f"settings file not found: {path}") from exc
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError("config", f"{path} is not valid TOML: {exc}") from exc
    for key in data:
        if key not in SETTING_NAMES:
            raise _unknown(key, str(path))
    return data


def read_env(environ: Mapping[str, str]) -> dict[str, str]:
    """The STRATA_* settings in `environ`; an unknown STRATA_ name is an error."""
    out: dict[str, str] = {}
    for name, value in environ.items():
        if not name.startswith(ENV_PREFIX) or name == CONFIG_FILE_ENV:
            continue
        if name.startswith(FOREIGN_ENV_PREFIXES):
            continue
        setting = name[len(ENV_PREFIX) :].lower()
        if setting not in SETTING_NAMES:
            raise _unknown(setting, f"environment variable {name}")
        out[setting] = value
    return out


def load_config(
    environ: Mapping[str, str],
    overrides: Mapping[str, str] | None = None,
    config_file: Path | None = None,
) -> SidecarConfig:
    """Build the one SidecarConfig from file, environment and flag overrides.

    `overrides` are raw strings from the command line, keyed by setting name. The file is
    `config_file`, else the path in STRATA_CONFIG, else none.
    """
    by_name = {f.name: f for f in SETTINGS}
    values: dict[str, Any] = {}
    file_path = config_file or (
        Path(environ[CONFIG_FILE_ENV]) if environ.get(CONFIG_FILE_ENV) else None
    )
    if file_path is not None:
        for key, raw in read_file(file_path).items():
            values[key] = _convert(by_name[key], raw, str(file_path))
    for key, raw in read_env(environ).items():
        values[key] = _convert(by_name[key], raw, env_name(key))
    for key, raw in (overrides or {}).items():
        if key not in by_name:
            raise _unknown(key, "command line")
        values[key] = _convert(by_name[key], raw, "--" + key.replace("_", "-"))
    return SidecarConfig(**values)
