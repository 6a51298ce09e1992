"""The cache key: normalisation users rely on, scoping, versioning and injectivity."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kong_plugin.cache_key import (
    KEY_VERSION,
    build_key,
    encode_preimage,
    normalize_path,
    remove_dot_segments,
    route_prefix,
)
from kong_plugin.config import parse_config
from kong_plugin.query_key import QueryUnit

DEFAULT = parse_config({})
ROUTE = "3f2a1c9e-0000-4000-8000-000000000001"


def key(
    method="GET",
    host="api.example.com",
    path="/items",
    query=None,
    headers=None,
    *,
    consumer=None,
    route=ROUTE,
    config=DEFAULT,
):
    return build_key(method, host, path, query or "", headers or {}, consumer, route, config)


def test_key_format_is_versioned_route_prefix_and_sha256():
    k = key()
    assert KEY_VERSION == 2
    assert re.fullmatch(rf"v2:{ROUTE}:[0-9a-f]{{64}}", k.key)
    assert k.prefix == f"v2:{ROUTE}:" == route_prefix(ROUTE)
    assert k.key.startswith(k.prefix)
    assert str(k) == k.key


def test_global_plugin_uses_global_prefix():
    assert key(route=None).key.startswith("v2:global:")


def test_route_id_is_escaped_in_the_prefix_so_prefix_purges_stay_per_route():
    assert route_prefix("a:b") == "v2:a%3Ab:"
    assert not key(route="a:b").key.startswith(route_prefix("a"))


#: KEY.md's worked example, written out by hand from the rules (not pasted from output):
#: units a=y and a=x keep their order, names sorted (a, b, flag, page, q); the utm_source
#: unit keeps only its ``;`` part page=2, marked ``P``; %7e is decoded, %2f upper-cased,
#: ``+`` and %20 kept as sent.
GOLDEN_QUERY = "b=2&a=y&a=x&flag&utm_source=mail;page=2&q=%7e%2f+%20"
GOLDEN_PREIMAGE = (
    "strata-key/2|3:GET,15:api.example.com,6:/items,"
    "q6#U3:a=y,U3:a=x,U3:b=2,U4:flag,P1#6:page=2,U10:q=~%2F+%20,"
    "h0#c2#8:consumer,2:c1,r+36:3f2a1c9e-0000-4000-8000-000000000001,"
)


def test_golden_key_changes_only_with_key_version():
    """The documented format (KEY.md); changing it without bumping KEY_VERSION would
    silently orphan (or worse, misread) every stored entry."""
    config = parse_config({"ignore_query_params": ["utm_*"]})
    k = key("HEAD", "API.example.com", "/items", GOLDEN_QUERY, consumer="c1", config=config)
    assert preimage((k.method, k.host, k.path, k.query, k.headers, k.consumer, ROUTE)) == (
        GOLDEN_PREIMAGE
    )
    assert k.digest == hashlib.sha256(GOLDEN_PREIMAGE.encode()).hexdigest()
    assert k.key == f"v2:{ROUTE}:{k.digest}"
    documented = (Path(__file__).parents[3] / "kong_plugin" / "KEY.md").read_text()
    assert GOLDEN_PREIMAGE in documented and GOLDEN_QUERY in documented
    assert f"e.g. {k.key[: len(k.prefix) + 16]}…" in documented


def test_head_is_answered_from_get():
    assert key("HEAD").key == key("GET").key
    assert key("POST").key != key("GET").key


def test_host_is_case_insensitive_but_part_of_the_key():
    assert key(host="API.Example.COM").key == key().key
    assert key(host="other.example.com").key != key().key


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("/%7Eusers", "/~users"),  # unreserved escape decoded (RFC 3986 §6.2.2.2)
        ("/a%2fb", "/a%2Fb"),  # escape hex case normalised
        ("/a/./b/../c", "/a/c"),  # dot-segments removed (§5.2.4)
        ("/a/%2E%2E/c", "/c"),  # encoded dots are dots
        ("items", "/items"),
    ],
)
def test_equivalent_paths_share_a_key(a, b):
    assert key(path=a).key == key(path=b).key


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("/a%2Fb", "/a/b"),  # an encoded slash is data, not a separator
        ("/Items", "/items"),  # paths are case-sensitive by default
        ("/a//b", "/a/b"),  # repeated slashes are kept
        ("/items/", "/items"),
    ],
)
def test_different_paths_get_different_keys(a, b):
    assert key(path=a).key != key(path=b).key


def test_ignore_uri_case_lower_cases_the_path():
    c = parse_config({"ignore_uri_case": True})
    assert key(path="/Items", config=c).key == key(path="/items", config=c).key


def test_remove_dot_segments_rfc3986_examples():
    assert remove_dot_segments("/a/b/c/./../../g") == "/a/g"
    assert remove_dot_segments("/mid/content=5/../6") == "/mid/6"
    assert remove_dot_segments("/a/b/..") == "/a/"
    assert remove_dot_segments("/../..") == "/"
    assert normalize_path("/a/b/.") == "/a/b/"


def test_query_order_of_different_names_does_not_matter():
    assert key(query="a=1&b=2").key == key(query="b=2&a=1").key
    assert key(query="a=1&b=2&a=3").key == key(query="b=2&a=1&a=3").key


def test_repeated_parameters_keep_their_order():
    """Issue 9: ?q=evil&q=good was served ?q=good&q=evil's entry (values were sorted); an
    origin that reads the first (or the last) value answers them differently."""
    assert key(query="q=evil&q=good").key != key(query="q=good&q=evil").key
    assert key(query="a=2&a=1").key != key(query="a=1&a=2").key


def test_query_values_matter():
    assert key(query="a=1").key != key(query="a=2").key
    assert key(query="a=1").key != key().key


def test_flag_argument_differs_from_empty_value():
    """?debug is not ?debug= (Kong gives True and "")."""
    assert key(query="debug").key != key(query="debug=").key
    assert key(query="debug").key != key(query="debug=true").key


def test_query_separators_inside_values_cannot_forge_other_args():
    assert key(query="a=b%26c%3Dd").key != key(query="a=b&c=d").key
    assert key(query="a=1,2").key != key(query="a=1&a=2").key
    assert key(query="a=1%3Bb=2").key != key(query="a=1;b=2").key


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("q=%ff", "q=%fe"),  # issue 9: invalid UTF-8 became U+FFFD, both shared one key
        ("q=%C3%A9", "q=\u00e9"),  # an escape is never decoded into raw bytes
        ("q=\u00e9", "q=\u00e8"),  # raw non-ASCII (UTF-8 in the request line) is data
        ("q=\udcff", "q=\udcfe"),  # bytes that are not UTF-8, kept as lone surrogates
        ("q=a+b", "q=a%20b"),  # '+' is a space only to form decoders
        ("q=a+b", "q=a%2Bb"),  # and a plus only to the others
        ("a", "a="),
        ("q=%2%41", "q=%2A"),  # decoding %41 after a stray '%' would forge %2A
        ("a=1&b=2", "a=1;b=2"),
        ("a=1%26b=2", "a=1&b=2"),
    ],
)
def test_queries_origins_read_differently_get_different_keys(a, b):
    assert key(query=a).key != key(query=b).key


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("a=%2f", "a=%2F"),  # escape hex case (RFC 3986 6.2.2.1)
        ("a=%7E%41", "a=~A"),  # escapes of unreserved characters (6.2.2.2)
        ("a=1&&b=2", "a=1&b=2"),  # empty units mean nothing to any parser
        ("&a=1&", "a=1"),
        ("", "&"),
    ],
)
def test_queries_every_origin_reads_the_same_share_a_key(a, b):
    assert key(query=a).key == key(query=b).key


def test_the_query_is_not_cut_at_100_arguments():
    """Kong's get_query stops at 100 arguments; the raw query has them all."""
    many = "&".join(f"a{i}=1" for i in range(150))
    assert key(query=many + "&z=1").key != key(query=many + "&z=2").key


def test_vary_query_params_whitelist():
    c = parse_config({"vary_query_params": ["page"]})
    base = key(query="page=1", config=c)
    assert key(query="page=1&session=x", config=c).key == base.key
    assert key(query="session=y&page=1", config=c).key == base.key
    assert key(query="page=2", config=c).key != base.key


def test_vary_query_params_keeps_names_an_origin_may_read_as_a_listed_one():
    """PHP reads ``page.x`` as ``page_x`` and ``page[]`` as an array ``page``; some
    frameworks compare names case-insensitively: such names stay in the key."""
    c = parse_config({"vary_query_params": ["page_x"]})
    base = key(query="page_x=1", config=c)
    for other in ("Page_X=2", "page.x=2", "page+x=2", "page_x[]=2", "page_x%00=2", "\u00e9=1"):
        assert key(query="page_x=1&" + other, config=c).key != base.key, other
    assert key(query="page_x=1&session=2", config=c).key == base.key


def test_ignore_query_params_globs():
    c = parse_config({"ignore_query_params": ["utm_*", "fbclid"]})
    base = key(query="q=shoes", config=c)
    same = key(query="q=shoes&utm_source=x&utm_medium=y&fbclid=z", config=c)
    assert same.key == base.key
    assert key(query="fbclid=1&q=shoes", config=c).key == base.key
    assert key(query="q=shoes&utmx=1", config=c).key != base.key
    assert key(query="q=shoes&UTM_source=1", config=c).key != base.key  # globs match case


def test_parameters_hidden_behind_an_ignored_one_with_a_semicolon_stay_in_the_key():
    """Issue 9: ``utm_source=x;admin=1`` keyed as if the query were empty, while an origin
    splitting on ``;`` reads ``admin=1``."""
    c = parse_config({"ignore_query_params": ["utm_*"]})
    hidden = key(query="utm_source=x;admin=1", config=c)
    assert hidden.key != key(config=c).key
    assert hidden.key != key(query="admin=1", config=c).key  # '&'-only origins drop it all
    assert hidden.key == key(query="utm_source=y;admin=1", config=c).key
    assert hidden.key == key(query="utm_source=y;;admin=1&utm_medium=z", config=c).key
    # a kept unit is kept whole: an '&'-only origin reads "1;utm_x=2" as a's value
    assert key(query="a=1;utm_x=1", config=c).key != key(query="a=1;utm_x=2", config=c).key
    assert key(query="utm_a=1;utm_b=2", config=c).key == key(config=c).key


def test_names_an_origin_may_identify_keep_their_relative_order():
    """Different names may be sorted, but not when an origin could read them as one name."""
    for a, b in [
        ("A=1&a=2", "a=2&A=1"),  # case-insensitive frameworks
        ("a.b=1&a_b=2", "a_b=2&a.b=1"),  # PHP: a.b is a_b
        ("a[]=1&a[0]=2", "a[0]=2&a[]=1"),  # PHP/Rails arrays
        ("\uff41=1&a=2", "a=2&\uff41=1"),  # NFKC folds a fullwidth a into a
        ("b=1;a=2&a=3", "a=3&b=1;a=2"),  # a unit with two names (for '&;' origins)
        ("a=1;b=2&b=3", "b=3&a=1;b=2"),
    ]:
        assert key(query=a).key != key(query=b).key, (a, b)


def test_vary_headers_values_enter_the_key():
    c = parse_config({"vary_headers": ["Accept-Language"]})
    en = key(headers={"accept-language": "en"}, config=c)
    assert key(headers={"accept-language": "fr"}, config=c).key != en.key
    assert key(headers={"Accept-Language": "en"}, config=c).key == en.key
    assert key(headers={"accept-language": "en", "x-other": "1"}, config=c).key == en.key
    # without vary_headers, headers never matter (Kong)
    assert key(headers={"accept-language": "fr"}).key == key(headers={"accept-language": "en"}).key


def test_vary_header_absent_differs_from_empty_and_lines_equal_combined():
    c = parse_config({"vary_headers": ["x-v"]})
    assert key(headers={}, config=c).key != key(headers={"x-v": ""}, config=c).key
    assert (
        key(headers={"x-v": ["a", "b"]}, config=c).key == key(headers={"x-v": "a, b"}, config=c).key
    )
    assert (
        key(headers={"x-v": "a   b"}, config=c).key == key(headers={"x-v": " a b "}, config=c).key
    )


def test_consumer_scope_auto_is_per_consumer_when_authenticated():
    assert key(consumer="c1").key != key(consumer="c2").key
    assert key(consumer="c1").key != key(consumer=None).key


def test_consumer_scope_never_shares_between_consumers():
    c = parse_config({"consumer_scope": "never"})
    assert key(consumer="c1", config=c).key == key(consumer=None, config=c).key
    assert not key(consumer="c1", config=c).consumer_scoped
    assert key(consumer="c1").consumer_scoped


def test_consumer_scope_always_puts_anonymous_in_its_own_scope():
    c = parse_config({"consumer_scope": "always"})
    auto_anon = key(consumer=None)
    always_anon = key(consumer=None, config=c)
    assert always_anon.consumer == ("anonymous",)
    assert always_anon.key != key(consumer="anonymous", config=c).key
    assert always_anon.key != auto_anon.key
    assert key(consumer="c1", config=c).key == key(consumer="c1").key


def test_route_is_inside_the_digest():
    assert key(route="r1").digest != key(route="r2").digest
    assert key(route=None).digest != key(route="global").digest


# --- injectivity -------------------------------------------------------------------

text = st.text(max_size=6)
query_units = st.one_of(
    text.map(lambda t: QueryUnit(True, (t,))),
    st.lists(text, min_size=1, max_size=3).map(lambda p: QueryUnit(False, tuple(p))),
)
components = st.tuples(
    text,
    text,
    text,
    st.lists(query_units, max_size=3).map(tuple),
    st.lists(st.tuples(text, st.one_of(st.none(), text)), max_size=3).map(tuple),
    st.one_of(st.just(()), st.just(("anonymous",)), text.map(lambda c: ("consumer", c))),
    st.one_of(st.none(), text),
)


def preimage(c):
    method, host, path, query, headers, consumer, route = c
    return encode_preimage(
        method, host, path, query=query, headers=headers, consumer=consumer, route_id=route
    )


class Reader:
    """Parses a pre-image back into components: a left inverse proves injectivity."""

    def __init__(self, s: str) -> None:
        self.s, self.i = s, 0

    def lit(self, text: str) -> None:
        assert self.s.startswith(text, self.i), (self.s, self.i, text)
        self.i += len(text)

    def digits(self, end: str) -> int:
        j = self.s.index(end, self.i)
        n = int(self.s[self.i : j])
        self.i = j + 1
        return n

    def ns(self) -> str:
        n = self.digits(":")
        out = self.s[self.i : self.i + n]
        self.i += n
        self.lit(",")
        return out

    def one_of(self, *options: str) -> str:
        ch = self.s[self.i]
        assert ch in options
        self.i += 1
        return ch


def decode(s: str):
    r = Reader(s)
    r.lit("strata-key/2|")
    method, host, path = r.ns(), r.ns(), r.ns()
    r.lit("q")
    query = []
    for _ in range(r.digits("#")):
        if r.one_of("U", "P") == "U":
            query.append(QueryUnit(True, (r.ns(),)))
        else:
            query.append(QueryUnit(False, tuple(r.ns() for _ in range(r.digits("#")))))
    r.lit("h")
    headers = []
    for _ in range(r.digits("#")):
        name = r.ns()
        headers.append((name, None if r.one_of("-", "+") == "-" else r.ns()))
    r.lit("c")
    consumer = tuple(r.ns() for _ in range(r.digits("#")))
    r.lit("r")
    route = None if r.one_of("-", "+") == "-" else r.ns()
    assert r.i == len(s)
    return (method, host, path, tuple(query), tuple(headers), consumer, route)


@settings(max_examples=400)
@given(components)
def test_preimage_decodes_back_to_its_components(c):
    """encode has a left inverse, so two different inputs never share a pre-image."""
    assert decode(preimage(c)) == c


@settings(max_examples=400)
@given(components, components)
def test_preimage_is_injective(a, b):
    """Different component tuples never share a pre-image (separators in values included)."""
    if a != b:
        assert preimage(a) != preimage(b)


VARY = parse_config({"vary_headers": ["X-V"], "ignore_query_params": ["utm_*"]})
requests = st.tuples(
    st.sampled_from(["GET", "HEAD", "POST"]),
    st.sampled_from(["a.example", "A.example", "b.example"]),
    st.sampled_from(["/", "/a", "/a/b", "/A", "/%61", "/a/../a", "/a%2Fb"]),
    st.lists(st.sampled_from(["a=1", "a", "a=", "A=1", "b=%41", "b=A", "utm_x=1", "c=1;d"])).map(
        "&".join
    ),
    st.dictionaries(st.sampled_from(["x-v", "X-V", "x-other"]), st.text(max_size=3), max_size=2),
    st.one_of(st.none(), st.text(min_size=1, max_size=4)),
)


def components_of(k):
    return (k.method, k.host, k.path, k.query, k.headers, k.consumer, k.route_id)


@settings(max_examples=400)
@given(requests, requests)
def test_keys_equal_exactly_when_normalised_inputs_equal(a, b):
    """Different inputs get different keys unless normalisation makes them the same."""
    k1, k2 = (build_key(r[0], r[1], r[2], r[3], r[4], r[5], ROUTE, VARY) for r in (a, b))
    assert (k1.key == k2.key) == (components_of(k1) == components_of(k2))


def test_anonymous_fallback_shares_one_unscoped_scope_under_auto():
    """A request that fell back to an anonymous consumer (key-auth `anonymous`) is keyed in
    the shared anonymous scope, apart from unauthenticated traffic and from consumers, and
    is not consumer-scoped (RFC 9111 §3.5 still applies to it)."""
    anon = build_key("GET", "h", "/p", "", {}, None, ROUTE, DEFAULT, anonymous=True)
    again = build_key("GET", "h", "/p", "", {}, None, ROUTE, DEFAULT, anonymous=True)
    assert anon.key == again.key and anon.consumer == ("anonymous",)
    assert not anon.consumer_scoped
    assert anon.key != key(path="/p", host="h").key  # not the no-auth-plugin scope
    never = parse_config({"consumer_scope": "never"})
    shared = build_key("GET", "h", "/p", "", {}, None, ROUTE, never, anonymous=True)
    assert shared.consumer == ()
