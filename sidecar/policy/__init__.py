"""Eviction and admission policy for the sidecar's byte-bounded memory tier.

W-TinyLFU (after Caffeine): ``WindowTinyLfuPolicy`` tracks keys and byte sizes,
asks an ``Admitter`` (``TinyLfuAdmitter`` over a ``FrequencySketch``, or
``AlwaysAdmit``) before a newcomer displaces a resident, and reports what the caller
must drop with an ``EvictionCause``. ``simulate`` measures hit ratios on traces.
"""

from .admission import Admitter, AlwaysAdmit, TinyLfuAdmitter
from .eviction import EvictionCause, Segment, WindowTinyLfuPolicy
from .simulate import LruPolicy, SimPolicy, SimResult, simulate, zipf_trace
from .sketch import FrequencySketch

__all__ = [
    "Admitter",
    "AlwaysAdmit",
    "EvictionCause",
    "FrequencySketch",
    "LruPolicy",
    "Segment",
    "SimPolicy",
    "SimResult",
    "TinyLfuAdmitter",
    "WindowTinyLfuPolicy",
    "simulate",
    "zipf_trace",
]
