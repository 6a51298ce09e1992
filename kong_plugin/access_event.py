"""One sampled request as a ``strata.v1.AccessEvent``: pure, no PDK, no I/O.

What goes in is an `Outcome` (what the cache did) and the service id known from the
route's configuration; what comes out names the request by route, service, consumer and
method, says what the cache did (result word, detail, tier, bytes, latency) and identifies
the cache key only by `key_hash`.

Never in an event: the cache key itself, any header value, a body, a query string. The key
hash is a truncated SHA-256 of the key, so equal keys have equal hashes (per-key counts
work) but the key cannot be read back -- with one caveat: a key built from few guessable
parts (a path and a small id) can be found by hashing every candidate, so the hash is a
pseudonym, not an anonymisation of what the key holds.

Not guaranteed: that the strings fit the sidecar's limits (`sidecar.analytics.validate`
refuses an event with an over-long field; the values here come from Kong and the plugin and
are short in practice).
"""

from __future__ import annotations

import hashlib

from strata.v1 import cache_pb2 as pb

from kong_plugin.outcome import Outcome

__all__ = ["KEY_HASH_HEX", "access_event", "key_hash"]

#: Hex digits of SHA-256 kept in `key_hash` (64 bits: distinct keys collide with a chance
#: of about n^2 / 2^65, negligible below billions of keys).
KEY_HASH_HEX = 16


def key_hash(key: str) -> str:
    """Lower-case hex of the first `KEY_HASH_HEX` / 2 bytes of SHA-256(`key`) (a key read
    from Kong with surrogate escapes is hashed as its original bytes); ``""`` for none."""
    if not key:
        return ""
    raw = key.encode("utf-8", "surrogateescape")
    return hashlib.sha256(raw).hexdigest()[:KEY_HASH_HEX]


def access_event(outcome: Outcome, service_id: str = "") -> pb.AccessEvent:
    """The event of `outcome` (see the module docstring for what is left out)."""
    return pb.AccessEvent(
        time_ms=int(outcome.started * 1000),
        route_id=outcome.route_id,
        service_id=service_id,
        consumer_id=outcome.consumer_id,
        method=outcome.method,
        status=max(0, outcome.status),
        cache_result=outcome.result.lower(),
        cache_detail=outcome.detail,
        tier=outcome.tier,
        bytes=outcome.body_bytes if outcome.body_bytes >= 0 else -1,
        latency_ms=max(0.0, outcome.elapsed_s * 1000.0),
        key_hash=key_hash(outcome.key),
        phase=outcome.phase,
    )
