"""Content-addressed, reference-counted body storage for the memory tier.

A body is kept once per distinct content (SHA-256 of the raw bytes), zstd-compressed with
the codec's settings when that makes it smaller (`codec.compress_body`), and freed when
the last key referencing it lets go. Reading a compressed body decompresses it (a few
microseconds for a 2 KB JSON body; `python -m bench memory` measures it).

`held_bytes` is an estimate of what the pool holds: the stored (possibly compressed) bytes plus
`BODY_OVERHEAD_BYTES` per distinct body. Not thread-safe: use it from one event loop.
"""

from __future__ import annotations

from sidecar import codec

#: Per distinct body: the digest (a 32-byte `bytes`), the record object and its dict slot.
#: An estimate, like `model.ENTRY_OVERHEAD_BYTES`.
BODY_OVERHEAD_BYTES = 160


class _Body:
    __slots__ = ("compressed", "data", "raw_len", "refs")

    def __init__(self, data: bytes, compressed: bool, raw_len: int) -> None:
        self.data = data
        self.compressed = compressed
        self.raw_len = raw_len
        self.refs = 0


class BodyPool:
    """Distinct bodies by digest, each with a reference count."""

    def __init__(self) -> None:
        self._bodies: dict[bytes, _Body] = {}
        self._bytes = 0
        self._raw_bytes = 0

    def __len__(self) -> int:
        return len(self._bodies)

    def __contains__(self, digest: object) -> bool:
        return digest in self._bodies

    @property
    def held_bytes(self) -> int:
        """Estimated bytes held: stored bodies plus the per-body overhead."""
        return self._bytes

    @property
    def raw_bytes(self) -> int:
        """Sum of the distinct bodies' uncompressed lengths (for savings reports)."""
        return self._raw_bytes

    @staticmethod
    def charge(stored_len: int) -> int:
        """What one reference to a body stored in `stored_len` bytes is charged."""
        return stored_len + BODY_OVERHEAD_BYTES

    def acquire(self, body: bytes) -> tuple[bytes, int]:
        """Take a reference to `body` (stored if new); `(digest, stored_len)`."""
        digest = codec.body_digest(body)
        rec = self._bodies.get(digest)
        if rec is None:
            data, compressed = codec.compress_body(body)
            rec = _Body(data, compressed, len(body))
            self._bodies[digest] = rec
            self._bytes += self.charge(len(data))
            self._raw_bytes += len(body)
        rec.refs += 1
        return digest, len(rec.data)

    def release(self, digest: bytes) -> None:
        """Drop one reference; the body is freed with its last one."""
        rec = self._bodies[digest]
        rec.refs -= 1
        if rec.refs <= 0:
            del self._bodies[digest]
            self._bytes -= self.charge(len(rec.data))
            self._raw_bytes -= rec.raw_len

    def read(self, digest: bytes) -> bytes:
        """The raw body under `digest` (decompressed if stored compressed)."""
        rec = self._bodies[digest]
        if rec.compressed:
            return codec.decompress_body(rec.data, rec.raw_len)
        return rec.data

    def refs(self, digest: bytes) -> int:
        """Live references to `digest` (0 if absent)."""
        rec = self._bodies.get(digest)
        return 0 if rec is None else rec.refs

    def clear(self) -> None:
        self._bodies.clear()
        self._bytes = 0
        self._raw_bytes = 0
