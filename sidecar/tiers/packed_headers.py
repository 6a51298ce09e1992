"""An entry's headers as one `bytes` object, for the memory tier to hold. Pure functions.

A tuple of (name, value) pairs costs CPython an outer tuple, a tuple per pair and a `bytes`
object per name and per value (~1,150 heap bytes for six typical headers); packed, the same
headers are one `bytes` object (~260). The memory tier packs on store and unpacks on every
read that returns the entry (`unpack`: ~0.8 us for six headers, ~1 us for eight).

Two layouts, told apart by the first byte; no headers pack to ``b""`` (CPython's shared
empty object, so they cost nothing):

* ``0x00`` then every name and value joined by NUL bytes (``name0 NUL value0 NUL name1 ...``):
  unpacked by one C-level `bytes.split`. Used when no name or value contains a NUL byte,
  which is always the case through the engine (`sidecar.core.limits.check_headers` refuses
  NUL in values, and names are RFC 9110 tokens).
* ``0x01`` then, per pair, the name's and the value's lengths (4 bytes each, big-endian)
  and their bytes: any bytes round-trip, unpacked by a Python loop (a few us).

`unpack(pack(h)) == h` for every `h` with names and values under 4 GiB: order, repeated
names, empty names and values and arbitrary bytes are kept. Not guaranteed: that the pairs
unpacked are the objects packed (each read builds new ones), or that bytes not made by
`pack` unpack to anything (they may raise or return garbage: the tier only unpacks its own).
"""

from __future__ import annotations

import struct

from sidecar.core.model import Headers

__all__ = ["pack", "packed_size", "payload_size", "unpack"]

_JOINED = 0
_FRAMED = 1
_LENGTHS = struct.Struct("!II")
_MAX_FIELD = 0xFFFFFFFF


def pack(headers: Headers) -> bytes:
    """`headers` as one `bytes` object (see the module doc). Raises ValueError for a name
    or value of 4 GiB or more."""
    if not headers:
        return b""
    fields = [field for pair in headers for field in pair]
    joined = b"\0".join(fields)
    if joined.count(b"\0") == len(fields) - 1:  # no NUL inside a name or value
        return b"\0" + joined
    return _framed(headers)


def _framed(headers: Headers) -> bytes:
    out = bytearray((_FRAMED,))
    for name, value in headers:
        if len(name) > _MAX_FIELD or len(value) > _MAX_FIELD:
            raise ValueError("a header name or value of 4 GiB or more cannot be packed")
        out += _LENGTHS.pack(len(name), len(value))
        out += name
        out += value
    return bytes(out)


def unpack(packed: bytes) -> Headers:
    """The headers `pack` made `packed` from, as new objects."""
    if not packed:
        return ()
    if packed[0] == _JOINED:
        fields = iter(packed.split(b"\0"))
        next(fields)  # the empty field before the layout byte's NUL
        # 2n fields by construction; strict=True would cost ~0.2 us per read
        return tuple(zip(fields, fields, strict=False))
    return _unframed(packed)


def _unframed(packed: bytes) -> Headers:
    out = []
    at, end = 1, len(packed)
    lengths = _LENGTHS.unpack_from
    while at < end:
        name_len, value_len = lengths(packed, at)
        at += _LENGTHS.size
        name = packed[at : at + name_len]
        at += name_len
        out.append((name, packed[at : at + value_len]))
        at += value_len
    return tuple(out)


def packed_size(headers: Headers) -> int:
    """``len(pack(headers))``, computed without building it."""
    if not headers:
        return 0
    payload = 0
    nul = False
    for name, value in headers:
        payload += len(name) + len(value)
        nul = nul or b"\0" in name or b"\0" in value
    if nul:
        return 1 + _LENGTHS.size * len(headers) + payload
    return payload + 2 * len(headers)  # a layout byte and 2n - 1 separators


def payload_size(packed: bytes) -> int:
    """The bytes of the names and values `packed` holds (what `logical_bytes` counts of
    its headers), without unpacking the usual layout."""
    if not packed:
        return 0
    if packed[0] == _JOINED:
        return len(packed) - packed.count(b"\0")  # every NUL is the layout byte or a separator
    return sum(len(n) + len(v) for n, v in _unframed(packed))
