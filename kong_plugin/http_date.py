"""HTTP-date parsing and formatting (RFC 9110 §5.6.7), with a strict parser of its own.

`parse_http_date` accepts exactly the three forms RFC 9110 requires recipients to read:

* IMF-fixdate, the preferred one: ``Sun, 06 Nov 1994 08:49:37 GMT``;
* the obsolete RFC 850 form: ``Sunday, 06-Nov-94 08:49:37 GMT``. Its two-digit year is
  read as RFC 9110 says: the year with those last two digits, unless the timestamp would
  then be more than 50 years in the future -- then the most recent past year with those
  digits. That depends on the current time: `parse_http_date` takes `now` (seconds since
  the epoch; default: the real clock);
* the obsolete asctime form: ``Sun Nov  6 08:49:37 1994`` (a one-digit day is padded with
  a space; a two-digit one, ``06`` included, is not).

Day and month names and ``GMT`` are compared case-insensitively; everything else is the
grammar to the character: one space where the grammar has one, two digits for day, hour,
minute and second, four for the year (0001-9999), ``GMT`` as the only zone. Fields out of
range (day 31 in a 30-day month, 29 February outside leap years, hour 24, minute 60) make
the date invalid; second 60 (a leap second) is accepted and counts as the next second.
Only spaces and tabs around the whole value are ignored. So numeric zones, other zone
names, missing seconds, ``0``, ``-1`` and anything else give None -- which, for
``Expires``, means "already expired" (RFC 9111 §5.3; see `kong_plugin.freshness`).

Results are memoised per text only where they do not depend on `now` (the field parse is;
the RFC 850 century is chosen on every call). Timestamps are floats, any year 0001-9999
(so dates past 2038 and far in the future work; callers clamp lifetimes).

Not guaranteed: the weekday is not checked against the date (RFC 9110 does not ask it of
recipients); `format_http_date` writes IMF-fixdate only, for timestamps from 1970 on.
"""

from __future__ import annotations

import calendar
import re
import time
from functools import lru_cache
from typing import NamedTuple

_DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_LONG_DAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
_MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
_DAY_NAMES = frozenset(_DAYS)
_LONG_DAY_NAMES = frozenset(_LONG_DAYS)
_MONTH_NUMBER = {name: n for n, name in enumerate(_MONTHS, start=1)}

_TIME = r"([0-9]{2}):([0-9]{2}):([0-9]{2})"
_IMF_RE = re.compile(
    rf"([A-Za-z]{{3}}), ([0-9]{{2}}) ([A-Za-z]{{3}}) ([0-9]{{4}}) {_TIME} GMT", re.I
)
_RFC850_RE = re.compile(
    rf"([A-Za-z]{{6,9}}), ([0-9]{{2}})-([A-Za-z]{{3}})-([0-9]{{2}}) {_TIME} GMT", re.I
)
_ASCTIME_RE = re.compile(
    rf"([A-Za-z]{{3}}) ([A-Za-z]{{3}}) ([0-9]{{2}}| [0-9]) {_TIME} ([0-9]{{4}})", re.I
)
#: The longest valid HTTP-date (an RFC 850 date on a Wednesday) is 33 characters.
_MAX_LEN = 40
_OWS = " \t"
#: RFC 9110 §5.6.7: a two-digit year may not put the date more than 50 years ahead.
_FUTURE_YEARS = 50


class _Fields(NamedTuple):
    """A parsed date, before the RFC 850 century is known (`two_digit_year`)."""

    year: int
    month: int
    day: int
    hour: int
    minute: int
    second: int
    two_digit_year: bool


def _valid(f: _Fields) -> bool:
    if not (1 <= f.month <= 12 and f.hour <= 23 and f.minute <= 59 and f.second <= 60):
        return False
    if not f.two_digit_year and f.year < 1:
        return False
    # a two-digit year's century is chosen later; its leap years are checked then
    year = 2000 + f.year if f.two_digit_year else f.year
    return 1 <= f.day <= calendar.monthrange(year, f.month)[1]


def _fields(value: str) -> _Fields | None:
    """The fields of one of the three forms, range-checked; None if it is none of them
    (`value` is at most `_MAX_LEN` long: the memo stays small)."""
    m = _IMF_RE.fullmatch(value)
    if m is not None:
        day_name, day, month, year, hh, mm, ss = m.groups()
        days, two_digit = _DAY_NAMES, False
    elif (m := _RFC850_RE.fullmatch(value)) is not None:
        day_name, day, month, year, hh, mm, ss = m.groups()
        days, two_digit = _LONG_DAY_NAMES, True
    elif (m := _ASCTIME_RE.fullmatch(value)) is not None:
        day_name, month, day, hh, mm, ss, year = m.groups()
        days, two_digit = _DAY_NAMES, False
    else:
        return None
    month_number = _MONTH_NUMBER.get(month.lower())
    if day_name.lower() not in days or month_number is None:
        return None
    fields = _Fields(
        int(year), month_number, int(day.strip()), int(hh), int(mm), int(ss), two_digit
    )
    return fields if _valid(fields) else None


_fields_memo = lru_cache(maxsize=1024)(_fields)


def _timestamp(f: _Fields, year: int) -> float:
    # calendar.timegm goes through datetime.date: any year 1-9999; second 60 rolls over
    return float(calendar.timegm((year, f.month, f.day, f.hour, f.minute, f.second, 0, 0, 0)))


def _rfc850_year(f: _Fields, now: float) -> int | None:
    """RFC 9110 §5.6.7: the latest year ending in the two digits whose date is at most 50
    years after `now`."""
    clock = time.gmtime(now)
    limit = (
        clock.tm_year + _FUTURE_YEARS,
        clock.tm_mon,
        clock.tm_mday,
        clock.tm_hour,
        clock.tm_min,
        clock.tm_sec,
    )
    year = clock.tm_year - clock.tm_year % 100 + f.year
    for candidate in (year + 100, year, year - 100):
        when = (candidate, f.month, f.day, f.hour, f.minute, f.second)
        if when <= limit:
            if not 1 <= candidate <= 9999 or f.day > calendar.monthrange(candidate, f.month)[1]:
                return None  # e.g. 29-Feb-00 read as a year that is not a leap year
            return candidate
    return None


def parse_http_date(value: str | None, now: float | None = None) -> float | None:
    """Seconds since the epoch for an HTTP-date, or None if `value` is absent or invalid.

    `now` (seconds since the epoch; default: the real clock) only matters for an RFC 850
    date's two-digit year. RFC 9111 §5.3: a recipient must treat an invalid date -- notably
    ``"0"`` -- in ``Expires`` as a time in the past; callers do that by checking for None.
    """
    if not value:
        return None
    value = value.strip(_OWS)
    if len(value) > _MAX_LEN:
        return None
    fields = _fields_memo(value)
    if fields is None:
        return None
    if not fields.two_digit_year:
        return _timestamp(fields, fields.year)
    year = _rfc850_year(fields, time.time() if now is None else now)
    return None if year is None else _timestamp(fields, year)


def format_http_date(timestamp: float) -> str:
    """IMF-fixdate for `timestamp` (seconds since the epoch), e.g. for ``Date``."""
    t = time.gmtime(timestamp)
    return (
        f"{_DAYS[t.tm_wday].title()}, {t.tm_mday:02d} {_MONTHS[t.tm_mon - 1].title()} "
        f"{t.tm_year:04d} {t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d} GMT"
    )
