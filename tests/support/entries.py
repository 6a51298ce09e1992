"""One factory for the `CachedResponse` values tests store.

Every field of `CachedResponse` can be given by keyword; what a test does not give is a
200 with a small text body, two values of one repeated header, a 60 s freshness lifetime,
stored now by `clock` (the system clock when none is given). The values are arbitrary:
a test that depends on one of them passes it explicitly.
"""

from __future__ import annotations

from sidecar.core.clock import Clock, SystemClock
from sidecar.core.model import FORMAT_VERSION, CachedResponse, Headers

#: A content type and one header repeated: enough to see that order and repeats survive.
TEXT_HEADERS: Headers = ((b"content-type", b"text/plain"), (b"x-a", b"1"), (b"x-a", b"2"))
JSON_HEADERS: Headers = ((b"content-type", b"application/json"),)

_SYSTEM = SystemClock()


def entry(
    clock: Clock | None = None,
    body: bytes = b"hello",
    *,
    ttl_ms: int = 60_000,
    status: int = 200,
    headers: Headers = TEXT_HEADERS,
    stored_at_ms: int | None = None,
    stale_while_revalidate_ms: int = 0,
    stale_if_error_ms: int = 0,
    tags: tuple[str, ...] = (),
    vary: tuple[str, ...] = (),
    storage_ttl_ms: int = 0,
    format_version: int = FORMAT_VERSION,
    tag_generations: tuple[int, ...] = (),
) -> CachedResponse:
    """A response stored at `stored_at_ms`, or now by `clock` (system time when None)."""
    if stored_at_ms is None:
        stored_at_ms = (clock or _SYSTEM).now_ms()
    return CachedResponse(
        status=status,
        headers=headers,
        body=body,
        stored_at_ms=stored_at_ms,
        ttl_ms=ttl_ms,
        stale_while_revalidate_ms=stale_while_revalidate_ms,
        stale_if_error_ms=stale_if_error_ms,
        tags=tags,
        vary=vary,
        storage_ttl_ms=storage_ttl_ms,
        format_version=format_version,
        tag_generations=tag_generations,
    )
