"""Override headers stripped before proxying, and the credential rule (cache deception)."""

from __future__ import annotations

import pytest

from kong_plugin.cache_control import parse_cache_control
from kong_plugin.config import parse_config
from kong_plugin.credentials import allows_sharing, guard
from kong_plugin.errors import ConfigError
from kong_plugin.headers import Headers
from kong_plugin.identity import Identity
from kong_plugin.poisoning import present, strip_set, without
from kong_plugin.schema import STRIP_REQUEST_HEADERS, find_field

DEFAULT = parse_config({})
NOBODY = Identity(None, False, False)
BEARER = Identity(None, False, True)
ALICE = Identity("c-alice", False, True)

# --- strip_request_headers ------------------------------------------------------------


def test_the_default_list_covers_method_url_host_and_scheme_overrides() -> None:
    names = DEFAULT.strip_header_names
    for name in (
        "x-http-method-override",
        "x-original-url",
        "x-rewrite-url",
        "x-host",
        "x-forwarded-server",
        "x-original-host",
        "x-http-host-override",
        "forwarded",
        "x-forwarded-scheme",
        "x-forwarded-ssl",
        "front-end-https",
    ):
        assert name in names, name
    assert DEFAULT.strip_request_headers == tuple(STRIP_REQUEST_HEADERS)
    assert find_field("strip_request_headers")["default"] == STRIP_REQUEST_HEADERS


@pytest.mark.parametrize(
    "name",
    ["x-forwarded-host", "x-forwarded-proto", "x-forwarded-port", "x-forwarded-for", "x-real-ip"],
)
def test_headers_kong_sets_itself_are_not_stripped(name: str) -> None:
    """Kong 3.9 overwrites them from untrusted clients with proxy_set_header; clearing them
    in a plugin would change nothing (see kong_plugin.poisoning)."""
    assert name not in DEFAULT.strip_header_names


def test_a_header_the_key_holds_is_kept() -> None:
    config = parse_config({"vary_headers": ["X-Host", "forwarded"]})
    assert "x-host" not in config.strip_header_names
    assert "forwarded" not in config.strip_header_names
    assert "x-original-url" in config.strip_header_names


@pytest.mark.parametrize(
    "sent", ["x_original_url", "X_Original_URL", "x-original_url", "X_HTTP_Method_Override"]
)
def test_underscore_spellings_are_stripped(sent: str) -> None:
    """Kong runs nginx with underscores_in_headers on, and CGI-style origins read `_` as
    `-` (HTTP_X_ORIGINAL_URL): the underscore spelling is the same override."""
    headers = Headers.of({sent.lower(): "/admin", "accept": "*/*"})
    assert present(headers, DEFAULT.strip_header_names) == (sent.lower(),)


def test_a_keyed_header_keeps_its_exact_name_only() -> None:
    config = parse_config({"vary_headers": ["X-Host"]})
    headers = Headers.of({"x-host": "a", "x_host": "evil"})
    assert present(headers, config.strip_header_names) == ("x_host",)


@pytest.mark.parametrize("sent", ["x_forwarded_host", "x_forwarded_proto", "x_real_ip"])
def test_underscore_spellings_of_what_kong_sets_are_stripped(sent: str) -> None:
    """Kong's proxy_set_header replaces X-Forwarded-Host, not X_Forwarded_Host."""
    headers = Headers.of({sent: "evil.example", "x-forwarded-host": "kong"})
    assert present(headers, DEFAULT.strip_header_names) == (sent,)


def test_an_empty_list_strips_nothing() -> None:
    config = parse_config({"strip_request_headers": []})
    assert not config.strip_header_names
    assert present(Headers.of({"x-host": "evil"}), config.strip_header_names) == ()


def test_a_custom_list_is_matched_case_insensitively() -> None:
    config = parse_config({"strip_request_headers": ["X-Debug-Mode", "x-debug-mode"]})
    assert config.strip_request_headers == ("X-Debug-Mode", "x-debug-mode")
    assert config.strip_header_names.families == frozenset({"x-debug-mode"})


def test_a_bad_header_name_is_refused_naming_the_field() -> None:
    with pytest.raises(ConfigError, match=r"strip_request_headers\[1\]"):
        parse_config({"strip_request_headers": ["X-Host", "bad name"]})


def test_present_lists_what_the_request_carries_in_its_order() -> None:
    h = Headers.of({"accept": "*/*", "Forwarded": "host=x", "x-host": "y", "cookie": "a=b"})
    assert present(h, DEFAULT.strip_header_names) == ("forwarded", "x-host")
    assert present(Headers.of({"accept": "*/*"}), DEFAULT.strip_header_names) == ()


def test_without_drops_every_line_of_the_names() -> None:
    lines = [(b"x-host", b"a"), (b"accept", b"*/*"), (b"X-Host", b"b")]
    assert without(lines, ("x-host",)) == [(b"accept", b"*/*")]
    rule = strip_set(["A", "b"], ["B"])
    assert "a" in rule and "A" in rule and "b" not in rule


# --- cookie_requests and the guard ----------------------------------------------------


def test_cookie_requests_defaults_to_explicit_and_refuses_other_words() -> None:
    assert DEFAULT.cookie_requests == "explicit"
    assert find_field("cookie_requests")["one_of"] == ["explicit", "ignore", "bypass"]
    with pytest.raises(ConfigError, match="cookie_requests"):
        parse_config({"cookie_requests": "share"})


def test_no_credentials_no_guard() -> None:
    assert guard(Headers.of({"accept": "*/*"}), NOBODY, False, DEFAULT) == ""


def test_an_unkeyed_cookie_is_guarded() -> None:
    assert guard(Headers.of({"cookie": "session=a"}), NOBODY, False, DEFAULT) == "cookie"


def test_cookie_wins_over_authorization_as_the_stricter_rule() -> None:
    h = Headers.of({"cookie": "session=a", "authorization": "Bearer a"})
    assert guard(h, BEARER, False, DEFAULT) == "cookie"


def test_authorization_is_guarded_unless_the_key_separates_it() -> None:
    h = Headers.of({"authorization": "Bearer a"})
    assert guard(h, BEARER, False, DEFAULT) == "authorization"
    keyed = parse_config({"vary_headers": ["Authorization"]})
    assert guard(h, BEARER, False, keyed) == ""
    # credentials an auth plugin hid: vary_headers on Authorization holds nothing then
    hidden = Headers.of({"x-credential-identifier": "k1"})
    assert guard(hidden, BEARER, False, keyed) == "authorization"


def test_a_consumer_in_the_key_separates_every_credential() -> None:
    h = Headers.of({"cookie": "session=a", "authorization": "Bearer a"})
    assert guard(h, ALICE, True, DEFAULT) == ""


def test_a_cookie_the_key_holds_is_not_guarded() -> None:
    keyed = parse_config({"vary_headers": ["Cookie"]})
    assert guard(Headers.of({"cookie": "session=a"}), NOBODY, False, keyed) == ""


def test_cookie_requests_ignore_is_the_old_behaviour() -> None:
    config = parse_config({"cookie_requests": "ignore"})
    assert guard(Headers.of({"cookie": "session=a"}), NOBODY, False, config) == ""
    h = Headers.of({"cookie": "session=a", "authorization": "Bearer a"})
    assert guard(h, BEARER, False, config) == "authorization"  # RFC 9111 §3.5 still holds


@pytest.mark.parametrize(
    ("cc", "cookie", "authorization", "authorization_rfc"),
    [
        ("public, max-age=60", True, True, True),
        ("s-maxage=60", True, True, True),
        ("max-age=60", False, False, False),
        ("max-age=0, must-revalidate", False, False, True),
        ("", False, False, False),
    ],
)
def test_allows_sharing(
    cc: str, cookie: bool, authorization: bool, authorization_rfc: bool
) -> None:
    parsed = parse_cache_control(cc)
    rfc = parse_config({"cache_control": True})
    assert allows_sharing(parsed, "cookie", DEFAULT) is cookie
    assert allows_sharing(parsed, "cookie", rfc) is cookie
    assert allows_sharing(parsed, "authorization", DEFAULT) is authorization
    assert allows_sharing(parsed, "authorization", rfc) is authorization_rfc
    assert allows_sharing(parsed, "", DEFAULT)
