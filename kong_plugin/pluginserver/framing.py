"""The plugin server's MessagePack framing: what Kong's ``rpc/mp_rpc.lua`` reads and writes.

Strings that are not UTF-8 (Kong sends Lua strings, which are bytes) decode with
``surrogateescape`` and encode back to the same bytes.

Not guaranteed: `PACKER` is shared, so it may be used from a worker's loop thread only.
"""

from __future__ import annotations

import msgpack  # type: ignore[import-untyped]


def new_unpacker() -> msgpack.Unpacker:
    """One per connection. A 4 KiB initial buffer (it grows for large messages): msgpack's
    default costs ~44 KiB per connection, which a burst of connections leaves behind."""
    return msgpack.Unpacker(
        raw=False, strict_map_key=False, unicode_errors="surrogateescape", read_size=4096
    )


#: One per worker process: packing happens on the worker's loop thread only.
PACKER = msgpack.Packer(use_bin_type=True, unicode_errors="surrogateescape")
