"""The plugin's error types (pure parts only; the handler and client add their own).

Not guaranteed: nothing here is raised on the request path. `ConfigError` is raised only by
`kong_plugin.config.parse_config`, i.e. when a plugin instance is started.
"""

from __future__ import annotations


class ConfigError(ValueError):
    """A plugin configuration is invalid.

    Raised by `parse_config` when a value has the wrong type, is out of range, or
    contradicts another field. `field` is the dotted path of the offending field (for
    example ``"sidecar.address"`` or ``"response_code[2]"``); `str(error)` starts with it,
    so a log line always names the field to fix.
    """

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message
