"""Path normalization and escaping as Kong 3.x does them (``kong/tools/uri.lua``).

``normalize`` is what ``kong.request.get_path()`` returns and what the router matches: percent-
encoded bytes are decoded unless they are RFC 3986 *reserved* characters (those are kept encoded,
in upper case), dot segments are removed and, with ``merge_slashes``, runs of ``/`` collapse.
``escape`` is applied to the upstream path before proxying: it percent-encodes anything outside
the reserved and unreserved sets. ``ngx_normalize`` is nginx's own ``$uri`` (every escape
decoded), for ``kong.nginx.get_var("uri")``.
"""

from __future__ import annotations

import re

_RESERVED = frozenset(b"!*'();:@&=+$,/?%#[]")
_PCT = re.compile(rb"%([0-9A-Fa-f]{2})")
_ESCAPE = re.compile(rb"[^!#$&'()*+,/:;=?@\[\]A-Za-z0-9\-_.~%]")


def _decode_triplet(m: re.Match[bytes]) -> bytes:
    num = int(m.group(1), 16)
    if num in _RESERVED:
        return m.group(0).upper()
    return bytes([num])


def normalize(uri: str, merge_slashes: bool = True) -> str:
    """Kong's ``normalize(uri, merge_slashes)`` on a path without query string."""
    if uri in ("", "/"):
        return uri
    data = uri.encode("utf-8", "surrogateescape")
    if b"%" in data:
        data = _PCT.sub(_decode_triplet, data)
    return _remove_dot_segments(data, merge_slashes).decode("utf-8", "surrogateescape")


def _remove_dot_segments(data: bytes, merge_slashes: bool) -> bytes:
    if b"." not in data and (not merge_slashes or b"//" not in data):
        return data
    out: list[bytes] = []
    rest = data
    while rest:
        if rest == b"/.":
            rest = b"/"
        elif rest == b"/..":
            rest = b"/"
            if out:
                out.pop()
        elif rest in (b".", b".."):
            rest = b""
        elif rest.startswith(b"../"):
            rest = rest[3:]
        elif rest.startswith(b"./") or rest.startswith(b"/./"):
            rest = rest[2:]
        elif rest.startswith(b"/../"):
            rest = rest[3:]
            if out:
                out.pop()
        elif merge_slashes and rest.startswith(b"//"):
            rest = rest[1:]
        else:
            i = rest.find(b"/", 1)
            if i == -1:
                out.append(rest)
                rest = b""
            else:
                out.append(rest[:i])
                rest = rest[i:]
    return b"".join(out)


def ngx_normalize(uri: str) -> str:
    """nginx's ``$uri``: every ``%XX`` decoded (reserved characters too), then dot segments
    resolved and runs of ``/`` merged (``merge_slashes on``). Undecodable bytes stay as lone
    surrogates."""
    data = uri.encode("utf-8", "surrogateescape")
    if data in (b"", b"/"):
        return uri
    decoded = _PCT.sub(lambda m: bytes([int(m.group(1), 16)]), data)
    return _remove_dot_segments(decoded, True).decode("utf-8", "surrogateescape")


def escape(uri: str) -> str:
    """Kong's ``escape``: percent-encode bytes that are neither reserved nor unreserved."""
    data = uri.encode("utf-8", "surrogateescape")
    return _ESCAPE.sub(lambda m: b"%%%02X" % m.group(0)[0], data).decode("ascii")
