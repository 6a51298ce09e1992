"""The strict HTTP-date parser (RFC 9110 §5.6.7) and what reads it (RFC 9111 §5.3)."""

from __future__ import annotations

import calendar

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kong_plugin.http_date import format_http_date, parse_http_date

IMF = 784111777.0  # Sun, 06 Nov 1994 08:49:37 GMT


def utc(*fields: int) -> float:
    return float(calendar.timegm((*fields, 0, 0, 0)))


#: 5 December 2026, noon UTC: "now" for the two-digit-year rule.
NOW = utc(2026, 12, 5, 12, 0, 0)


@pytest.mark.parametrize(
    "value",
    [
        "Sun, 06 Nov 1994 08:49:37 GMT",
        "Sunday, 06-Nov-94 08:49:37 GMT",
        "Sun Nov  6 08:49:37 1994",
        "Sun Nov 06 08:49:37 1994",
        "SUN, 06 NOV 1994 08:49:37 gmt",
        "sunday, 06-nov-94 08:49:37 Gmt",
        "sUn nOv  6 08:49:37 1994",
        "  Sun, 06 Nov 1994 08:49:37 GMT\t",
    ],
)
def test_the_three_forms_case_insensitive_names_section_5_6_7(value: str) -> None:
    assert parse_http_date(value, NOW) == IMF


@pytest.mark.parametrize(
    "value",
    [
        None,
        "",
        "0",
        "-1",
        "tomorrow",
        "Sun, 06 Nov 1994 08:49:37 +0000",  # numeric zone
        "Sun, 06 Nov 1994 08:49:37 UTC",
        "Sun, 06 Nov 1994 08:49:37 AEST",
        "Sun, 06 Nov 1994 08:49:37",  # no zone
        "Sun, 06 Nov 1994 08:49 GMT",  # missing seconds
        "Sun, 6 Nov 1994 08:49:37 GMT",  # one-digit day
        "Sun, 06 Nov 94 08:49:37 GMT",  # two-digit year in IMF-fixdate
        "Sun 06 Nov 1994 08:49:37 GMT",  # missing comma
        "Sun, 06  Nov  1994 08:49:37 GMT",  # several spaces
        "Sun, 06-Nov-1994 08:49:37 GMT",  # dashes with a four-digit year
        "Sun, 06 Nov 1994 08.49.37 GMT",
        "Sun, 06 Nov 1994 8:49:37 GMT",  # one-digit hour
        "Sunday, 06 Nov 1994 08:49:37 GMT",  # long day name in IMF-fixdate
        "Sun, 06-Nov-94 08:49:37 GMT",  # short day name in RFC 850
        "Sun Nov 6 08:49:37 1994",  # asctime day not padded
        "Sun Nov  6 08:49:37 94",
        "Xyz, 06 Nov 1994 08:49:37 GMT",
        "Sun, 06 Foo 1994 08:49:37 GMT",
        "Sun, 32 Nov 1994 08:49:37 GMT",
        "Sun, 31 Nov 1994 08:49:37 GMT",  # November has 30 days
        "Sun, 29 Feb 1900 08:49:37 GMT",  # not a leap year
        "Sun, 00 Nov 1994 08:49:37 GMT",
        "Sun, 06 Nov 1994 24:00:00 GMT",
        "Sun, 06 Nov 1994 08:60:00 GMT",
        "Sun, 06 Nov 1994 08:49:61 GMT",
        "Sun, 06 Nov 0000 08:49:37 GMT",  # year 0
        "a, 1 Jan 99999999999 1:1:1 GMT",
        "Sun, 06 Nov 1994 08:49:37 GMT, Mon, 07 Nov 1994 08:49:37 GMT",
        "Sun, ٠٦ Nov 1994 08:49:37 GMT",  # non-ASCII digits
        "Sun,\t06 Nov 1994 08:49:37 GMT",
    ],
)
def test_anything_else_is_invalid(value: str | None) -> None:
    assert parse_http_date(value, NOW) is None


def test_leap_days_and_leap_seconds() -> None:
    assert parse_http_date("Sat, 29 Feb 2020 00:00:00 GMT") == utc(2020, 2, 29, 0, 0, 0)
    assert parse_http_date("Tue, 29 Feb 2000 00:00:00 GMT") == utc(2000, 2, 29, 0, 0, 0)
    assert parse_http_date("Fri, 29 Feb 2019 00:00:00 GMT") is None
    # 23:59:60 is a valid time-of-day (leap second): it counts as the next second
    assert parse_http_date("Wed, 31 Dec 2008 23:59:60 GMT") == utc(2009, 1, 1, 0, 0, 0)


def test_years_0001_to_9999_dates_past_2038_and_far_future() -> None:
    assert parse_http_date("Tue, 19 Jan 2038 03:14:08 GMT") == 2**31
    assert parse_http_date("Sun, 21 Nov 2286 04:46:39 GMT") == utc(2286, 11, 21, 4, 46, 39)
    assert parse_http_date("Fri, 31 Dec 9999 23:59:59 GMT") == utc(9999, 12, 31, 23, 59, 59)
    assert parse_http_date("Mon, 01 Jan 0001 00:00:00 GMT") == utc(1, 1, 1, 0, 0, 0)
    assert parse_http_date("Thu Aug  8 02:01:18 2050") == utc(2050, 8, 8, 2, 1, 18)


def test_the_weekday_is_not_checked_against_the_date() -> None:
    """RFC 9110 does not ask recipients to; 6 Nov 1994 was a Sunday."""
    assert parse_http_date("Mon, 06 Nov 1994 08:49:37 GMT") == IMF


@pytest.mark.parametrize(
    ("value", "year"),
    [
        ("Thursday, 18-Aug-50 02:01:18 GMT", 2050),  # 24 years ahead: as written
        ("Sunday, 06-Nov-94 08:49:37 GMT", 1994),  # 2094 is more than 50 years ahead
        ("Saturday, 05-Dec-76 12:00:00 GMT", 2076),  # exactly 50 years ahead
        ("Saturday, 05-Dec-76 12:00:01 GMT", 1976),  # one second more
        ("Tuesday, 01-Jan-00 00:00:00 GMT", 2000),
    ],
)
def test_rfc850_two_digit_years_follow_the_50_year_rule(value: str, year: int) -> None:
    parsed = parse_http_date(value, NOW)
    assert parsed is not None
    assert calendar.timegm((year, 1, 1, 0, 0, 0, 0, 0, 0)) <= parsed
    assert parsed < calendar.timegm((year + 1, 1, 1, 0, 0, 0, 0, 0, 0))


def test_the_rfc850_century_depends_on_now_not_on_the_memo() -> None:
    """The same text read at two times: the field parse is memoised, the century is not."""
    value = "Monday, 01-Jan-01 00:00:00 GMT"
    assert parse_http_date(value, NOW) == utc(2001, 1, 1, 0, 0, 0)
    in_2099 = utc(2099, 6, 1, 0, 0, 0)
    assert parse_http_date(value, in_2099) == utc(2101, 1, 1, 0, 0, 0)
    in_1930 = utc(1930, 6, 1, 0, 0, 0)  # 1994 would be 64 years ahead
    assert parse_http_date("Tuesday, 06-Nov-94 08:49:37 GMT", in_1930) == utc(
        1894, 11, 6, 8, 49, 37
    )
    assert parse_http_date("Sunday, 06-Nov-94 08:49:37 GMT", NOW) == IMF
    assert parse_http_date(value, NOW) == utc(2001, 1, 1, 0, 0, 0)


def test_rfc850_29_february_needs_a_leap_year_in_the_chosen_century() -> None:
    in_1950 = utc(1950, 1, 1, 0, 0, 0)
    assert parse_http_date("Thursday, 29-Feb-00 00:00:00 GMT", in_1950) is None  # 1900
    assert parse_http_date("Tuesday, 29-Feb-00 00:00:00 GMT", NOW) == utc(2000, 2, 29, 0, 0, 0)


def test_the_real_clock_is_the_default_now() -> None:
    assert parse_http_date("Sunday, 06-Nov-94 08:49:37 GMT") == IMF


def test_format_writes_imf_fixdate() -> None:
    assert format_http_date(IMF) == "Sun, 06 Nov 1994 08:49:37 GMT"
    assert format_http_date(IMF + 0.9) == "Sun, 06 Nov 1994 08:49:37 GMT"
    assert format_http_date(0) == "Thu, 01 Jan 1970 00:00:00 GMT"


@given(st.integers(min_value=0, max_value=253402300799))
def test_format_and_parse_round_trip(seconds: int) -> None:
    assert parse_http_date(format_http_date(seconds)) == seconds


@given(st.text(max_size=60))
def test_the_parser_never_raises(value: str) -> None:
    result = parse_http_date(value, NOW)
    assert result is None or isinstance(result, float)


@given(
    st.text(alphabet=st.sampled_from(" ,:-0123456789SunMoFrNvDecGMTdayAugJ"), max_size=40),
    st.floats(min_value=0, max_value=2e11),
)
def test_the_parser_never_raises_on_date_like_text(value: str, now: float) -> None:
    result = parse_http_date(value, now)
    assert result is None or isinstance(result, float)
