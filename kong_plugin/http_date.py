"""HTTP-date parsing and formatting (RFC 9110 §5.6.7), on top of `email.utils`.

Accepts the preferred IMF-fixdate (``Sun, 06 Nov 1994 08:49:37 GMT``) and, as RFC 9110
requires of recipients, the obsolete RFC 850 (``Sunday, 06-Nov-94 08:49:37 GMT``) and
asctime (``Sun Nov  6 08:49:37 1994``) forms. A numeric zone offset is applied if present.

Not guaranteed: two-digit RFC 850 years follow `email.utils` (00-68 -> 20xx, 69-99 -> 19xx)
rather than RFC 9110's "more than 50 years in the future" rule; the two agree until 2038.
Out-of-range fields (day 32, hour 25) and years outside 1900-9999 are rejected. The
weekday name is not checked against the date.
"""

from __future__ import annotations

import calendar
import email.utils
from functools import lru_cache


def _parse(value: str) -> float | None:
    try:
        parts = email.utils.parsedate_tz(value)
    except (ValueError, IndexError, OverflowError, TypeError):
        return None
    if parts is None:
        return None
    year, month, day, hour, minute, second = parts[:6]
    if not (
        1900 <= year <= 9999
        and 1 <= month <= 12
        and 1 <= day <= 31
        and 0 <= hour <= 23
        and 0 <= minute <= 59
        and 0 <= second <= 60
    ):
        return None
    offset = parts[9] or 0
    try:
        return float(calendar.timegm((year, month, day, hour, minute, second, 0, 0, 0)) - offset)
    except (ValueError, OverflowError):
        return None


def parse_http_date(value: str | None) -> float | None:
    """Seconds since the epoch for an HTTP-date, or None if `value` is absent or invalid.

    RFC 9111 §5.3: a recipient must treat an invalid date -- notably ``"0"`` -- in
    ``Expires`` as a time in the past; callers do that by checking for None.
    """
    if not value:
        return None
    value = value.strip()
    return _parse_memo(value) if len(value) <= 64 else _parse(value)


_parse_memo = lru_cache(maxsize=1024)(_parse)


def format_http_date(timestamp: float) -> str:
    """IMF-fixdate for `timestamp` (seconds since the epoch), e.g. for ``Date``."""
    return email.utils.formatdate(timestamp, usegmt=True)
