"""RFC 8941 Dictionaries (§3.2, parsed as §4.2.2 says): the syntax of targeted fields."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kong_plugin.sf_dictionary import (
    MAX_FIELD_LENGTH,
    MAX_MEMBERS,
    InnerList,
    Item,
    Token,
    parse_dictionary,
)


def one(value: str) -> object:
    """The value of the only member, `a`, of ``a=<value>``."""
    parsed = parse_dictionary(f"a={value}")
    assert parsed is not None, value
    member = parsed["a"]
    assert isinstance(member, Item)
    return member.value


def test_members_in_order_with_boolean_true_for_a_bare_key_section_3_2() -> None:
    parsed = parse_dictionary("max-age=60, no-store, private=?0, *x")
    assert parsed is not None
    assert list(parsed) == ["max-age", "no-store", "private", "*x"]
    assert parsed["max-age"] == Item(60)
    assert parsed["no-store"] == Item(True)
    assert parsed["private"] == Item(False)


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("0", 0),
        ("-7", -7),
        ("007", 7),
        ("999999999999999", 999999999999999),
        ("1.5", 1.5),
        ("-0.125", -0.125),
        ("123456789012.123", 123456789012.123),
        ('"hello, world"', "hello, world"),
        ('"a\\"b\\\\c"', 'a"b\\c'),
        ('""', ""),
        ("foo", Token("foo")),
        ("*foo/bar:baz!", Token("*foo/bar:baz!")),
        ("Foo", Token("Foo")),
        (":aGVsbG8=:", b"hello"),
        (":aGVsbG8:", b"hello"),  # missing padding is tolerated (§4.2.7)
        ("::", b""),
        ("?1", True),
        ("?0", False),
    ],
)
def test_bare_items_section_4_2_3_1(text: str, value: object) -> None:
    parsed = one(text)
    assert parsed == value
    assert type(parsed) is type(value)


@pytest.mark.parametrize(
    "text",
    [
        "1234567890123456",  # 16 digits
        "1234567890123.1",  # 13 integer digits in a decimal
        "1.1234",  # 4 fraction digits
        "1.",
        "-",
        "--1",
        "1.2.3",
        "5s",
        '"unterminated',
        '"bad \\n escape"',
        '"tab\tinside"',
        '"caf\u00e9"',
        ":not base64!:",
        ":aGVsbG8=",  # no closing colon
        ":a=b:",  # padding in the middle
        ":a:",  # one base64 character cannot be decoded
        "?",
        "?2",
        "?true",
        "@x",
        "",
        "(1 2",
        "(1,2)",
        "(1  2)x",
    ],
)
def test_invalid_values_fail_the_whole_field_section_4_2(text: str) -> None:
    assert parse_dictionary(f"max-age=60, a={text}") is None


@pytest.mark.parametrize(
    "text",
    [
        "Max-Age=60",  # keys are lower case
        "max-age =60",  # no space before "="
        "max-age= 60",  # nor after
        "max-age=60,",  # trailing comma
        ",max-age=60",
        "max-age=60,, public",
        "max-age=60 public",
        "max-age=60 ;public",  # a space before ";" ends the member
        "max-age=60, &&&&&",
        "1a=1",
        "\tmax-age=60",  # only SP is discarded around the whole field
        "a=1;b c",
    ],
)
def test_invalid_structure_fails_the_whole_field(text: str) -> None:
    assert parse_dictionary(text) is None


def test_whitespace_rules_section_4_2_2() -> None:
    """SP around the field, OWS around commas, SP inside inner lists and after ";"."""
    parsed = parse_dictionary("  a=1 ,\tb=( 1  2 );q=?0 , c;  x=1  ")
    assert parsed is not None
    assert parsed["a"] == Item(1)
    assert parsed["b"] == InnerList((Item(1), Item(2)), (("q", False),))
    assert parsed["c"] == Item(True, (("x", 1),))


def test_parameters_and_inner_lists_section_3_1_1() -> None:
    parsed = parse_dictionary('no-cache=("set-cookie";x "x-user");p=1, max-age=5;ignored')
    assert parsed is not None
    assert parsed["no-cache"] == InnerList(
        (Item("set-cookie", (("x", True),)), Item("x-user")), (("p", 1),)
    )
    assert parsed["max-age"] == Item(5, (("ignored", True),))
    assert parse_dictionary("a=()") == {"a": InnerList(())}


def test_a_repeated_key_keeps_its_place_and_its_last_value_section_4_2_2() -> None:
    parsed = parse_dictionary("max-age=60, public, max-age=5")
    assert parsed is not None
    assert list(parsed) == ["max-age", "public"]
    assert parsed["max-age"] == Item(5)
    assert parse_dictionary("a;x=1;x=2") == {"a": Item(True, (("x", 2),))}


def test_field_lines_are_combined_with_a_comma_first_section_4_2() -> None:
    assert parse_dictionary(["max-age=60", "public"]) == {
        "max-age": Item(60),
        "public": Item(True),
    }
    # the lines are joined as text, then parsed: a String may span them
    assert parse_dictionary(['a="x', 'y"']) == {"a": Item("x, y")}
    assert parse_dictionary(["max-age=60", ""]) is None  # an empty line: a trailing comma


def test_absent_and_empty_fields_are_empty_dictionaries() -> None:
    assert parse_dictionary(None) == {}
    assert parse_dictionary([]) == {}
    assert parse_dictionary("") == {}
    assert parse_dictionary("   ") == {}


def test_bounds_make_a_field_invalid() -> None:
    members = ", ".join(f"k{i}" for i in range(MAX_MEMBERS))
    parsed = parse_dictionary(members)
    assert parsed is not None and len(parsed) == MAX_MEMBERS
    assert parse_dictionary(members + ", one-more") is None
    longest = 'a="' + "x" * (MAX_FIELD_LENGTH - 4) + '"'
    assert len(longest) == MAX_FIELD_LENGTH
    assert parse_dictionary(longest) is not None
    assert parse_dictionary('a="' + "x" * (MAX_FIELD_LENGTH - 3) + '"') is None
    # repeated keys count once: what is bounded is the dictionary's size
    assert parse_dictionary(", ".join(["a"] * (MAX_MEMBERS + 10))) == {"a": Item(True)}


@given(st.text(max_size=200))
def test_never_raises_on_arbitrary_text(value: str) -> None:
    parsed = parse_dictionary(value)
    assert parsed is None or isinstance(parsed, dict)


@given(
    st.lists(
        st.text(alphabet=st.sampled_from(' ,;=()"?:*-.0123456789abcmxgeY\\/\t'), max_size=30),
        max_size=4,
    )
)
def test_never_raises_on_dictionary_like_lines(lines: list[str]) -> None:
    parsed = parse_dictionary(lines)
    assert parsed is None or isinstance(parsed, dict)
