"""The errors of `strata cost`'s sources, and the check every sample value passes.

A sample the report uses must be a finite number >= 0 and below `MAX_SAMPLE` (2^63, past
any counter or byte count a real server reaches): anything else (NaN, an infinity, a
negative or absurd value) is refused with a `SourceError` naming the source and the family,
never turned into a made-up report. Not guaranteed: that a value in range is true.
"""

from __future__ import annotations

import math

__all__ = ["MAX_SAMPLE", "SourceError", "checked"]

#: Sample values must be below this (2^63).
MAX_SAMPLE = float(2**63)


class SourceError(Exception):
    """A source could not be read or is not what it should be (exit 1)."""


def checked(value: float, source: str, family: str) -> float:
    """`value` when it is finite, >= 0 and below `MAX_SAMPLE`; `SourceError` otherwise."""
    if math.isfinite(value) and 0 <= value < MAX_SAMPLE:
        return value
    raise SourceError(f"{source}: {family}: sample value {value!r} is not a number from 0 to 2^63")
