"""Who is asking: the consumer a cache entry is scoped to, and whether the request carried
credentials (RFC 9111 §3.5) -- as far as an external plugin can tell on Kong.

Kong's auth plugins change the request before this plugin runs (they run earlier, priority
1000-1250): on success they set the consumer and credential, send ``X-Consumer-*`` and
``X-Credential-Identifier`` upstream and clear ``X-Anonymous-Consumer``; with
``hide_credentials`` the ``Authorization`` header (or ``apikey``) is removed from the request
itself, so this plugin never sees it. When authentication fails on a plugin configured with
``anonymous``, the consumer is the anonymous consumer, the credential is nil and the request
carries ``X-Anonymous-Consumer: true`` (``kong/plugins/key-auth/handler.lua``
``set_consumer``; the same in basic-auth, jwt, hmac-auth, oauth2, ldap-auth).

`classify` turns that into an `Identity`:

* a consumer whose request says ``X-Anonymous-Consumer: true`` is anonymous only if Kong
  confirms there is no credential (a client can send that header itself on a route whose auth
  plugin does not clear it); anonymous requests share one scope and are *not* authenticated;
* any other consumer is authenticated and keyed by its id;
* ``Authorization`` or ``X-Credential-Identifier`` on the request mean credentials were
  presented (the latter is what Kong's auth plugins leave when they hide the former). A
  client can send ``X-Credential-Identifier`` itself: that only makes caching stricter.

Not guaranteed: an auth plugin that hides credentials and sets neither a consumer nor
``X-Credential-Identifier`` is not recognised (Kong's own auth plugins all set one).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from kong_plugin.headers import Headers

ANONYMOUS_HEADER = "x-anonymous-consumer"
CREDENTIAL_HEADER = "x-credential-identifier"


@dataclass(frozen=True, slots=True)
class Identity:
    """The consumer scope of a request and whether it carried credentials."""

    consumer_id: str | None
    """The authenticated consumer's id (``None``: none, or anonymous)."""
    anonymous: bool
    """Authentication fell back to an anonymous consumer (shared scope)."""
    authenticated: bool
    """Credentials were presented: RFC 9111 §3.5 applies to the response."""


def classify(
    headers: Headers,
    consumer: Mapping[str, Any] | None,
    credential: Callable[[], Any],
) -> Identity:
    """Classify a request; `credential` fetches ``kong.client.get_credential()`` and is only
    called for a request that claims to be anonymous."""
    presented = "authorization" in headers or CREDENTIAL_HEADER in headers
    consumer_id = consumer.get("id") if isinstance(consumer, Mapping) else None
    if not isinstance(consumer_id, str) or not consumer_id:
        return Identity(None, False, presented)
    claims_anonymous = (headers.get(ANONYMOUS_HEADER) or "").strip().lower() == "true"
    if claims_anonymous and not credential():
        return Identity(None, True, presented)
    return Identity(consumer_id, False, True)
