"""The published JSON Schema and `parse` accept the same events.

A corpus of valid and invalid documents (and random ones) goes through both and the
verdicts must agree. What a JSON Schema cannot say about a document -- its size in bytes,
its encoding, a key given twice, nesting depth, lone surrogates -- is refused by `parse`
alone; the schema's description lists those, and `PARSE_ONLY` checks each one.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sidecar.events import MAX_DEPTH, MAX_EVENT_BYTES, EventError, Reason, parse
from sidecar.events import event as ev
from sidecar.events import extensions as ext
from sidecar.events.tagging import MAX_TAG_CHARS

SCHEMA_PATH = Path(__file__).resolve().parents[4] / "schema" / "strata.invalidation.v1.schema.json"
SCHEMA: dict[str, Any] = json.loads(SCHEMA_PATH.read_text())

VALID: list[Any] = [
    {"v": 1, "tags": ["products:42"]},
    {"v": 1.0, "tags": ["products:42"]},
    {"v": 1, "urls": ["/"]},
    {"v": 1, "urls": ["/products/42?lang=en&x=%20"]},
    {"v": 1, "urls": ["/caf\u00e9"]},
    {"v": 1, "urls": ["/a?b?c=d"]},
    {"v": 1, "prefixes": ["/products/"]},
    {"v": 1, "prefixes": ["/a/./b/../c"]},
    {"v": 1, "flush": "catalog"},
    {"v": 1, "flush": "*"},
    {"v": 1, "urls": [], "tags": [], "prefixes": [], "flush": "x"},
    {"v": 1, "tags": ["t", "t", "t"]},
    {"v": 1, "tags": ["x" * 256]},
    {"v": 1, "tags": ["t"] * ev.MAX_ITEMS},
    {"v": 1, "urls": ["/" + "a" * (ev.MAX_URL_CHARS - 1)]},
    {"v": 1, "flush": "s" * ev.MAX_FLUSH_CHARS},
    {"v": 1, "tags": ["t"], "soft": False},
    {"v": 1, "tags": ["t"], "soft": True},
    {"v": 1, "tags": ["t"], "id": "i" * ev.MAX_ID_CHARS},
    {"v": 1, "tags": ["t"], "origin": "node a / r\u00e9plica"},
    {"v": 1, "tags": ["t"], "ts": 0},
    {"v": 1, "tags": ["t"], "ts": ev.MAX_TS},
    {"v": 1, "tags": ["t"], "ts": 1.7e12},
    {"v": 1, "tags": ["t"], "future": {"anything": [1, None, "x"]}},
    {"v": 1, "tags": ["t"], "urls2": 5, "": ""},
    {"v": 1, "keys": ["v1:route-1:GET:/products/42"]},
    {"v": 1, "keys": ["v1:k\u00e9y with spaces\u0085"]},
    {"v": 1, "keys": ["k" * ext.MAX_KEY_CHARS]},
    {"v": 1, "routes": ["v1:route-1:"]},
    {"v": 1, "routes": ["r" * ext.MAX_ROUTE_CHARS], "soft": True},
    {"v": 1, "key_prefixes": ["v1:route-1:GET:/products/"]},
    {"v": 1, "key_prefixes": [f"v1:{i}:" for i in range(16)]},
    {"v": 1, "keys": [], "soft": True, "tags": ["t"]},
    {"v": 1, "key_prefixes": [], "soft": True, "routes": ["r"]},
    {"v": 1, "keys": ["k"], "soft": False},
]

INVALID: list[Any] = [
    [],
    "event",
    None,
    42,
    {},
    {"tags": ["t"]},
    {"v": 2, "tags": ["t"]},
    {"v": 0, "tags": ["t"]},
    {"v": 1.5, "tags": ["t"]},
    {"v": True, "tags": ["t"]},
    {"v": "1", "tags": ["t"]},
    {"v": None, "tags": ["t"]},
    {"v": 1},
    {"v": 1, "urls": [], "tags": [], "prefixes": []},
    {"v": 1, "soft": True},
    {"v": 1, "tags": "t"},
    {"v": 1, "tags": [1]},
    {"v": 1, "tags": [None]},
    {"v": 1, "tags": [""]},
    {"v": 1, "tags": ["a b"]},
    {"v": 1, "tags": ["caf\u00e9"]},
    {"v": 1, "tags": ["t\n"]},
    {"v": 1, "tags": ["x" * 257]},
    {"v": 1, "tags": ["t"] * (ev.MAX_ITEMS + 1)},
    {"v": 1, "key_prefixes": [f"v1:{i}:" for i in range(ext.MAX_KEY_PREFIXES + 1)]},
    {"v": 1, "key_prefixes": ["v1:"] * (ext.MAX_KEY_PREFIXES + 1)},
    {"v": 1, "urls": "/a"},
    {"v": 1, "urls": ["a"]},
    {"v": 1, "urls": [""]},
    {"v": 1, "urls": ["/a b"]},
    {"v": 1, "urls": ["/a#b"]},
    {"v": 1, "urls": ["/a\n"]},
    {"v": 1, "urls": ["/a\u0000"]},
    {"v": 1, "urls": ["/a\u007f"]},
    {"v": 1, "urls": ["/a\u009f"]},
    {"v": 1, "urls": ["/" + "a" * ev.MAX_URL_CHARS]},
    {"v": 1, "prefixes": ["/a?b"]},
    {"v": 1, "prefixes": ["a/"]},
    {"v": 1, "prefixes": [7]},
    {"v": 1, "flush": ""},
    {"v": 1, "flush": None},
    {"v": 1, "flush": 3},
    {"v": 1, "flush": "a b"},
    {"v": 1, "flush": "s" * (ev.MAX_FLUSH_CHARS + 1)},
    {"v": 1, "tags": ["t"], "soft": "yes"},
    {"v": 1, "tags": ["t"], "soft": 0},
    {"v": 1, "tags": ["t"], "soft": None},
    {"v": 1, "tags": ["t"], "id": ""},
    {"v": 1, "tags": ["t"], "id": 5},
    {"v": 1, "tags": ["t"], "id": "a b"},
    {"v": 1, "tags": ["t"], "id": "i" * (ev.MAX_ID_CHARS + 1)},
    {"v": 1, "tags": ["t"], "origin": ""},
    {"v": 1, "tags": ["t"], "origin": "a\u001fb"},
    {"v": 1, "tags": ["t"], "origin": "o" * (ev.MAX_ORIGIN_CHARS + 1)},
    {"v": 1, "tags": ["t"], "ts": -1},
    {"v": 1, "tags": ["t"], "ts": ev.MAX_TS + 1},
    {"v": 1, "tags": ["t"], "ts": 1.5},
    {"v": 1, "tags": ["t"], "ts": "2026-01-01T00:00:00Z"},
    {"v": 1, "tags": ["t"], "ts": True},
    {"v": 1, "tags": ["t"], "ts": 1e300},
    {"v": 1, "keys": []},
    {"v": 1, "keys": "k"},
    {"v": 1, "keys": [""]},
    {"v": 1, "keys": [3]},
    {"v": 1, "keys": ["a\nb"]},
    {"v": 1, "keys": ["a\u007f"]},
    {"v": 1, "keys": ["k" * (ext.MAX_KEY_CHARS + 1)]},
    {"v": 1, "key_prefixes": ["a\u0000"]},
    {"v": 1, "routes": ["v1:a b:"]},
    {"v": 1, "routes": ["caf\u00e9"]},
    {"v": 1, "routes": ["r" * (ext.MAX_ROUTE_CHARS + 1)]},
    {"v": 1, "routes": [""]},
    {"v": 1, "keys": ["k"], "soft": True},
    {"v": 1, "key_prefixes": ["k"], "soft": True},
    {"v": 1, "tags": ["t"], "key_prefixes": ["k"], "soft": True},
]

#: Valid to the schema, refused by `parse`: (raw bytes, reason).
PARSE_ONLY: list[tuple[bytes, Reason]] = [
    (b'{"v":1,"tags":["t"],"x":"' + b"a" * MAX_EVENT_BYTES + b'"}', Reason.TOO_LARGE),
    (b'{"v":1,"tags":["t"],"origin":"caf\xe9"}', Reason.BAD_ENCODING),
    (b'{"v":1,"tags":["t"],"tags":["u"]}', Reason.DUPLICATE_KEY),
    (
        b'{"v":1,"tags":["t"],"x":' + b"[" * MAX_DEPTH + b"]" * MAX_DEPTH + b"}",
        Reason.TOO_DEEP,
    ),
    (b'{"v":1,"urls":["/\\ud800"]}', Reason.BAD_VALUE),
    (b'{"v":1,"tags":["t"],"origin":"\\udc00"}', Reason.BAD_VALUE),
]


def _parse_verdict(doc: Any) -> bool:
    try:
        parse(json.dumps(doc).encode())
    except EventError:
        return False
    return True


@pytest.fixture(scope="module")
def validator() -> Any:
    jsonschema = pytest.importorskip(
        "jsonschema",
        reason="jsonschema is a dev extra (pyproject.toml); without it only parse is tested",
    )
    jsonschema.Draft202012Validator.check_schema(SCHEMA)
    return jsonschema.Draft202012Validator(SCHEMA)


@pytest.mark.parametrize("doc", VALID, ids=range(len(VALID)))
def test_valid_events_pass_both(doc: Any) -> None:
    assert _parse_verdict(doc)


@pytest.mark.parametrize("doc", VALID, ids=range(len(VALID)))
def test_valid_events_pass_the_schema(validator: Any, doc: Any) -> None:
    assert validator.is_valid(doc)


@pytest.mark.parametrize("doc", INVALID, ids=range(len(INVALID)))
def test_invalid_events_fail_parse(doc: Any) -> None:
    assert not _parse_verdict(doc)


@pytest.mark.parametrize("doc", INVALID, ids=range(len(INVALID)))
def test_invalid_events_fail_the_schema(validator: Any, doc: Any) -> None:
    assert not validator.is_valid(doc)


@pytest.mark.parametrize(("raw", "reason"), PARSE_ONLY, ids=[r for _, r in PARSE_ONLY])
def test_what_only_parse_can_refuse(validator: Any, raw: bytes, reason: Reason) -> None:
    with pytest.raises(EventError) as caught:
        parse(raw)
    assert caught.value.reason == reason
    # The document as a lenient reader sees it (last duplicate wins, bad bytes replaced)
    # is valid to the schema.
    lenient = json.loads(raw.decode("utf-8", "replace"))
    assert validator.is_valid(lenient)


_JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-3, 3)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=6),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=4), children, max_size=3)
    ),
    max_leaves=8,
)
_ODD_STRINGS = st.sampled_from(
    ["", "a", "/a b", "/#", "/a?b", "x" * 257, "caf\u00e9", "/a\u0085", "a\tb", "s" * 246]
) | st.text(max_size=6)
#: A valid value of each field.
_GOOD: dict[str, st.SearchStrategy[Any]] = {
    "v": st.sampled_from([1, 1.0]),
    "urls": st.lists(st.sampled_from(["/", "/a?b=1", "/caf\u00e9", "/a?x=%20&y"]), max_size=3),
    "tags": st.lists(st.sampled_from(["t", "products:42", "x" * 256]), max_size=3),
    "prefixes": st.lists(st.sampled_from(["/", "/a", "/a/b/"]), max_size=3),
    "keys": st.lists(st.sampled_from(["v1:r:GET:/a", "k\u00e9 y"]), max_size=2),
    "routes": st.lists(st.sampled_from(["v1:r:", "r" * 250]), max_size=2),
    "key_prefixes": st.lists(st.sampled_from(["v1:", "v1:r:GET:/"]), max_size=2),
    "flush": st.sampled_from(["catalog", "*"]),
    "soft": st.booleans(),
    "id": st.sampled_from(["e1", "i" * 128]),
    "origin": st.sampled_from(["node a", "r\u00e9plica"]),
    "ts": st.integers(0, ev.MAX_TS) | st.just(1.7e12),
    "x": _JSON,
}
#: Any value at all: strings that break some rule, lists of them, any JSON.
_ANY = _ODD_STRINGS | st.lists(_ODD_STRINGS | _JSON, max_size=3) | _JSON


@st.composite
def _events(draw: st.DrawFn) -> dict[str, Any]:
    """A valid-looking event (fields chosen at random), then often one field replaced by
    anything, or dropped."""
    names = draw(st.sets(st.sampled_from(sorted(_GOOD)), max_size=len(_GOOD)))
    doc = {name: draw(_GOOD[name]) for name in sorted(names | {"v"})}
    change = draw(st.sampled_from(["none", "replace", "drop"]))
    name = draw(st.sampled_from(sorted(_GOOD)))
    if change == "replace":
        doc[name] = draw(_ANY)
    elif change == "drop":
        doc.pop(name, None)
    return doc


_EVENTS = _events()


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_EVENTS)
def test_random_documents_get_the_same_verdict(validator: Any, doc: dict[str, Any]) -> None:
    assert validator.is_valid(doc) == _parse_verdict(doc), doc


def test_the_schema_states_the_limits_parse_enforces() -> None:
    props = SCHEMA["properties"]
    defs = SCHEMA["$defs"]
    for name in ("urls", "tags", "prefixes", "keys", "routes"):
        assert props[name]["maxItems"] == ev.MAX_ITEMS
    assert props["key_prefixes"]["maxItems"] == ext.MAX_KEY_PREFIXES == 16
    assert props["keys"]["items"] == props["key_prefixes"]["items"] == {"$ref": "#/$defs/key"}
    assert defs["key"]["maxLength"] == ext.MAX_KEY_CHARS
    assert defs["route"]["maxLength"] == ext.MAX_ROUTE_CHARS == 256 - len("route:")
    assert defs["url"]["maxLength"] == defs["prefix"]["maxLength"] == ev.MAX_URL_CHARS
    assert defs["tag"]["maxLength"] == MAX_TAG_CHARS
    assert props["flush"]["maxLength"] == ev.MAX_FLUSH_CHARS
    assert props["id"]["maxLength"] == ev.MAX_ID_CHARS
    assert props["origin"]["maxLength"] == ev.MAX_ORIGIN_CHARS
    assert props["ts"]["maximum"] == ev.MAX_TS
    assert props["v"]["const"] == ev.VERSION
    assert str(MAX_EVENT_BYTES) in SCHEMA["description"]
    assert f"deeper than {MAX_DEPTH}" in SCHEMA["description"]


def test_the_schema_uses_the_character_rules_parse_uses() -> None:
    props = SCHEMA["properties"]
    defs = SCHEMA["$defs"]
    assert defs["tag"]["not"]["pattern"] == ev.NOT_TAG_TEXT.pattern
    assert props["flush"]["not"]["pattern"] == ev.NOT_TAG_TEXT.pattern
    assert props["id"]["not"]["pattern"] == ev.NOT_TAG_TEXT.pattern
    assert defs["url"]["not"]["pattern"] == ev.NOT_URL_TEXT.pattern
    assert defs["prefix"]["not"]["pattern"] == ev.NOT_PREFIX_TEXT.pattern
    assert props["origin"]["not"]["pattern"] == ev.NOT_ORIGIN_TEXT.pattern
    assert defs["key"]["not"]["pattern"] == ext.NOT_KEY_TEXT.pattern
    assert defs["route"]["not"]["pattern"] == ext.NOT_ROUTE_TEXT.pattern
