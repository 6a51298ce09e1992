"""Plugin durations stay within what the sidecar accepts by default (365 days): a longer
one would pass the config and then be clamped by the sidecar on every store (entries
expiring earlier than configured), so it is refused at config load instead."""

from __future__ import annotations

from typing import Any

import pytest

from kong_plugin.config import parse_config
from kong_plugin.errors import ConfigError
from kong_plugin.schema import MAX_TTL_SECONDS
from sidecar.config import SidecarConfig

YEAR = 365 * 24 * 3600


def test_the_cap_is_the_sidecars_default_max_ttl() -> None:
    assert MAX_TTL_SECONDS == YEAR == SidecarConfig().max_ttl_seconds


@pytest.mark.parametrize(
    "field", ["cache_ttl", "storage_ttl", "stale_while_revalidate", "stale_if_error"]
)
@pytest.mark.parametrize("value", [YEAR + 1, 2**31 - 1, 10**12])
def test_a_duration_over_365_days_is_refused_naming_the_field(field: str, value: int) -> None:
    raw: dict[str, Any] = {field: value}
    if field == "storage_ttl":
        raw["cache_ttl"] = 300
    with pytest.raises(ConfigError) as info:
        parse_config(raw)
    assert info.value.field == field
    assert str(info.value).startswith(f"{field}: ")
    assert str(YEAR) in str(info.value)


def test_365_days_everywhere_is_accepted_with_a_storage_ttl() -> None:
    config = parse_config(
        {
            "cache_ttl": YEAR,
            "storage_ttl": YEAR,
            "stale_while_revalidate": YEAR,
            "stale_if_error": YEAR,
        }
    )
    assert (config.cache_ttl, config.storage_ttl) == (YEAR, YEAR)


@pytest.mark.parametrize("window", ["stale_while_revalidate", "stale_if_error"])
def test_without_storage_ttl_cache_ttl_plus_a_stale_window_must_fit(window: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config({"cache_ttl": YEAR - 10, window: 11})
    assert info.value.field == window
    assert "storage_ttl" in str(info.value) and str(YEAR) in str(info.value)
    parse_config({"cache_ttl": YEAR - 10, window: 10})  # exactly 365 days is fine
