"""Sidecar configuration: every setting, its default and its check, in one place.

`settings` holds the table (`SidecarConfig`, one field per setting), `values` how each
value is read and checked (the tiers' own parsers for their server addresses), `loading`
where values come from (file < environment < flags) and the `ConfigError` a bad one
raises, naming the setting and its source.
"""

from sidecar.config.loading import (
    CONFIG_FILE_ENV,
    ENV_PREFIX,
    FOREIGN_ENV_PREFIXES,
    env_name,
    load_config,
)
from sidecar.config.settings import DEFAULT_LISTEN, SETTING_NAMES, SETTINGS, SidecarConfig
from sidecar.config.values import parse_size

__all__ = [
    "CONFIG_FILE_ENV",
    "DEFAULT_LISTEN",
    "ENV_PREFIX",
    "FOREIGN_ENV_PREFIXES",
    "SETTINGS",
    "SETTING_NAMES",
    "SidecarConfig",
    "env_name",
    "load_config",
    "parse_size",
]
