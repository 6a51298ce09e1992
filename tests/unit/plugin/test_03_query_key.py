"""The query component of the key against the ways origins read a query.

The property: two queries get the same key only if every modelled origin reads them the
same, once the names the route does not key on are removed. An origin here splits on
``&`` only or on ``&`` and ``;``, decodes ``+`` as a space or not, and compares names
exactly or as PHP and case-insensitive frameworks do. The origins are written with
`urllib.parse`, apart from `kong_plugin.query_key`.
"""

from __future__ import annotations

import itertools
import random
import unicodedata
from collections import defaultdict
from dataclasses import dataclass
from urllib.parse import unquote_to_bytes

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kong_plugin.cache_key import build_key
from kong_plugin.config import PluginConfig, parse_config
from kong_plugin.handler import Plugin
from kong_plugin.headers import Headers
from kong_plugin.pdk import parse_request_line, request_target
from kong_plugin.query_key import QueryUnit, name_fold, normalize_escapes, query_units

CONFIGS = {
    "all": parse_config({}),
    "ignore": parse_config({"ignore_query_params": ["utm_*", "fbclid"]}),
    "vary": parse_config({"vary_query_params": ["a", "b_c"], "ignore_query_params": ["utm_*"]}),
}

NAMES = [
    "a", "A", "%61", "%41", "b", "b_c", "b.c", "B+C", "b%5Fc", "b%2Ec", "b%20c", "a[]",
    "a[0]", "a%00", "\uff41", "utm_x", "UTM_x", "utm_y", "fbclid", "\u00e9", "%C3%A9", "",
]  # fmt: skip
VALUES = [
    "", "1", "2", "%31", "%ff", "%FE", "%fe", "+", "%20", "%2B", "%2%41", "%2A", "%2a", "%",
    "x;y", "x%3By", "x;utm_x=1", "x;a=1", "x%3Da", "\u00e9", "\udcff", "%7e", "~",
]  # fmt: skip


@dataclass(frozen=True)
class Origin:
    semicolon: bool  # splits on ';' as well as '&'
    plus_is_space: bool  # form decoding
    loose_names: bool  # PHP-style names (a.b is a_b, a[] is a), case-insensitive, NFKC

    def decode(self, text: str) -> str:
        if self.plus_is_space:
            text = text.replace("+", " ")
        raw = unquote_to_bytes(text.encode("utf-8", "surrogateescape"))
        return raw.decode("utf-8", "surrogateescape")

    def ident(self, name: str) -> str:
        if not self.loose_names:
            return name
        name = name.partition("\x00")[0]
        name = unicodedata.normalize("NFKC", name).lower().partition("[")[0]
        return name.replace(".", "_").replace(" ", "_")

    def significant(self, name: str, config: PluginConfig) -> bool:
        if config.query_param_ignored(name):
            return False
        wanted = config.vary_query_names
        return wanted is None or self.ident(name) in {self.ident(w) for w in wanted}

    def read(self, query: str, config: PluginConfig) -> dict[str, list[tuple[str, str | None]]]:
        """Name -> [(name as sent, value or None for a flag)] in the order sent."""
        pieces = [u for u in query.split("&") if u]
        if self.semicolon:
            pieces = [p for u in pieces for p in u.split(";") if p]
        out: dict[str, list[tuple[str, str | None]]] = defaultdict(list)
        for piece in pieces:
            raw_name, eq, raw_value = piece.partition("=")
            name = self.decode(raw_name)
            if self.significant(name, config):
                out[self.ident(name)].append((name, self.decode(raw_value) if eq else None))
        return dict(out)


ORIGINS = [Origin(*flags) for flags in itertools.product((False, True), repeat=3)]


def qkey(query: str, config: PluginConfig) -> str:
    return build_key("GET", "h", "/p", query, {}, None, "r", config).key


def assert_read_alike(q1: str, q2: str, config: PluginConfig) -> None:
    for origin in ORIGINS:
        assert origin.read(q1, config) == origin.read(q2, config), (q1, q2, origin)


# --- queries and queries that look alike ---------------------------------------------

pieces = st.tuples(st.sampled_from(NAMES), st.booleans(), st.sampled_from(VALUES))
separators = st.sampled_from(["&", "&", "&", ";", "&&"])


def join(parts: list[tuple[str, bool, str]], seps: list[str]) -> str:
    out = []
    for i, (name, eq, value) in enumerate(parts):
        out.append((seps[i % len(seps)] if i else "") + name + ("=" + value if eq else ""))
    return "".join(out)


queries = st.builds(join, st.lists(pieces, max_size=6), st.lists(separators, min_size=1))
ALIKE = {
    "%61": "a", "%41": "A", "%2A": "%2a", "%FE": "%fe", "%7e": "~", "%31": "1", "&": "&&",
    "utm_x=1": "utm_x=2", "+": "%20", "%2B": "+", "%3B": ";", "%3D": "=", "x;y": "x;;y",
    "a=1": "a=2",
}  # fmt: skip


@st.composite
def alike_pairs(draw: st.DrawFn) -> tuple[str, str]:
    """A query and a variant made to collide often: units shuffled, tokens swapped for
    forms that look equivalent (some are, some are not)."""
    q1 = draw(queries)
    units = q1.split("&")
    q2 = "&".join(draw(st.permutations(units))) if draw(st.booleans()) else q1
    for pair in draw(st.lists(st.sampled_from(sorted(ALIKE.items())), max_size=3)):
        old, new = reversed(pair) if draw(st.booleans()) else pair
        q2 = q2.replace(old, new, 1)
    return q1, q2


@pytest.mark.parametrize("config_name", sorted(CONFIGS))
@settings(max_examples=600, deadline=None)
@given(pair=alike_pairs())
def test_equal_keys_mean_every_origin_reads_the_same(config_name: str, pair) -> None:
    config = CONFIGS[config_name]
    q1, q2 = pair
    if qkey(q1, config) == qkey(q2, config):
        assert_read_alike(q1, q2, config)


@pytest.mark.parametrize("config_name", sorted(CONFIGS))
def test_seeded_buckets_of_equal_keys_read_alike(config_name: str) -> None:
    """Many small queries, grouped by key: every group reads alike. Also checks that the
    groups are not trivially small (the property was exercised)."""
    config = CONFIGS[config_name]
    rng = random.Random(9)
    small_names, small_values = (
        ["a", "A", "b", "b.c", "b_c", "utm_x", "%61"],
        ["1", "%31", "x;y", "+", "%2B", "%2%41", "%2A"],
    )
    buckets: dict[str, set[str]] = defaultdict(set)
    for _ in range(6000):
        parts = [
            (rng.choice(small_names), rng.random() < 0.8, rng.choice(small_values))
            for _ in range(rng.randint(0, 4))
        ]
        q = join(parts, [rng.choice(["&", "&", ";"]) for _ in range(4)])
        buckets[qkey(q, config)].add(q)
    shared = [sorted(b) for b in buckets.values() if len(b) > 1]
    assert len(shared) > 100
    for bucket in shared:
        for other in bucket[1:]:
            assert_read_alike(bucket[0], other, config)


# --- the parts on their own -------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "normal"),
    [
        ("%7e%41%2f%2F", "~A%2F%2F"),
        ("%ff%FE", "%FF%FE"),
        ("+%20%2b", "+%20%2B"),
        ("%2%41", "%2%41"),  # a stray '%': escapes only upper-cased
        ("%2%4a", "%2%4A"),
        ("100%", "100%"),
        ("\u00e9%C3%A9", "\u00e9%C3%A9"),
        ("", ""),
    ],
)
def test_normalize_escapes(raw: str, normal: str) -> None:
    assert normalize_escapes(raw) == normal


@settings(max_examples=500)
@given(st.lists(st.sampled_from(["%", "2", "4", "a", "A", "%41", "%2a", "%7E", "~", "g"])))
def test_normalize_escapes_keeps_what_a_decoder_reads(tokens: list[str]) -> None:
    """Normalising never changes what a lenient percent-decoder reads (it is lossless)."""
    text = "".join(tokens)
    assert unquote_to_bytes(normalize_escapes(text)) == unquote_to_bytes(text)


def test_units_keep_raw_text_and_mark_parts_after_a_dropped_name() -> None:
    config = CONFIGS["ignore"]
    # two names (b, c) in one unit: it stays first, nothing moves across it
    assert query_units("utm_x=1;b=2;utm_y=3;c&a=%7e", config) == (
        QueryUnit(False, ("b=2", "c")),
        QueryUnit(True, ("a=~",)),
    )
    assert query_units("utm_x=1;b=2&a=%7e", config) == (
        QueryUnit(True, ("a=~",)),
        QueryUnit(False, ("b=2",)),
    )
    assert query_units("b=1;utm_x=1", config) == (QueryUnit(True, ("b=1;utm_x=1",)),)
    assert query_units("utm_x=1;fbclid=2&&", config) == ()


@pytest.mark.parametrize(
    ("name", "fold"),
    [("Page_X", "pagex"), ("page.x", "pagex"), ("page+x", "pagex"), ("p%41ge", "page")]
    + [(n, None) for n in ("a[]", "a%00", "\u00e9", "\uff41", "a;b", "a,b")],
)
def test_name_fold(name: str, fold: str | None) -> None:
    assert name_fold(name) == fold


def test_the_handler_keys_the_raw_query_of_the_request_line() -> None:
    """The query comes from nginx's ``$request`` as sent. Raw non-ASCII bytes that are
    UTF-8 reach the plugin server as text (a msgpack str) and are keyed as such, apart
    from their escapes; escapes of bytes that are not UTF-8 stay escapes."""
    plugin = Plugin({"sidecar": {"address": "unix:/nonexistent.sock"}})
    assert plugin.config is not None

    def key_of(line: str) -> str:
        method, target = parse_request_line(line)
        host, path, query = request_target(None, target, Headers.of({"host": "h"}))
        assert plugin.config is not None
        return build_key(method, host, path, query, {}, None, "r", plugin.config).key

    raw_e = key_of("GET /p?q=\u00e9 HTTP/1.1")
    assert raw_e == key_of("GET http://h/p?q=\u00e9 HTTP/1.1")
    assert raw_e != key_of("GET /p?q=\u00e8 HTTP/1.1")
    assert raw_e != key_of("GET /p?q=%C3%A9 HTTP/1.1")
    assert key_of("GET /p?q=%ff HTTP/1.1") != key_of("GET /p?q=%fe HTTP/1.1")
    assert key_of("GET /p?q=%ff HTTP/1.1") == key_of("GET /p?q=%FF HTTP/1.1")
