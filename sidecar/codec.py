"""The byte format of an entry in the shared tiers (Redis, Memcached, PostgreSQL).

Layout (all integers big-endian):

    magic    2 bytes  b"S1"
    version  1 byte   FORMAT_VERSION of the entry (1)
    flags    1 byte   bit 0: body is zstd-compressed
    meta_len 4 bytes  length of the msgpack meta block
    meta     msgpack  [status, [[name, value], ...], stored_at_ms, ttl_ms, swr_ms, sie_ms,
                       [tags], [vary], storage_ttl_ms, body_len]
    body     rest     raw or zstd-compressed body

Bodies above `COMPRESS_MIN_BYTES` are compressed with zstd when that makes them smaller.
`decode` raises `CorruptEntryError` for anything it cannot read with certainty - wrong
magic, an unknown version, a truncated or inconsistent value - so a foreign or damaged value
is a miss (and the caller purges it), never a misread entry.

What this does not guarantee: that two encodings of one entry are byte-identical across
zstd versions; confidentiality (values are not encrypted).
"""

from __future__ import annotations

import struct

import msgpack  # type: ignore[import-untyped]
import zstandard

from sidecar.errors import StrataError
from sidecar.model import FORMAT_VERSION, CachedResponse

MAGIC = b"S1"
_HEADER = struct.Struct(">2sBBI")
FLAG_ZSTD = 0x01
COMPRESS_MIN_BYTES = 256
ZSTD_LEVEL = 3
#: Refuse to decompress beyond this (a corrupt length must not exhaust memory).
MAX_BODY_BYTES = 256 * 1024 * 1024

_compressor = zstandard.ZstdCompressor(level=ZSTD_LEVEL)
_decompressor = zstandard.ZstdDecompressor()


class CorruptEntryError(StrataError):
    """A stored value is not an entry this build can read (treated as a miss, purged)."""


def encode(entry: CachedResponse) -> bytes:
    """The stored form of `entry`."""
    body = entry.body
    flags = 0
    if len(body) >= COMPRESS_MIN_BYTES:
        packed = _compressor.compress(body)
        if len(packed) < len(body):
            body, flags = packed, FLAG_ZSTD
    meta = msgpack.packb(
        [
            entry.status,
            [[n, v] for n, v in entry.headers],
            entry.stored_at_ms,
            entry.ttl_ms,
            entry.stale_while_revalidate_ms,
            entry.stale_if_error_ms,
            list(entry.tags),
            list(entry.vary),
            entry.storage_ttl_ms,
            len(entry.body),
        ],
        use_bin_type=True,
    )
    header: bytes = _HEADER.pack(MAGIC, entry.format_version, flags, len(meta))
    return header + bytes(meta) + body


def decode(data: bytes) -> CachedResponse:
    """Read a stored value; `CorruptEntryError` if it is not a readable entry."""
    if len(data) < _HEADER.size:
        raise CorruptEntryError("value shorter than the entry header")
    magic, version, flags, meta_len = _HEADER.unpack_from(data)
    if magic != MAGIC:
        raise CorruptEntryError("not a Strata entry (bad magic)")
    if version != FORMAT_VERSION:
        raise CorruptEntryError(f"entry format {version} is not {FORMAT_VERSION}")
    if flags & ~FLAG_ZSTD:
        raise CorruptEntryError(f"unknown flags {flags:#x}")
    end = _HEADER.size + meta_len
    if end > len(data):
        raise CorruptEntryError("truncated meta block")
    try:
        meta = msgpack.unpackb(data[_HEADER.size : end], raw=False, strict_map_key=False)
        (status, headers, stored_at, ttl, swr, sie, tags, vary, storage_ttl, body_len) = meta
        body = data[end:]
        if flags & FLAG_ZSTD:
            if not 0 <= body_len <= MAX_BODY_BYTES:
                raise CorruptEntryError("implausible body length")
            body = _decompressor.decompress(body, max_output_size=body_len)
        if len(body) != body_len:
            raise CorruptEntryError("body length does not match")
        return CachedResponse(
            status=int(status),
            headers=tuple((bytes(n), bytes(v)) for n, v in headers),
            body=bytes(body),
            stored_at_ms=int(stored_at),
            ttl_ms=int(ttl),
            stale_while_revalidate_ms=int(swr),
            stale_if_error_ms=int(sie),
            tags=tuple(str(t) for t in tags),
            vary=tuple(str(v) for v in vary),
            storage_ttl_ms=int(storage_ttl),
            format_version=version,
        )
    except CorruptEntryError:
        raise
    except (ValueError, TypeError, msgpack.ExtraData, zstandard.ZstdError) as exc:
        raise CorruptEntryError(f"unreadable entry: {exc}") from exc
