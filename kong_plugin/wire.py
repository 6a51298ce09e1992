"""Every conversion between the plugin's values and the strata.v1 messages.

Header lines travel as bytes: names in latin-1, values in UTF-8 with undecodable bytes kept
(``surrogateescape``), so a value read from Kong goes back out byte for byte. An entry
read from the sidecar becomes a `StoredEntry` (header names lower-cased, times in seconds,
see `kong_plugin.stored`); one written goes out at `ENTRY_FORMAT`. The requests the client
sends are built here, so the client deals in transport only. The request header lines a
lookup or a store carries (the sidecar selects a ``Vary`` variant by them) go out with the
list fields of negotiation in their canonical form (`kong_plugin.vary.sidecar_lines`), so
equivalent ``Accept*`` values select the same variant (RFC 9111 §4.1).

Not guaranteed: an entry's timing read back is whole seconds except ``stored_at`` (the
plugin writes whole seconds, so its own entries round-trip exactly; a foreign writer's
sub-second ``ttl_ms`` is cut down).
"""

from __future__ import annotations

from collections.abc import Iterable

from strata.v1 import cache_pb2 as pb

from kong_plugin.freshness import EntryTiming
from kong_plugin.headers import Headers
from kong_plugin.stored import Found, StoredEntry
from kong_plugin.vary import sidecar_lines

#: The entry format this plugin writes (the sidecar answers entries of other formats as
#: misses).
ENTRY_FORMAT = 1
#: Lookup outcomes that carry an entry.
_FOUND = (pb.OUTCOME_HIT, pb.OUTCOME_STALE)

HeaderLines = list[tuple[bytes, bytes]]


def lines_to_pb(lines: Iterable[tuple[bytes, bytes]]) -> list[pb.Header]:
    """Byte header lines (`kong_plugin.headers.header_lines`) as proto headers."""
    return [pb.Header(name=n, value=v) for n, v in lines]


def headers_to_pb(headers: Headers) -> list[pb.Header]:
    """A `Headers` map as proto header lines, one per field line, in its order."""
    return [
        pb.Header(name=n.encode("latin-1", "replace"), value=v.encode("utf-8", "surrogateescape"))
        for n, v in headers.lines()
    ]


def headers_from_pb(headers: Iterable[pb.Header]) -> Headers:
    """Proto header lines as a `Headers` map (names lower-cased, repeats kept in order)."""
    fields: dict[str, list[str]] = {}
    for h in headers:
        name = h.name.decode("latin-1").lower()
        fields.setdefault(name, []).append(h.value.decode("utf-8", "surrogateescape"))
    return Headers({k: tuple(v) for k, v in fields.items()})


def entry_from_pb(entry: pb.Entry) -> StoredEntry:
    """A stored entry as the decisions see it."""
    return StoredEntry(
        status=entry.status,
        headers=headers_from_pb(entry.headers),
        body=entry.body,
        timing=EntryTiming.from_ms(
            entry.stored_at_ms,
            entry.ttl_ms,
            entry.stale_while_revalidate_ms,
            entry.stale_if_error_ms,
            entry.storage_ttl_ms,
        ),
        tags=tuple(entry.tags),
        vary=tuple(entry.vary),
    )


def entry_to_pb(entry: StoredEntry) -> pb.Entry:
    """The proto entry to store."""
    return pb.Entry(
        format_version=ENTRY_FORMAT,
        status=entry.status,
        headers=headers_to_pb(entry.headers),
        body=entry.body,
        tags=list(entry.tags),
        vary=list(entry.vary),
        **entry.timing.to_ms(),
    )


def found_from_pb(response: pb.LookupResponse) -> Found:
    """A lookup's answer: an entry for HIT and STALE, none otherwise; its age is the
    sidecar's (``age_ms``, judged on the sidecar's clock) in seconds."""
    if response.outcome not in _FOUND:
        return Found(None, 0.0, response.fill_lease)
    return Found(entry_from_pb(response.entry), response.age_ms / 1000.0, response.fill_lease)


def hit(response: pb.LookupResponse) -> bool:
    """The sidecar answered a fresh entry (not stale, not a miss)."""
    return response.outcome == pb.OUTCOME_HIT


def missed(response: pb.LookupResponse) -> bool:
    """The sidecar holds nothing usable for the key (a coalescing wait may help)."""
    return response.outcome == pb.OUTCOME_MISS


def lookup_request(
    key: bytes, request_headers: HeaderLines | None, coalesce_wait_ms: int
) -> pb.LookupRequest:
    req = pb.LookupRequest(key=key, coalesce_wait_ms=coalesce_wait_ms)
    if request_headers:
        req.request_headers.extend(lines_to_pb(sidecar_lines(request_headers)))
    return req


def store_request(
    key: bytes, entry: pb.Entry, request_headers: HeaderLines | None, route: str
) -> pb.StoreRequest:
    """`route`: the key prefix of the entry's route (`kong_plugin.cache_key.route_prefix`),
    which the sidecar stamps the entry with."""
    req = pb.StoreRequest(key=key, entry=entry, route=route)
    if request_headers:
        req.request_headers.extend(lines_to_pb(sidecar_lines(request_headers)))
    return req


def release_request(key: bytes) -> pb.ReleaseRequest:
    return pb.ReleaseRequest(key=key)


def invalidate_request(
    key: bytes | None, prefix: bytes | None, tag: str | None, route: str | None = None
) -> pb.InvalidateRequest:
    """Exactly one of `key`, `prefix`, `tag`, `route` (ValueError otherwise)."""
    if sum(x is not None for x in (key, prefix, tag, route)) != 1:
        raise ValueError("give exactly one of key, prefix, tag or route")
    return pb.InvalidateRequest(key=key, prefix=prefix, tag=tag, route=route)
