"""The admin API's bearer token: where it comes from and how a request is checked.

The token is ``admin_token`` or the content of ``admin_token_file`` (read once at start,
surrounding whitespace removed); with neither, the admin API does not run. It must be
printable ASCII without spaces (what a client can send in ``Authorization: Bearer``), of
`MIN_TOKEN_CHARS` to `MAX_TOKEN_CHARS` characters.

Not guaranteed: the comparison is constant-time in the token's content, not in its length;
the token is not rotated while the sidecar runs (restart to change it); the transport is
plain HTTP, so the token is only as private as the network between client and sidecar
(loopback by default).
"""

from __future__ import annotations

import hmac
import re
from dataclasses import dataclass
from pathlib import Path

from sidecar.core.errors import ConfigError

__all__ = [
    "MAX_TOKEN_CHARS",
    "MIN_TOKEN_CHARS",
    "Verdict",
    "check_authorization",
    "check_token",
    "check_token_file_setting",
    "check_token_setting",
    "load_token",
    "read_token_file",
]

#: Longest token accepted (it travels in one header line).
MAX_TOKEN_CHARS = 1024
#: Shortest token accepted (a shorter one is easy to guess).
MIN_TOKEN_CHARS = 16
_TOKEN_TEXT = re.compile(r"[!-~]+")
_BEARER = re.compile(r"(?i:bearer) +(\S+) *")


def check_token(token: str) -> None:
    """ValueError saying what is wrong with `token` (as given, whitespace not trimmed)."""
    if not token:
        raise ValueError("the admin token is empty")
    if len(token) > MAX_TOKEN_CHARS:
        raise ValueError(f"the admin token is longer than {MAX_TOKEN_CHARS} characters")
    if not _TOKEN_TEXT.fullmatch(token):
        raise ValueError("the admin token must be printable ASCII without spaces")
    if len(token) < MIN_TOKEN_CHARS:
        raise ValueError(
            f"the admin token is {len(token)} characters; at least {MIN_TOKEN_CHARS} are "
            "required (a short token is easy to guess)"
        )


def check_token_setting(value: str) -> None:
    """The check of ``admin_token``: empty (not set) or a usable token once trimmed."""
    if value:
        check_token(value.strip())


def read_token_file(path: str) -> str:
    """The token in the file at `path`, trimmed; ValueError if it cannot be read or is not
    a usable token."""
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        raise ValueError(f"cannot read {path}: {exc.strerror or exc}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ValueError(f"{path} is not UTF-8 text") from None
    try:
        check_token(text.strip())
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from None
    return text.strip()


def check_token_file_setting(value: str) -> None:
    """The check of ``admin_token_file``: empty (not set) or a file holding a token."""
    if value:
        read_token_file(value)


def load_token(admin_token: str, admin_token_file: str) -> str | None:
    """The configured token; None when neither setting is given (no admin API).
    `ConfigError` naming the setting: both given, an unreadable file, an empty, short or
    otherwise unusable token."""
    if admin_token and admin_token_file:
        raise ConfigError("admin_token", "set admin_token or admin_token_file, not both")
    setting = "admin_token" if admin_token else "admin_token_file"
    try:
        if admin_token:
            check_token(admin_token.strip())
            return admin_token.strip()
        return read_token_file(admin_token_file) if admin_token_file else None
    except ValueError as exc:
        raise ConfigError(setting, str(exc)) from None


@dataclass(frozen=True, slots=True)
class Verdict:
    """Whether a request may go on; `problem` is the label of a refusal (``missing``,
    ``other_scheme``, ``malformed``, ``wrong``) for logs, empty when allowed."""

    allowed: bool
    problem: str = ""


def check_authorization(values: list[str], token: str) -> Verdict:
    """Check the request's ``Authorization`` header values against `token`."""
    if not values:
        return Verdict(False, "missing")
    if len(values) > 1:
        return Verdict(False, "malformed")
    value = values[0]
    if not value.lower().startswith("bearer"):
        return Verdict(False, "other_scheme")
    m = _BEARER.fullmatch(value)
    if not m:
        return Verdict(False, "malformed")
    presented = m.group(1).encode("latin-1")
    if hmac.compare_digest(presented, token.encode("ascii")):
        return Verdict(True)
    return Verdict(False, "wrong")
