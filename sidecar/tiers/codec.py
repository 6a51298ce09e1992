"""The byte format of an entry in the shared tiers (Redis, Memcached, PostgreSQL).

Layout (all integers big-endian):

    magic    2 bytes  b"S1"
    version  1 byte   FORMAT_VERSION of the entry (1)
    flags    1 byte   bit 0: body is zstd-compressed
                      bit 1: body is a reference: the 32-byte SHA-256 of the raw body
                             follows the meta block instead of the body (never with bit 0)
    meta_len 4 bytes  length of the msgpack meta block
    meta     msgpack  [status, [[name, value], ...], stored_at_ms, ttl_ms, swr_ms, sie_ms,
                       [tags], [vary], storage_ttl_ms, body_len
                       (, [tag_generations])]
             the trailing tag_generations element is optional: written only when the
             entry has some, so values written before it (10 elements) still decode
             (with no generations), and entries without tags are byte-identical to them
    body     rest     raw or zstd-compressed body

A referenced body is stored apart (the Redis tier keeps it under ``ns:b:<sha256 hex>``) as
a body blob, self-describing so that every entry sharing it can read it:

    magic    2 bytes  b"SB"
    flags    1 byte   bit 0: zstd-compressed
    body_len 4 bytes  length of the raw body
    body     rest     raw or zstd-compressed body

`decode(value, blob)` checks that the blob's raw body has the entry's length and SHA-256.
A build that predates bit 1 refuses such values (unknown flag), as it must: it cannot
read the body. `decode(value)` without the blob refuses them too.

Bodies above `COMPRESS_MIN_BYTES` are compressed with zstd when that makes them smaller.
`decode` raises `CorruptEntryError` for anything it cannot read with certainty - wrong
magic, an unknown version, a truncated or inconsistent value - so a foreign or damaged value
is a miss (and the caller purges it), never a misread entry.

Thread safety: every function here may be called from any thread at once (the Memcached
tier encodes and decodes on its thread pool). A zstd compressor or decompressor object is
not safe to share between threads (concurrent use corrupts its state and can crash the
process), so each thread gets its own pair, made on its first use and kept for the
thread's life (`threading.local`): making one per call would cost 8-10 us per call, several
times the work of compressing a 2 KiB body.

What this does not guarantee: that two encodings of one entry are byte-identical across
zstd versions; confidentiality (values are not encrypted).
"""

from __future__ import annotations

import hashlib
import struct
import threading

import msgpack  # type: ignore[import-untyped]
import zstandard

from sidecar.core.errors import StrataError
from sidecar.core.model import FORMAT_VERSION, CachedResponse

MAGIC = b"S1"
_HEADER = struct.Struct(">2sBBI")
FLAG_ZSTD = 0x01
FLAG_BODY_REF = 0x02
DIGEST_BYTES = 32
BODY_MAGIC = b"SB"
_BODY_HEADER = struct.Struct(">2sBI")
COMPRESS_MIN_BYTES = 256
ZSTD_LEVEL = 3
#: Refuse to decompress beyond this (a corrupt length must not exhaust memory).
MAX_BODY_BYTES = 256 * 1024 * 1024


class _ThreadZstd(threading.local):
    """One zstd compressor and one decompressor per thread (never shared: see the module
    doc); `threading.local` runs `__init__` once in each thread that touches it."""

    def __init__(self) -> None:
        self.compressor = zstandard.ZstdCompressor(level=ZSTD_LEVEL)
        self.decompressor = zstandard.ZstdDecompressor()


_zstd = _ThreadZstd()


class CorruptEntryError(StrataError):
    """A stored value is not an entry this build can read (treated as a miss, purged)."""


def compress_body(body: bytes) -> tuple[bytes, bool]:
    """`(stored, compressed)`: the zstd frame of `body` when it is at least
    `COMPRESS_MIN_BYTES` long and the frame is smaller, else `body` itself."""
    if len(body) >= COMPRESS_MIN_BYTES:
        packed: bytes = _zstd.compressor.compress(body)
        if len(packed) < len(body):
            return packed, True
    return body, False


def decompress_body(stored: bytes, body_len: int) -> bytes:
    """The raw body of a `compress_body` frame; `CorruptEntryError` if it does not
    decompress to exactly `body_len` bytes."""
    if not 0 <= body_len <= MAX_BODY_BYTES:
        raise CorruptEntryError("implausible body length")
    try:
        raw: bytes = _zstd.decompressor.decompress(stored, max_output_size=body_len)
    except zstandard.ZstdError as exc:
        raise CorruptEntryError(f"unreadable body: {exc}") from exc
    if len(raw) != body_len:
        raise CorruptEntryError("body length does not match")
    return raw


def body_digest(body: bytes) -> bytes:
    """The content address of a raw body (SHA-256, 32 bytes)."""
    return hashlib.sha256(body).digest()


def encode(entry: CachedResponse) -> bytes:
    """The stored form of `entry`."""
    body, compressed = compress_body(entry.body)
    return _encode(entry, FLAG_ZSTD if compressed else 0, body)


def encode_body(body: bytes) -> bytes:
    """The body blob of a raw body (compressed when that makes it smaller)."""
    stored, compressed = compress_body(body)
    return _BODY_HEADER.pack(BODY_MAGIC, FLAG_ZSTD if compressed else 0, len(body)) + stored


def encode_ref(entry: CachedResponse, digest: bytes) -> bytes:
    """The stored form of `entry` whose body is kept apart under `digest`
    (`body_digest(entry.body)`)."""
    if len(digest) != DIGEST_BYTES:
        raise ValueError("a body digest is 32 bytes")
    return _encode(entry, FLAG_BODY_REF, digest)


def encode_split(
    entry: CachedResponse, ref_min_bytes: int
) -> tuple[bytes, tuple[bytes, bytes] | None]:
    """`(value, None)` as `encode` when the body, compressed if that makes it smaller, is
    under `ref_min_bytes`; else `(encode_ref value, (digest, body blob))` (compressing
    once)."""
    stored, compressed = compress_body(entry.body)
    flags = FLAG_ZSTD if compressed else 0
    if len(stored) < ref_min_bytes:
        return _encode(entry, flags, stored), None
    digest = body_digest(entry.body)
    blob = _BODY_HEADER.pack(BODY_MAGIC, flags, len(entry.body)) + stored
    return _encode(entry, FLAG_BODY_REF, digest), (digest, blob)


def stored_body_len(data: bytes, offset: int = 0) -> int:
    """Bytes the body takes in `data[offset:]`, a value of `encode` / `encode_split` or a
    body blob of `encode_body`, as stored (compressed where that was smaller); 0 for a
    value that references its body. For savings reports: no check beyond the header."""
    if data[offset : offset + 2] == BODY_MAGIC:
        return max(0, len(data) - offset - _BODY_HEADER.size)
    if len(data) - offset < _HEADER.size:
        return 0
    _, _, flags, meta_len = _HEADER.unpack_from(data, offset)
    if flags & FLAG_BODY_REF:
        return 0
    return max(0, len(data) - offset - _HEADER.size - int(meta_len))


def body_ref(data: bytes) -> bytes | None:
    """The digest a stored value references, or None if it holds its own body (or is
    not a readable value: `decode` will say so)."""
    if len(data) < _HEADER.size + DIGEST_BYTES or data[:2] != MAGIC:
        return None
    if not data[3] & FLAG_BODY_REF:
        return None
    return data[-DIGEST_BYTES:]


def _decode_blob(blob: bytes, digest: bytes, body_len: int) -> bytes:
    if len(blob) < _BODY_HEADER.size:
        raise CorruptEntryError("body blob shorter than its header")
    magic, flags, blob_len = _BODY_HEADER.unpack_from(blob)
    if magic != BODY_MAGIC or flags & ~FLAG_ZSTD:
        raise CorruptEntryError("not a Strata body blob")
    if blob_len != body_len:
        raise CorruptEntryError("body blob length does not match the entry")
    stored = blob[_BODY_HEADER.size :]
    raw = decompress_body(stored, body_len) if flags & FLAG_ZSTD else stored
    if len(raw) != body_len or body_digest(raw) != digest:
        raise CorruptEntryError("body blob does not match its digest")
    return bytes(raw)


def _encode(entry: CachedResponse, flags: int, body: bytes) -> bytes:
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
            *([list(entry.tag_generations)] if entry.tag_generations else []),
        ],
        use_bin_type=True,
    )
    header: bytes = _HEADER.pack(MAGIC, entry.format_version, flags, len(meta))
    return header + bytes(meta) + body


def decode(data: bytes, blob: bytes | None = None) -> CachedResponse:
    """Read a stored value; `CorruptEntryError` if it is not a readable entry. A value
    referencing its body (`body_ref`) needs that body's `blob` (`encode_body`)."""
    if len(data) < _HEADER.size:
        raise CorruptEntryError("value shorter than the entry header")
    magic, version, flags, meta_len = _HEADER.unpack_from(data)
    if magic != MAGIC:
        raise CorruptEntryError("not a Strata entry (bad magic)")
    if version != FORMAT_VERSION:
        raise CorruptEntryError(f"entry format {version} is not {FORMAT_VERSION}")
    if flags & ~(FLAG_ZSTD | FLAG_BODY_REF) or flags == FLAG_ZSTD | FLAG_BODY_REF:
        raise CorruptEntryError(f"unknown flags {flags:#x}")
    if flags & FLAG_BODY_REF and blob is None:
        raise CorruptEntryError("the entry references a body that was not supplied")
    end = _HEADER.size + meta_len
    if end > len(data):
        raise CorruptEntryError("truncated meta block")
    try:
        meta = msgpack.unpackb(data[_HEADER.size : end], raw=False, strict_map_key=False)
        if not isinstance(meta, list) or len(meta) not in (10, 11):
            raise CorruptEntryError("meta block has the wrong shape")
        (status, headers, stored_at, ttl, swr, sie, tags, vary, storage_ttl, body_len) = meta[:10]
        generations = tuple(int(g) for g in meta[10]) if len(meta) == 11 else ()
        body = data[end:]
        if flags & FLAG_BODY_REF:
            if len(body) != DIGEST_BYTES or blob is None:
                raise CorruptEntryError("malformed body reference")
            body = _decode_blob(blob, body, int(body_len))
        elif flags & FLAG_ZSTD:
            if not 0 <= body_len <= MAX_BODY_BYTES:
                raise CorruptEntryError("implausible body length")
            body = _zstd.decompressor.decompress(body, max_output_size=body_len)
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
            tag_generations=generations,
        )
    except CorruptEntryError:
        raise
    except (ValueError, TypeError, msgpack.ExtraData, zstandard.ZstdError) as exc:
        raise CorruptEntryError(f"unreadable entry: {exc}") from exc
