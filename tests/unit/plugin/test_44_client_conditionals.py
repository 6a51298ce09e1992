"""A client's own If-Modified-Since answered from a fresh stored response (RFC 9111
§4.3.2; RFC 9110 §13.1.3): ``Last-Modified``, else ``Date``; a date later than the stored
``Date`` is ignored."""

from __future__ import annotations

from kong_plugin import decide
from kong_plugin.config import parse_config
from kong_plugin.http_date import format_http_date
from kong_plugin.inflight import RequestState
from kong_plugin.replies import entry_reply
from kong_plugin.validation import evaluate_conditional
from tests.support.plugin_entries import NOW, entry, lookup

CFG = parse_config({"cache_control": True})
DATE = format_http_date(NOW)
BEFORE = format_http_date(NOW - 10)
AFTER = format_http_date(NOW + 10)
LM = format_http_date(NOW - 3600)


def not_modified(since: str, stored: dict[str, str]) -> bool:
    return evaluate_conditional({"if-modified-since": since}, 200, stored)


def test_without_last_modified_the_date_answers_section_4_3_2() -> None:
    stored = {"date": DATE}
    assert not_modified(DATE, stored)
    assert not not_modified(BEFORE, stored)  # the response is newer than the client's date


def test_a_date_later_than_the_stored_date_is_ignored() -> None:
    """The full response is sent: the date is not one this response ever carried."""
    assert not not_modified(AFTER, {"date": DATE})
    assert not not_modified(AFTER, {"date": DATE, "last-modified": LM})


def test_last_modified_answers_when_there_is_one() -> None:
    stored = {"date": DATE, "last-modified": LM}
    assert not_modified(LM, stored)
    assert not_modified(BEFORE, stored)
    assert not not_modified(format_http_date(NOW - 7200), stored)


def test_without_a_date_there_is_nothing_to_compare_a_future_date_with() -> None:
    assert not_modified(AFTER, {"last-modified": LM})
    assert not not_modified(AFTER, {})  # and no modification date at all: full response


def test_a_hit_answers_a_matching_if_modified_since_with_a_304() -> None:
    stored = entry({"content-type": "text/plain", "cache-control": "max-age=60", "date": DATE})
    for since, status in ((DATE, 304), (AFTER, 200), (BEFORE, 200)):
        step = lookup(stored, CFG, age_s=1, headers={"if-modified-since": since})
        assert isinstance(step, decide.Serve)
        state = RequestState("store", "GET", "example.com", "/p", key="v2:r:k")
        reply = entry_reply(step.served, state, CFG)
        assert reply.status == status, since
        assert reply.body == (b"" if status == 304 else b"hello")
