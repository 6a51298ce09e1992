"""kongsim.http.keyauth: the bundled key-auth plugin, without any server."""

from __future__ import annotations

import json
from typing import Any

from multidict import CIMultiDict

from kongsim.config.declarative import parse
from kongsim.config.schema import validate
from kongsim.http import keyauth
from kongsim.request.state import RequestState

DECL = parse(
    {
        "_format_version": "3.0",
        "consumers": [
            {"username": "alice", "keyauth_credentials": [{"key": "k-alice"}]},
            {"username": "anon"},
        ],
    }
)


def conf(**overrides: Any) -> dict[str, Any]:
    filled, errors = validate(keyauth.SCHEMA, overrides)
    assert errors == [] and filled is not None
    return filled


def request(
    uri: str = "/", body: bytes = b"", headers: dict[str, str] | None = None
) -> RequestState:
    return RequestState(
        method="POST",
        request_uri=uri,
        headers=CIMultiDict(headers or {}),
        body=body,
        client_ip="127.0.0.1",
        client_port=1,
        server_port=8000,
    )


def test_realm_goes_into_www_authenticate() -> None:
    st = request()
    result = keyauth.access(st, conf(realm="kong"), DECL)
    assert result is not None and result.status == 401
    assert ("WWW-Authenticate", 'Key realm="kong"') in result.headers
    assert json.loads(result.body)["message"] == "No API key found in request"


def test_key_in_body_and_hidden_from_upstream() -> None:
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    st = request("/", b"apikey=k-alice&x=1", form)
    assert keyauth.access(st, conf(key_in_body=True, hide_credentials=True), DECL) is None
    assert st.consumer is not None and st.consumer["username"] == "alice"
    assert st.upstream_body == b"x=1"


def test_key_lookup_respects_header_and_query_switches() -> None:
    st = request("/?apikey=k-alice")
    result = keyauth.access(st, conf(key_in_query=False), DECL)
    assert result is not None and result.status == 401
    st = request("/", headers={"apikey": "k-alice"})
    result = keyauth.access(st, conf(key_in_header=False), DECL)
    assert result is not None and result.status == 401
    st = request("/", headers={"X-Api-Key": "k-alice"})
    assert keyauth.access(st, conf(key_names=["x_api_key"]), DECL) is None  # "_" matches "-"


def test_anonymous_consumer_on_failure() -> None:
    st = request("/", headers={"apikey": "wrong"})
    assert keyauth.access(st, conf(anonymous="anon"), DECL) is None
    assert st.consumer is not None and st.consumer["username"] == "anon"
    assert st.credential is None
    # kong.service.request.set_header changes the request later plugins see
    assert st.headers.getall("X-Anonymous-Consumer") == ["true"]
    st = request("/", headers={"apikey": "wrong"})
    result = keyauth.access(st, conf(anonymous="missing"), DECL)
    assert result is not None and result.status == 500


def test_preflight_can_skip_authentication() -> None:
    st = request()
    st.method = "OPTIONS"
    assert keyauth.access(st, conf(run_on_preflight=False), DECL) is None


def test_hidden_credentials_and_consumer_headers_are_what_later_plugins_see() -> None:
    """key-auth changes the request itself (kong.service.request.clear_header/set_header,
    clear_query_arg: ngx.req.* in kong/pdk/service/request.lua), so a later plugin's
    kong.request.get_headers()/get_raw_query() no longer holds the key."""
    st = request("/?apikey=k-alice&x=1", headers={"X-Anonymous-Consumer": "true"})
    assert keyauth.access(st, conf(hide_credentials=True), DECL) is None
    assert "apikey" not in st.raw_query and st.raw_query == "x=1"
    assert "X-Anonymous-Consumer" not in st.headers  # a client cannot claim to be anonymous
    assert st.headers["X-Consumer-Username"] == "alice"
    assert "X-Credential-Identifier" in st.headers
    st = request("/", headers={"apikey": "k-alice"})
    assert keyauth.access(st, conf(hide_credentials=True), DECL) is None
    assert "apikey" not in st.headers
