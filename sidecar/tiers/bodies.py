"""Content-addressed, reference-counted body storage for the memory tier.

A body is kept once per distinct content (SHA-256 of the raw bytes), zstd-compressed with
the codec's settings when that makes it smaller (`codec.compress_body`), and freed when
the last key referencing it lets go. Reading a compressed body decompresses it (a few
microseconds for a 2 KB JSON body; `python -m bench memory` measures it).

A compressed body is kept in a `bytes` object of exactly its length (`exact_copy`): never a
slice, view or over-allocated buffer that would hold more than it is charged for.
`held_bytes` is what the pool holds on the heap: each distinct body's `bytes` object and
record (`memory_cost.bytes_cost`, `BODY_BOOKKEEPING_BYTES`). Not thread-safe: use it from
one event loop.
"""

from __future__ import annotations

from sidecar.tiers import codec
from sidecar.tiers.memory_cost import BODY_BOOKKEEPING_BYTES, bytes_cost


def exact_copy(data: bytes) -> bytes:
    """`data` in a `bytes` object whose allocation is its length.

    The zstd extension returns a frame in a buffer allocated for the worst case
    (``ZSTD_compressBound``: a little more than the raw body) and only shortens its length,
    so a 100 KB body compressed to 30 KB still holds 100 KB of heap. Kept for the body's
    life, that would make every compressed body cost its raw size while being charged its
    compressed size. Copying costs one memcpy of the compressed bytes at store time.
    """
    return bytes(memoryview(data))


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
        self._stored_bytes = 0

    def __len__(self) -> int:
        return len(self._bodies)

    def __contains__(self, digest: object) -> bool:
        return digest in self._bodies

    @property
    def held_bytes(self) -> int:
        """Heap bytes held: each distinct body's object plus its bookkeeping."""
        return self._bytes

    @property
    def raw_bytes(self) -> int:
        """Sum of the distinct bodies' uncompressed lengths (for savings reports)."""
        return self._raw_bytes

    @property
    def stored_bytes(self) -> int:
        """Sum of the distinct bodies' lengths as stored (compressed where that was
        smaller), without their objects' overhead (for savings reports)."""
        return self._stored_bytes

    def raw_len(self, digest: bytes) -> int:
        """The uncompressed length of the body under `digest` (KeyError if absent)."""
        return self._bodies[digest].raw_len

    @staticmethod
    def charge(stored_len: int) -> int:
        """What one reference to a body stored in `stored_len` bytes is charged."""
        return bytes_cost(stored_len) + BODY_BOOKKEEPING_BYTES

    def acquire(self, body: bytes) -> tuple[bytes, int]:
        """Take a reference to `body` (stored if new); `(digest, stored_len)`."""
        digest = codec.body_digest(body)
        rec = self._bodies.get(digest)
        if rec is None:
            data, compressed = codec.compress_body(body)
            if compressed:
                data = exact_copy(data)
            rec = _Body(data, compressed, len(body))
            self._bodies[digest] = rec
            self._bytes += self.charge(len(data))
            self._raw_bytes += len(body)
            self._stored_bytes += len(data)
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
            self._stored_bytes -= len(rec.data)

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
        self._stored_bytes = 0
