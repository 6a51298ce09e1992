"""Every numeric sidecar setting is finite and within a range an operator can defend,
durations take units, and a bad value stops start-up with one line naming the setting,
where it came from and what is allowed."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from sidecar.app import max_message_bytes
from sidecar.config import SETTINGS, SidecarConfig, load_config
from sidecar.core.errors import ConfigError
from sidecar.core.quantities import Range

ROOT = Path(__file__).resolve().parents[3]
README = (ROOT / "README.md").read_text(encoding="utf-8")
INT_MAX = 2**31 - 1
NUMERIC = [f for f in SETTINGS if type(f.default) in (int, float)]

# One setting per class: (setting, values that must be refused)
REFUSED = {
    "sweep_interval_seconds": ["nan", "inf", "-inf", "-1", "0", "1e-9", "0.01", "2h", "5 parsecs"],
    "tier_open_seconds": ["nan", "inf", "-1", "0", "1e-9", "1e400", "1d"],
    "shutdown_grace_seconds": ["nan", "inf", "-1", "0.0001", "1h", "9" * 30],
    "redis_timeout_ms": ["nan", "inf", "-1", "0", "1e-9", "0.5", "2m", "1.5ms", "5 fortnights"],
    "lookup_budget_ms": ["nan", "-1", "1e-9", "61s", "9" * 30],
    "lease_ttl_ms": ["0", "1ms", "1h", "nan"],
    "max_ttl_seconds": ["nan", "inf", "-1", "0", "0.5", "3651d", "99999999999999999999999"],
    "memory_max_bytes": ["-1", "1k", "1", "17t", "9" * 40, "1.5g", "nan"],
    "max_body_bytes": ["2g", "1g", "0", "-1", "100", "9" * 40, "lots"],
    "max_header_bytes": ["17m", "0", "9" * 40],
    "max_key_bytes": ["0", "65k", "nan"],
    "max_headers": ["0", "15", "5000", "nan", "1e3", "9" * 40],
    "tier_failure_threshold": ["0", "-1", "1001", "inf"],
    "shared_min_hits": ["-1", "16", "nan"],
    "redis_max_bytes": ["-1", "17t", "nan"],
    "budget_sample_seconds": ["0", "nan", "1e-9", "2h"],
}


@pytest.mark.parametrize(
    ("setting", "raw"), [(name, raw) for name, values in REFUSED.items() for raw in values]
)
def test_out_of_range_values_stop_start_up_naming_setting_source_and_range(
    setting: str, raw: str
) -> None:
    env = "STRATA_" + setting.upper()
    with pytest.raises(ConfigError) as info:
        load_config({env: raw})
    message = str(info.value)
    assert message.startswith(f"invalid configuration: {setting} (from {env}): ")
    assert "must be" in message and " to " in message  # the allowed range
    assert "\n" not in message


@pytest.mark.parametrize("raw", ["nan", "inf", "-inf", "1e-9", "-1.0"])
def test_toml_floats_are_checked_too(tmp_path: Path, raw: str) -> None:
    f = tmp_path / "s.toml"
    f.write_text(f"sweep_interval_seconds = {raw}\n")
    with pytest.raises(ConfigError, match=r"sweep_interval_seconds \(from .*s\.toml\): must be"):
        load_config({}, config_file=f)


@pytest.mark.parametrize(
    ("setting", "raw", "value"),
    [
        ("sweep_interval_seconds", "250ms", 0.25),
        ("sweep_interval_seconds", "2m", 120.0),
        ("sweep_interval_seconds", "0.1", 0.1),
        ("sweep_interval_seconds", "1h", 3600.0),
        ("tier_open_seconds", "1.5s", 1.5),
        ("shutdown_grace_seconds", "0", 0.0),
        ("redis_timeout_ms", "250", 250),
        ("redis_timeout_ms", "0.25s", 250),
        ("postgres_timeout_ms", "1m", 60_000),
        ("lookup_budget_ms", "0", 0),
        ("lease_ttl_ms", "10s", 10_000),
        ("generations_cache_ms", "1.5S", 1500),
        ("max_ttl_seconds", "365d", 365 * 24 * 3600),
        ("max_ttl_seconds", "3650d", 3650 * 24 * 3600),
        ("max_ttl_seconds", "90", 90),
        ("max_body_bytes", "512MiB", 512 * 1024**2),
        ("memory_max_bytes", "0", 0),
        ("memory_max_bytes", "1MiB", 1024**2),
        ("memory_max_bytes", "16t", 16 * 1024**4),
        ("redis_max_bytes", "10", 10),
    ],
)
def test_units_and_plain_numbers(setting: str, raw: str, value: float) -> None:
    got = getattr(load_config({"STRATA_" + setting.upper(): raw}), setting)
    assert got == value and type(got) is type(value)


def test_toml_accepts_numbers_in_the_unit_and_strings_with_units(tmp_path: Path) -> None:
    f = tmp_path / "s.toml"
    f.write_text('sweep_interval_seconds = 2\nredis_timeout_ms = "1s"\nmax_ttl_seconds = "30d"\n')
    config = load_config({}, config_file=f)
    assert (config.sweep_interval_seconds, config.redis_timeout_ms) == (2.0, 1000)
    assert config.max_ttl_seconds == 30 * 24 * 3600


def test_every_numeric_setting_has_a_range_its_default_is_in_and_the_readme_states() -> None:
    for f in NUMERIC:
        check = f.metadata["check"]
        assert isinstance(check, Range), f"{f.name} has no Range check"
        check(getattr(SidecarConfig(), f.name))
        row = next(r for r in README.splitlines() if r.startswith(f"| `{f.name}` | `STRATA_"))
        assert check.bounds() in row, f"README row of {f.name} lacks '{check.bounds()}'"
        with pytest.raises(ConfigError):
            load_config({"STRATA_" + f.name.upper(): "nan"})
        with pytest.raises(ConfigError):
            load_config({"STRATA_" + f.name.upper(): "9" * 40})


def test_the_largest_allowed_bodies_keep_the_grpc_message_limit_a_c_int() -> None:
    by_name = {f.name: f.metadata["check"] for f in SETTINGS}
    largest = SidecarConfig(
        max_body_bytes=by_name["max_body_bytes"].high,
        max_header_bytes=by_name["max_header_bytes"].high,
    )
    assert max_message_bytes(largest) <= INT_MAX


def test_a_body_limit_over_the_range_exits_with_one_line_and_no_traceback(
    short_tmp: Path,
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("STRATA_")}
    argv = ["--listen", f"unix:{short_tmp}/s.sock", "--metrics-listen", "off"]
    proc = subprocess.run(
        [sys.executable, "-m", "sidecar", *argv, "--max-body-bytes", "2g"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines() == [
        "strata-sidecar: invalid configuration: max_body_bytes (from --max-body-bytes): "
        "must be from 1KiB to 512MiB, got 2147483648 (2GiB)"
    ]


@pytest.mark.parametrize(
    ("flag", "value"),
    [
        ("max_headers", "1e3"),
        ("max_headers", "\u0665\u0660"),  # Arabic-Indic digits: int() would take them
        ("sweep_interval_seconds", "\u0665"),
        ("memory_max_bytes", "\u0665m"),
        ("metrics_listen", "127.0.0.1:\u0669\u0660"),
    ],
)
def test_numbers_are_ascii_decimal_only(flag: str, value: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config({}, {flag: value})
    assert flag in str(info.value)
    assert "invalid literal" not in str(info.value)


def test_start_up_errors_read_without_errno_prefixes() -> None:
    from sidecar.cli import os_error_text  # noqa: PLC0415

    assert os_error_text(OSError(2, "No such file or directory")) == "No such file or directory"
    assert os_error_text(PermissionError(13, "Permission denied", "/run/x")) == (
        "Permission denied: /run/x"
    )
    assert os_error_text(OSError("plain")) == "plain"
