"""The one check every string field of an event goes through: length, not empty, and
characters (a field's forbidden set, plus lone surrogates, which no field allows)."""

from __future__ import annotations

import re

from sidecar.events.errors import EventError, Reason
from sidecar.events.json_input import quote

__all__ = ["check_text"]

_SURROGATE = re.compile(r"[\ud800-\udfff]")


def check_text(value: str, field: str, limit: int, forbidden: re.Pattern[str], rule: str) -> None:
    """Refuse `value` (named `field` in the message) when it is longer than `limit`
    characters (``too_long``), empty, or holds a character `forbidden` finds or a lone
    surrogate (``bad_value``, with the offending character quoted and `rule` stated)."""
    if len(value) > limit:
        raise EventError(
            Reason.TOO_LONG,
            f"{field} is {len(value)} characters, more than the {limit} allowed",
        )
    if not value:
        raise EventError(Reason.BAD_VALUE, f"{field} is empty")
    bad = forbidden.search(value) or _SURROGATE.search(value)
    if bad:
        raise EventError(
            Reason.BAD_VALUE,
            f"{field} has {quote(bad.group())} at offset {bad.start()} ({rule})",
        )
