"""Response variants (HTTP `Vary`), filed under a marker entry. Pure functions.

When a response varies on request headers, the engine stores under the primary key a
*variant marker* - a `CachedResponse` with status 0 whose `vary` lists the header names and
whose body is a random nonce - and the response itself under
`key + 0x1f + "v" + nonce + digest(values of those headers)`. Client keys cannot contain
control characters, so variant keys never collide with client keys, and they share the
primary key as prefix (purge by prefix covers them).

A new marker (after the old one was purged or expired) gets a new nonce, so variants filed
under an older marker become unreachable at once; they are not deleted eagerly and leave
the tiers by eviction or expiry. Only the most recent `Vary` list of a URL is honoured.
"""

from __future__ import annotations

import hashlib
import os

from sidecar.core.model import CachedResponse, Headers

MARKER_STATUS = 0
VARIANT_SEPARATOR = b"\x1fv"
_ABSENT = b"\x00"


def is_marker(entry: CachedResponse) -> bool:
    return entry.status == MARKER_STATUS


def new_marker(entry: CachedResponse, nonce: bytes | None = None) -> CachedResponse:
    """A marker for `entry`'s Vary list that lives as long as `entry`."""
    return CachedResponse(
        status=MARKER_STATUS,
        headers=(),
        body=nonce if nonce is not None else os.urandom(8),
        stored_at_ms=entry.stored_at_ms,
        ttl_ms=entry.ttl_ms,
        stale_while_revalidate_ms=entry.stale_while_revalidate_ms,
        stale_if_error_ms=entry.stale_if_error_ms,
        vary=entry.vary,
        storage_ttl_ms=entry.storage_ttl_ms,
    )


def request_values(vary: tuple[str, ...], request_headers: Headers) -> list[bytes]:
    """The request's value for each varied header: lines joined by ', ', trimmed."""
    wanted = {name.encode("ascii", "replace"): i for i, name in enumerate(vary)}
    parts: list[list[bytes]] = [[] for _ in vary]
    for name, value in request_headers:
        i = wanted.get(name.lower())
        if i is not None:
            parts[i].append(b" ".join(value.split()))
    return [b", ".join(p) if p else _ABSENT for p in parts]


def variant_key(key: bytes, marker: CachedResponse, request_headers: Headers) -> bytes:
    """Where the variant of `key` selected by `request_headers` is filed."""
    h = hashlib.blake2b(digest_size=16)
    for value in request_values(marker.vary, request_headers):
        h.update(len(value).to_bytes(4, "big"))
        h.update(value)
    return key + VARIANT_SEPARATOR + marker.body.hex().encode() + b":" + h.hexdigest().encode()
