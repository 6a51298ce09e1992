"""Conversions between `strata.v1` messages and the engine's value types."""

from __future__ import annotations

from strata.v1 import cache_pb2 as _pb

from sidecar.core.model import FORMAT_VERSION, CachedResponse, Headers, LookupResult, Outcome

_OUTCOME = {
    Outcome.HIT: _pb.OUTCOME_HIT,
    Outcome.STALE: _pb.OUTCOME_STALE,
    Outcome.MISS: _pb.OUTCOME_MISS,
}


def headers_from_proto(headers: object) -> Headers:
    return tuple((h.name, h.value) for h in headers)  # type: ignore[attr-defined]


def entry_from_proto(e: _pb.Entry) -> CachedResponse:
    """Proto -> value. `format_version` 0 (unset) means the current format."""
    return CachedResponse(
        status=e.status,
        headers=headers_from_proto(e.headers),
        body=e.body,
        stored_at_ms=e.stored_at_ms,
        ttl_ms=e.ttl_ms,
        stale_while_revalidate_ms=e.stale_while_revalidate_ms,
        stale_if_error_ms=e.stale_if_error_ms,
        tags=tuple(e.tags),
        vary=tuple(e.vary),
        storage_ttl_ms=e.storage_ttl_ms,
        format_version=e.format_version or FORMAT_VERSION,
    )


def entry_to_proto(c: CachedResponse, out: _pb.Entry) -> None:
    """Fill `out` (an empty Entry, usually a sub-message of a response) from `c`."""
    out.format_version = c.format_version
    out.status = c.status
    out.headers.extend([_pb.Header(name=n, value=v) for n, v in c.headers])
    out.body = c.body
    out.stored_at_ms = c.stored_at_ms
    out.ttl_ms = c.ttl_ms
    out.stale_while_revalidate_ms = c.stale_while_revalidate_ms
    out.stale_if_error_ms = c.stale_if_error_ms
    out.tags.extend(c.tags)
    out.vary.extend(c.vary)
    out.storage_ttl_ms = c.storage_ttl_ms


def lookup_to_proto(r: LookupResult, out: _pb.LookupResponse) -> None:
    out.outcome = _OUTCOME[r.outcome]
    if r.entry is not None:
        entry_to_proto(r.entry, out.entry)
    out.age_ms = r.age_ms
    out.tier = r.tier
    out.fill_lease = r.fill_lease
    out.coalesced = r.coalesced
    out.now_ms = r.now_ms
