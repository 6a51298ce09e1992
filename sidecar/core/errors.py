"""The sidecar's error types. Translated to gRPC status codes only in `sidecar.rpc`.

A cache miss is never an error: it is a `LookupResult` with outcome MISS.
"""

from __future__ import annotations


class StrataError(Exception):
    """Base of every error the sidecar raises on purpose."""


class InvalidRequestError(StrataError):
    """A request is malformed or over a configured limit (gRPC INVALID_ARGUMENT).

    `field` names the offending field (e.g. ``key``, ``entry.headers[3].name``) and
    `reason` is a short stable label used as a metric label value.
    """

    def __init__(self, field: str, message: str, reason: str = "invalid") -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message
        self.reason = reason


class ConfigError(StrataError):
    """The sidecar configuration is invalid; raised at start-up, never at request time."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"invalid configuration: {field}: {message}")
        self.field = field
        self.message = message


class TierError(StrataError):
    """A tier could not answer (server down, timeout, corrupt value).

    The engine treats it as "this tier has nothing" and carries on; clients never see it.
    """
