"""A 304 to a revalidation (RFC 9111 §3.2, §4.3.3, §4.3.4): the stored header fields
updated, the freshness renewed, and no update at all from a 304 about something else."""

from __future__ import annotations

import pytest

from kong_plugin import decide
from kong_plugin.cache_status import XCacheStatus
from kong_plugin.config import parse_config
from kong_plugin.http_date import format_http_date
from kong_plugin.replies import entry_reply
from kong_plugin.validation import merge_304, updates_entry
from tests.support.plugin_entries import NOW, entry, revalidating, upstream

CFG = parse_config({"cache_control": True, "cache_ttl": 300})
STORED = {
    "content-type": "text/plain",
    "cache-control": "max-age=60",
    "etag": '"v1"',
    "x-old": "kept",
}


# -- merge_304 --------------------------------------------------------------------------


def test_content_fields_other_than_encoding_and_range_are_updated_section_3_2() -> None:
    stored = {
        "content-type": "text/plain",
        "content-language": "en",
        "content-encoding": "gzip",
        "content-range": "bytes 0-4/5",
        "content-length": "5",
    }
    update = {
        "content-type": "text/plain; charset=utf-8",
        "content-language": "de",
        "content-encoding": "br",
        "content-range": "bytes 0-0/1",
        "content-length": "0",
    }
    merged = merge_304(stored, update)
    assert merged.get("content-type") == "text/plain; charset=utf-8"
    assert merged.get("content-language") == "de"
    assert merged.get("content-encoding") == "gzip"  # the stored bytes are gzip
    assert merged.get("content-range") == "bytes 0-4/5"
    assert merged.get("content-length") == "5"


# -- §4.3.4: which stored response a 304 updates ---------------------------------------


@pytest.mark.parametrize(
    ("stored", "not_modified", "updates"),
    [
        ('"v1"', None, True),  # no validator in the 304: it answers for this entry
        ('"v1"', '"v1"', True),
        ('W/"v1"', 'W/"v1"', True),
        ('W/"v1"', '"v1"', True),  # weakened by compression on the 200 only
        ('"v1"', 'W/"v1"', True),
        ("v1", '"v1"', True),  # stored unquoted, same tag
        ('"v1"', '"v2"', False),  # a strong validator the entry does not have
        ('"v1"', 'W/"v2"', False),  # a weak one that does not correspond to it
        (None, '"v1"', False),  # the entry has no ETag at all
        ('"v1"', 'a"b', False),  # cannot be read: cannot be shown to be ours
        ('"v1"', ['"v1"', '"v2"'], False),
    ],
)
def test_a_304_updates_only_the_response_its_etag_names(
    stored: str | None, not_modified: str | list[str] | None, updates: bool
) -> None:
    s = {} if stored is None else {"etag": stored}
    n = {} if not_modified is None else {"etag": not_modified}
    assert updates_entry(s, n) is updates


# -- the refresh --------------------------------------------------------------------------


def refresh(not_modified: dict[str, str], client: dict[str, str] | None = None) -> decide.Refresh:
    state = revalidating(entry(STORED, ttl=60), client_headers=client)
    step = decide.after_response(state, upstream(304, not_modified, now=NOW + 5), CFG)
    assert isinstance(step, decide.Refresh)
    return step


def test_a_304_updates_the_stored_fields_and_renews_freshness_section_4_3_4() -> None:
    step = refresh(
        {
            "cache-control": "max-age=120",
            "x-updated": "yes",
            "content-length": "0",
            "date": format_http_date(NOW + 5),
        }
    )
    assert step.store is not None and not step.drop
    stored = step.store
    assert stored.headers.get("cache-control") == "max-age=120"
    assert stored.headers.get("x-updated") == "yes"
    assert stored.headers.get("x-old") == "kept"
    assert "content-length" not in stored.headers
    assert (stored.status, stored.body) == (200, b"hello")
    assert stored.timing.ttl == 120 and stored.timing.stored_at == NOW  # renewed
    served = step.served
    assert served.word is XCacheStatus.REFRESH
    assert served.member == "strata; hit; fwd=stale; fwd-status=304; detail=revalidated"
    reply = entry_reply(served, revalidating(entry(STORED)), CFG)
    assert (reply.status, reply.body) == (200, b"hello")
    assert reply.headers["x-updated"] == "yes"


def test_the_client_gets_a_304_when_its_own_validators_match_the_updated_entry() -> None:
    client = {"if-none-match": '"v1"'}
    step = refresh({"cache-control": "max-age=120"}, client)
    reply = entry_reply(step.served, revalidating(entry(STORED), client_headers=client), CFG)
    assert (reply.status, reply.body) == (304, b"")
    other = {"if-none-match": '"v0"'}
    step = refresh({"cache-control": "max-age=120"}, other)
    reply = entry_reply(step.served, revalidating(entry(STORED), client_headers=other), CFG)
    assert (reply.status, reply.body) == (200, b"hello")


def test_a_qualified_private_in_the_304_keeps_its_field_out_of_the_store() -> None:
    step = refresh({"cache-control": 'max-age=120, private="x-secret"', "x-secret": "s"})
    assert step.store is not None
    assert "x-secret" not in step.store.headers


def test_a_changed_vary_is_stored_with_the_entry() -> None:
    step = refresh({"vary": "Accept-Language"})
    assert step.store is not None
    assert step.store.vary == ("accept-language",)


def test_a_304_that_makes_the_response_unstorable_is_served_not_stored() -> None:
    step = refresh({"cache-control": "no-store", "x-updated": "yes"})
    assert step.store is None and not step.drop
    assert step.served.entry.headers.get("x-updated") == "yes"


def test_a_304_naming_another_etag_updates_nothing_and_drops_the_entry() -> None:
    step = refresh({"etag": '"v2"', "cache-control": "max-age=999", "x-updated": "yes"})
    assert step.store is None and step.drop
    served = step.served
    assert served.entry.headers.get("cache-control") == "max-age=60"  # not merged
    assert "x-updated" not in served.entry.headers
    assert served.member == "strata; hit; fwd=stale; fwd-status=304; detail=validator-mismatch"
    assert served.age_s == 105.0  # the lookup's 100 s plus the 5 s since
    assert served.clear is not None and "x-updated" in served.clear  # the 304's own fields
    reply = entry_reply(served, revalidating(entry(STORED)), CFG)
    assert (reply.status, reply.body) == (200, b"hello")
    assert reply.headers["etag"] == '"v1"'
