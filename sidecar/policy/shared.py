"""One frequency sketch per sidecar, shared by memory admission and placement.

The engine counts each lookup of a key once in a `FrequencySketch` (see
`sidecar.engine.engine`); the engine's placement reads it to tell hot keys from cold ones,
and the memory tier's TinyLFU admission reads the same sketch through a
`SharedTinyLfuAdmitter`, which counts nothing itself. `shared_policy_factory` builds the
memory tier's eviction policy over that sketch (the tier's ``policy_factory``).

Not guaranteed: that a key's count is exact (a count-min sketch over-estimates and ages,
`sidecar.policy.sketch`); that reads made outside a lookup (a store finding the current
variant marker, a coalesced re-read, start-up warm-up) are counted: they are not.
"""

from __future__ import annotations

from collections.abc import Callable

from .admission import AlwaysAdmit, SharedTinyLfuAdmitter
from .eviction import WindowTinyLfuPolicy
from .sketch import FrequencySketch

__all__ = ["shared_policy_factory"]


def shared_policy_factory(
    sketch: FrequencySketch,
) -> Callable[[int, str], WindowTinyLfuPolicy[bytes]]:
    """A memory tier ``policy_factory``: W-TinyLFU admitting by `sketch` (counted by its
    owner), or a plain segmented LRU for ``admission="always"``."""

    def make(max_bytes: int, admission: str) -> WindowTinyLfuPolicy[bytes]:
        if admission == "always":
            return WindowTinyLfuPolicy(max_bytes, AlwaysAdmit())
        if admission == "tinylfu":
            return WindowTinyLfuPolicy(max_bytes, SharedTinyLfuAdmitter(sketch))
        raise ValueError(f"unknown admission policy {admission!r}")

    return make
