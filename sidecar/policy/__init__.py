"""Eviction and admission policy for the sidecar's byte-bounded memory tier.

W-TinyLFU (after Caffeine): ``WindowTinyLfuPolicy`` tracks keys and byte sizes,
asks an ``Admitter`` (``TinyLfuAdmitter`` over a ``FrequencySketch``, or
``AlwaysAdmit``) before a newcomer displaces a resident, and reports what the caller
must drop with an ``EvictionCause``. The trace simulator lives in
``bench.simulate`` (it does not ship in production).
"""

from .admission import Admitter, AlwaysAdmit, TinyLfuAdmitter
from .eviction import EvictionCause, Segment, WindowTinyLfuPolicy
from .sketch import FrequencySketch

__all__ = [
    "Admitter",
    "AlwaysAdmit",
    "EvictionCause",
    "FrequencySketch",
    "Segment",
    "TinyLfuAdmitter",
    "WindowTinyLfuPolicy",
]
