"""The conditional request a revalidation sends (RFC 9111 §4.3.1; RFC 9110 §8.8.3,
§13.1.1, §13.1.2): the entry's validators, well-formed, instead of the client's."""

from __future__ import annotations

import pytest

from kong_plugin import decide
from kong_plugin.config import parse_config
from kong_plugin.http_date import format_http_date
from kong_plugin.validation import entity_tag, revalidation_headers, stored_entity_tag
from tests.support.plugin_entries import NOW, entry, lookup

LM = format_http_date(NOW - 3600)
DATE = format_http_date(NOW)
CFG = parse_config({"cache_control": True})


# -- entity-tags as stored ------------------------------------------------------------


@pytest.mark.parametrize(
    ("stored", "sent"),
    [
        ('"v1"', '"v1"'),
        ('W/"v1"', 'W/"v1"'),  # weak stays weak
        ('""', '""'),  # an empty opaque-tag is a valid entity-tag
        ('"a/b:c=d"', '"a/b:c=d"'),
        ('  "v1"\t', '"v1"'),  # surrounding whitespace is not part of the field value
        ("abc", '"abc"'),  # unquoted: sent quoted
        ("W/abc", 'W/"abc"'),
        ('"caf\u00e9"', '"caf\u00e9"'),  # obs-text is allowed in an opaque-tag
    ],
)
def test_a_stored_etag_becomes_a_valid_entity_tag(stored: str, sent: str) -> None:
    assert entity_tag(stored) == sent
    assert revalidation_headers({"etag": stored}) == {"If-None-Match": sent}


@pytest.mark.parametrize(
    "stored",
    [
        '"a"b"',  # DQUOTE inside
        'a"b',
        '"abc',  # unbalanced
        "a b",  # a space is not etagc
        '"a\x01b"',  # a control character
        "a\x7fb",
        '"a\udc80"',  # an undecodable byte (surrogate escape) cannot be sent on
        '"a", "b"',  # a list is not one entity-tag
        "",
        'w/"x"',  # the weak prefix is case-sensitive: this is junk
    ],
)
def test_an_etag_that_cannot_be_an_entity_tag_is_not_sent(stored: str) -> None:
    assert entity_tag(stored) is None
    assert "If-None-Match" not in revalidation_headers({"etag": stored, "date": DATE})


def test_several_different_etag_fields_are_not_sent() -> None:
    assert stored_entity_tag({"etag": ['"a"', '"b"']}) is None
    assert stored_entity_tag({"etag": ['"a"', '"a"']}) == '"a"'


# -- If-Modified-Since ----------------------------------------------------------------


def test_last_modified_is_sent_exactly_as_stored_when_it_is_a_valid_date() -> None:
    h = {"etag": '"v1"', "last-modified": LM, "date": DATE}
    assert revalidation_headers(h) == {"If-None-Match": '"v1"', "If-Modified-Since": LM}
    assert revalidation_headers({"last-modified": LM}) == {"If-Modified-Since": LM}


def test_an_invalid_last_modified_is_not_sent() -> None:
    assert revalidation_headers({"etag": '"v1"', "last-modified": "yesterday"}) == {
        "If-None-Match": '"v1"'
    }


def test_the_date_is_sent_only_without_an_etag_or_a_valid_last_modified() -> None:
    assert revalidation_headers({"date": DATE}) == {"If-Modified-Since": DATE}
    assert revalidation_headers({"last-modified": "junk", "date": DATE}) == {
        "If-Modified-Since": DATE
    }
    assert revalidation_headers({"etag": '"v1"', "date": DATE}) == {"If-None-Match": '"v1"'}
    # an ETag that cannot be sent does not count: the Date still validates the entry
    assert revalidation_headers({"etag": 'a"b', "date": DATE}) == {"If-Modified-Since": DATE}
    assert revalidation_headers({"date": "junk"}) == {}


# -- the revalidating request ---------------------------------------------------------


def stale(headers: dict[str, str]) -> decide.AccessStep:
    return lookup(entry(headers, ttl=60), CFG, age_s=100, headers=CLIENT)


CLIENT = {"if-none-match": '"client"', "if-modified-since": DATE, "accept": "text/plain"}


def test_the_clients_validators_are_replaced_by_the_entrys() -> None:
    step = stale({"etag": '"v1"', "last-modified": LM})
    assert isinstance(step, decide.Revalidate) and step.client_conditional
    assert step.set_upstream == {"If-None-Match": '"v1"', "If-Modified-Since": LM}
    assert step.clear_upstream == ()


def test_a_client_validator_of_a_kind_the_entry_lacks_is_removed() -> None:
    """The client's own If-None-Match beside the entry's If-Modified-Since could get a 304
    for the client's copy, which would then refresh this entry."""
    step = stale({"last-modified": LM})
    assert isinstance(step, decide.Revalidate)
    assert step.set_upstream == {"If-Modified-Since": LM}
    assert step.clear_upstream == ("if-none-match",)
    step = stale({"etag": '"v1"'})
    assert isinstance(step, decide.Revalidate)
    assert step.clear_upstream == ("if-modified-since",)


def test_an_entry_without_validators_fetches_in_full() -> None:
    step = stale({"content-type": "text/plain"})
    assert isinstance(step, decide.Revalidate)
    assert step.set_upstream == {}
    assert step.clear_upstream == ("if-none-match", "if-modified-since")


def test_nothing_is_cleared_for_a_client_without_validators() -> None:
    step = lookup(entry({"content-type": "text/plain"}), CFG, age_s=100)
    assert isinstance(step, decide.Revalidate) and not step.client_conditional
    assert step.clear_upstream == ()


def test_the_request_header_fields_vary_names_stay_the_clients() -> None:
    """The revalidation is the client's own request: whatever selected the variant
    (here Accept) goes upstream untouched; only validators are set or cleared."""
    step = lookup(
        entry({"etag": '"v1"', "vary": "accept"}, vary=("accept",)),
        CFG,
        age_s=100,
        headers=CLIENT,
    )
    assert isinstance(step, decide.Revalidate)
    touched = {n.lower() for n in step.set_upstream} | set(step.clear_upstream)
    assert touched == set(decide.CONDITIONAL)
