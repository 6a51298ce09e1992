"""Durations and allowed ranges of numeric settings: parsing with units, checking, and
the wording of both in error messages and in the README.

A duration is a number with an optional unit -- ``250ms``, ``5s``, ``2m``, ``1h``, ``1d``
-- and a plain number is in the setting's own unit (seconds for ``*_seconds``,
milliseconds for ``*_ms``). Numbers are decimal (no exponent, no ``nan``/``inf``) and are
converted exactly (``0.1s`` is 100 ms, not 100.00000000000001). A `Range` is the check of
one numeric setting: finite, within ``[low, high]`` in the setting's unit, and optionally 0
as a separate "off" value.

Not guaranteed: a duration for a whole-number setting must land on a whole number of its
unit (``1.5ms`` is refused for a ``*_ms`` setting, not rounded).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from fractions import Fraction
from typing import Literal

Unit = Literal["s", "ms", "bytes", ""]

_DURATION_RE = re.compile(
    r"^\s*([+-]?(?:\d+(?:\.\d*)?|\.\d+))\s*(ms|s|m|h|d)?\s*$", re.IGNORECASE | re.ASCII
)
_COUNT_RE = re.compile(r"^\s*[+-]?\d+\s*$", re.ASCII)
#: Seconds per duration unit suffix (and per setting unit).
_SECONDS = {"ms": Fraction(1, 1000), "s": Fraction(1), "m": Fraction(60), "h": Fraction(3600)}
_SECONDS["d"] = 24 * _SECONDS["h"]
_SIZE_STEPS = (("TiB", 1024**4), ("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024))
DURATION_HINT = "use e.g. 250ms, 5s, 2m, 1h"


def parse_duration(text: str, unit: Literal["s", "ms"]) -> Fraction:
    """'250ms', '5s', '2m', '1h', '1d' or a plain number (in `unit`) -> a count of `unit`."""
    m = _DURATION_RE.match(text)
    if m is None:
        raise ValueError(f"not a duration: {text!r} ({DURATION_HINT})")
    number = Fraction(m.group(1))
    suffix = (m.group(2) or unit).lower()
    return number * _SECONDS[suffix] / _SECONDS[unit]


def count(text: str) -> int:
    """A whole-number setting: ASCII digits only (no exponent, no other scripts' digits)."""
    if _COUNT_RE.match(text) is None:
        raise ValueError(f"not a whole number: {text!r}")
    return int(text)


def seconds(text: str) -> float:
    """A duration setting held as float seconds."""
    return float(parse_duration(text, "s"))


def whole_seconds(text: str) -> int:
    """A duration setting held as whole seconds."""
    return _whole(parse_duration(text, "s"), "seconds", text)


def milliseconds(text: str) -> int:
    """A duration setting held as whole milliseconds."""
    return _whole(parse_duration(text, "ms"), "milliseconds", text)


def _whole(value: Fraction, unit: str, text: str) -> int:
    if value.denominator != 1:
        raise ValueError(f"{text!r} is not a whole number of {unit}")
    return int(value)


def format_duration(value: float | Fraction, unit: Literal["s", "ms"]) -> str:
    """A count of `unit` in the largest unit that shows it exactly: 3600 s -> '1h'."""
    exact = Fraction(repr(value)) if isinstance(value, float) else Fraction(value)
    total = exact * _SECONDS[unit]
    for suffix in ("d", "h", "m", "s", "ms"):
        count = total / _SECONDS[suffix]
        if count.denominator == 1 and count != 0:
            return f"{count.numerator}{suffix}"
    return f"{float(total):g}s"


def format_size(value: int) -> str:
    """Bytes in the largest binary unit that shows them exactly: 536870912 -> '512MiB'."""
    for suffix, step in _SIZE_STEPS:
        if value and value % step == 0:
            return f"{value // step}{suffix}"
    return f"{value}B"


@dataclass(frozen=True, slots=True)
class Range:
    """The check of a numeric setting: finite, ``low <= value <= high`` in `unit`; 0 also
    allowed when `zero` (what 0 means, e.g. 'off') is given. Raises ValueError whose
    message states the allowed range."""

    low: int | float
    high: int | float
    unit: Unit = ""
    zero: str | None = None

    def __call__(self, value: int | float) -> None:
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError(f"{self.describe()}, got {value} (not a finite number)")
        if value == 0 and self.zero is not None:
            return
        if not self.low <= value <= self.high:
            raise ValueError(f"{self.describe()}, got {self.show(value)}")

    def show(self, value: int | float) -> str:
        """`value` as written in messages: sizes also in binary units."""
        if self.unit == "bytes" and isinstance(value, int) and value >= 1024:
            return f"{value} ({format_size(value)})"
        return f"{value:g}" if isinstance(value, float) else str(value)

    def bounds(self) -> str:
        """'100ms to 1h', '1KiB to 512MiB', '1 to 1000', '0 (off) or 1ms to 1m'."""
        zero = f"0 ({self.zero}) or " if self.zero is not None else ""
        return f"{zero}{self._span()}"

    def describe(self) -> str:
        """The sentence used in error messages."""
        zero = f"0 ({self.zero}) or " if self.zero is not None else ""
        plain = {"s": " (a plain number is seconds)", "ms": " (a plain number is milliseconds)"}
        return f"must be {zero}from {self._span()}{plain.get(self.unit, '')}"

    def _span(self) -> str:
        if self.unit in ("s", "ms"):
            low, high = (format_duration(v, self.unit) for v in (self.low, self.high))
        elif self.unit == "bytes":
            low, high = format_size(int(self.low)), format_size(int(self.high))
        else:
            low, high = str(self.low), str(self.high)
        return f"{low} to {high}"
