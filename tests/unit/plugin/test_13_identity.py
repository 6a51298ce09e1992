"""Who is asking: consumer scope and credentials as Kong's auth plugins leave them."""

from __future__ import annotations

import pytest

from kong_plugin.headers import Headers
from kong_plugin.identity import classify

ALICE = {"id": "c-alice", "username": "alice"}
ANON = {"id": "c-anon", "username": "anonymous"}


def never_asked() -> object:
    raise AssertionError("the credential must not be fetched for this request")


def test_no_auth_plugin_and_no_credentials() -> None:
    who = classify(Headers.of({}), None, never_asked)
    assert (who.consumer_id, who.anonymous, who.authenticated) == (None, False, False)


@pytest.mark.parametrize("header", ["authorization", "x-credential-identifier"])
def test_presented_credentials_are_authentication_even_without_consumer(header: str) -> None:
    # ldap-auth style: a credential but no consumer; or Authorization left visible
    who = classify(Headers.of({header: "x"}), None, never_asked)
    assert who.authenticated and who.consumer_id is None


def test_consumer_with_hidden_credentials_is_authenticated() -> None:
    # key-auth with hide_credentials: no apikey, no Authorization on the request any more
    who = classify(Headers.of({"x-consumer-id": "c-alice"}), ALICE, never_asked)
    assert (who.consumer_id, who.anonymous, who.authenticated) == ("c-alice", False, True)


def test_anonymous_fallback_is_confirmed_by_the_missing_credential() -> None:
    h = Headers.of({"x-anonymous-consumer": "true", "x-consumer-id": "c-anon"})
    who = classify(h, ANON, lambda: None)
    assert (who.consumer_id, who.anonymous, who.authenticated) == (None, True, False)


def test_anonymous_with_rejected_authorization_still_presented_credentials() -> None:
    h = Headers.of({"x-anonymous-consumer": "true", "authorization": "Basic bad"})
    who = classify(h, ANON, lambda: None)
    assert who.anonymous and who.authenticated


def test_a_client_claiming_to_be_anonymous_with_a_credential_is_not() -> None:
    # a custom auth plugin that does not clear the client's X-Anonymous-Consumer
    h = Headers.of({"x-anonymous-consumer": "true"})
    who = classify(h, ALICE, lambda: {"id": "cred-1"})
    assert (who.consumer_id, who.anonymous, who.authenticated) == ("c-alice", False, True)


def test_a_consumer_without_an_id_is_ignored() -> None:
    who = classify(Headers.of({}), {"username": "x"}, never_asked)
    assert who.consumer_id is None and not who.authenticated
