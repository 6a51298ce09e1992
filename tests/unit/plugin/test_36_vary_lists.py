"""Accept* values compared as lists for variant selection and the cache key
(`kong_plugin.vary`, `kong_plugin.wire`, `kong_plugin.cache_key`): RFC 9111 §4.1,
RFC 9110 §12.4.2, §12.5.1-12.5.4."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from strata.v1 import cache_pb2 as pb

from kong_plugin import wire
from kong_plugin.cache_key import build_key
from kong_plugin.config import parse_config
from kong_plugin.vary import (
    MAX_NORMALIZED,
    normalized_list,
    secondary_key_parts,
    sidecar_lines,
    vary_value,
)


@pytest.mark.parametrize(
    ("name", "a", "b"),
    [
        ("accept-encoding", "gzip, br", "BR,gzip"),
        ("accept-encoding", "gzip;q=1, br", "br, gzip;Q=1.000"),  # q=1 is the default
        ("accept-encoding", "gzip;q=1.0", "gzip"),
        ("accept-encoding", "gzip , gzip,br", "br,gzip"),  # duplicates dropped
        ("accept-encoding", "gzip,,br,", "br, gzip"),  # empty elements allowed
        ("accept-language", "en;q=0.5, de", "de, en;q=0.50"),
        ("accept-language", "EN-us, de-CH;q=0.9", "de-ch ; q=0.900,en-US"),
        ("accept", "text/HTML, application/json;q=0.8", "application/json ;q=0.8,text/html"),
        ("accept-language", "FR , en;q=0.9, de", "fr,de,en;q=0.9"),  # equal weights: order kept
        ("accept", "text/html;level=1, */*;q=0.1", "*/*; q=0.1, text/html; LEVEL=1"),
        ("accept-charset", "utf-8, iso-8859-1;q=0.5", "ISO-8859-1;q=0.5,UTF-8"),
    ],
)
def test_equivalent_list_values_are_one_value(name: str, a: str, b: str) -> None:
    assert vary_value(name, [a]) == vary_value(name, [b])


@pytest.mark.parametrize(
    ("name", "a", "b"),
    [
        ("accept-language", "en", "de"),
        ("accept-language", "en", "en-us"),  # no prefix matching
        ("accept-encoding", "gzip;q=0", "gzip"),  # q=0: "not acceptable" is kept
        ("accept-encoding", "gzip;q=0.5", "gzip;q=0.6"),
        ("accept", "text/html;level=1", "text/html;level=2"),
        ("accept", "text/html;charset=UTF-8", "text/html;charset=utf-8"),  # value case kept
        # equal weights keep their order where origins break ties by it
        ("accept-language", "fr, en", "en, fr"),
        ("accept-language", "de;q=0.5, en;q=0.5", "en;q=0.5, de;q=0.5"),
        ("accept", "application/xml, application/json", "application/json, application/xml"),
        ("accept-charset", "utf-8, iso-8859-1", "iso-8859-1, utf-8"),
    ],
)
def test_different_lists_stay_different(name: str, a: str, b: str) -> None:
    assert vary_value(name, [a]) != vary_value(name, [b])


def test_the_canonical_form() -> None:
    assert vary_value("accept-encoding", ["gzip, deflate, BR;q=0.50"]) == "deflate,gzip,br;q=0.5"
    assert vary_value("Accept-Language", ["fr;q=0, de;q=0.001"]) == "de;q=0.001,fr;q=0"
    assert vary_value("accept", ["text/*;q=0.3, text/html;q=0.7, */*;q=0.5"]) == (
        "text/html;q=0.7,*/*;q=0.5,text/*;q=0.3"
    )


def test_several_lines_are_one_list() -> None:
    assert vary_value("accept-encoding", ["gzip", " BR "]) == vary_value(
        "accept-encoding", ["br, gzip"]
    )


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("accept-encoding", "gzip;q=2"),  # invalid qvalue
        ("accept-encoding", "gzip;q=0.0001"),
        ("accept-encoding", "gzip;q=1.001"),
        ("accept-encoding", "gzip;q="),
        ("accept-encoding", "gzip;q"),
        ("accept-encoding", "gzip;q=0.5;q=0.4"),
        ("accept-encoding", "gz/ip"),  # a coding is a token
        ("accept-encoding", "gzip, d\u00e9flate"),
        ("accept", "text/html;q=0.5;level=1"),  # the weight is not the last parameter
        ("accept", 'text/html;a="x,y"'),  # a quoted string: not split
        ("accept", "te xt/html"),
        ("accept", "text"),  # a media range is type/subtype
    ],
)
def test_values_that_are_not_valid_lists_are_compared_as_collapsed_text(
    name: str, value: str
) -> None:
    assert normalized_list(name, [value]) is None
    assert vary_value(name, [value]) == " ".join(value.split())


def test_a_long_value_is_left_unparsed() -> None:
    long_value = ", ".join(f"x{i}" for i in range(MAX_NORMALIZED // 3))
    assert len(long_value) > MAX_NORMALIZED
    assert normalized_list("accept-encoding", [long_value]) is None
    assert vary_value("accept-encoding", [long_value]) == long_value


def test_other_headers_keep_todays_comparison() -> None:
    assert normalized_list("x-variant", ["B, a"]) is None
    assert vary_value("x-variant", ["B,  a", "c"]) == "B, a, c"


def test_secondary_key_parts_use_the_list_form() -> None:
    a = secondary_key_parts(["accept-encoding"], {"accept-encoding": "gzip, br"})
    b = secondary_key_parts(["accept-encoding"], {"Accept-Encoding": ["BR", "gzip"]})
    assert a == b == (("accept-encoding", "br,gzip"),)


members = st.sampled_from(["gzip", "br", "deflate", "identity", "*", "zstd"])
#: each weight and another spelling of it
SPELLINGS = {"": ";q=1.0", ";q=0.5": ";Q=0.500", ";q=0": ";q=0.000", ";q=0.8": " ; q=0.80"}
weights = st.sampled_from(sorted(SPELLINGS))


@given(st.lists(st.tuples(members, weights), min_size=1, max_size=6), st.randoms())
def test_order_of_members_and_spelling_of_weights_do_not_matter(items, rnd) -> None:
    value = ", ".join(m + w for m, w in items)
    shuffled = list(items)
    rnd.shuffle(shuffled)
    other = ",".join(m.upper() + SPELLINGS[w] for m, w in shuffled)
    canonical = vary_value("accept-encoding", [value])
    assert canonical == vary_value("accept-encoding", [other])
    assert vary_value("accept-encoding", [canonical]) == canonical  # idempotent


@given(st.text(max_size=80))
def test_normalisation_never_raises(value: str) -> None:
    for name in ("accept", "accept-encoding", "accept-language", "accept-charset"):
        assert isinstance(vary_value(name, [value]), str)


# -- what reaches the sidecar, and the key -----------------------------------------------


def test_sidecar_lines_write_list_fields_canonically_and_keep_the_rest() -> None:
    lines = [
        (b"Accept-Encoding", b"gzip"),
        (b"x-other", b"B,  a"),
        (b"accept-encoding", b"BR"),
        (b"accept", b'text/html;a="q,1"'),  # not normalisable: kept byte for byte
        (b"accept", b"*/*"),
    ]
    assert sidecar_lines(lines) == [
        (b"Accept-Encoding", b"br,gzip"),
        (b"x-other", b"B,  a"),
        (b"accept", b'text/html;a="q,1"'),
        (b"accept", b"*/*"),
    ]


def test_sidecar_lines_without_list_fields_are_the_same_list() -> None:
    lines = [(b"host", b"example.com"), (b"x-a", b"1")]
    assert sidecar_lines(lines) is lines


def test_lookup_and_store_send_the_canonical_lines() -> None:
    a = [(b"accept-encoding", b"gzip, br"), (b"accept-language", b"en;q=0.5, de")]
    b = [(b"accept-language", b"de, en;q=0.50"), (b"accept-encoding", b"BR,gzip")]

    def sent(message: pb.LookupRequest | pb.StoreRequest) -> dict[bytes, bytes]:
        return {h.name: h.value for h in message.request_headers}

    assert sent(wire.lookup_request(b"k", a, 0)) == sent(wire.lookup_request(b"k", b, 0))
    stored = wire.store_request(b"k", pb.Entry(status=200), a, "v2:r:")
    assert sent(stored) == {b"accept-encoding": b"br,gzip", b"accept-language": b"de,en;q=0.5"}


def test_vary_headers_in_the_key_use_the_list_form() -> None:
    cfg = parse_config({"vary_headers": ["Accept-Encoding", "X-Variant"]})

    def key(headers: dict[str, str]) -> str:
        return build_key("GET", "h", "/p", "", headers, None, "r", cfg).key

    assert key({"accept-encoding": "gzip, br"}) == key({"accept-encoding": "BR,gzip"})
    assert key({"accept-encoding": "gzip"}) != key({"accept-encoding": "br"})
    assert key({"x-variant": "a, b"}) != key({"x-variant": "b, a"})  # not a list field
