"""The analytics event (version 1): checking a plugin's ``AccessEvent`` and writing it as
the JSON published on the analytics topic. Pure: no I/O, no clock (the caller passes now).

`check` refuses an event with a field of the wrong shape, out of bounds or too long
(`Invalid`, whose `field` is a closed set of names: a metric label); `encode` writes a
checked event as one JSON object (`docs/analytics-events.md`, JSON Schema
`schema/strata.access.v1.schema.json`) and gives the Kafka message key: the key hash, so
that events spread over partitions by cache key (a hot route does not load one partition)
and the events of one key stay in order in one partition; an event without a key hash has
no message key (librdkafka spreads those).

Not guaranteed: that an event is true (the sidecar cannot check what the plugin saw; it
checks only that each field is of a shape a sink can store), or unique (a plugin may send
an event twice after a lost answer).
"""

from __future__ import annotations

import datetime
import json
import math
import re
from dataclasses import dataclass
from typing import Any

from strata.v1 import cache_pb2 as _pb

__all__ = [
    "FIELDS",
    "VERSION",
    "Invalid",
    "check",
    "encode",
]

VERSION = 1
#: Earliest event time accepted (2020-01-01T00:00:00Z), in Unix ms.
MIN_TIME_MS = 1_577_836_800_000
#: How far ahead of the sidecar's clock an event's time may be (plugin hosts' clocks drift).
MAX_AHEAD_MS = 24 * 3600 * 1000
#: Largest `bytes` (1 TiB) and `latency_ms` (one day).
MAX_BYTES = 1 << 40
MAX_LATENCY_MS = 86_400_000.0
PHASES = frozenset({"access", "response", "log"})

#: Field -> longest value, in characters, and its pattern (full match; ``None``: any text
#: without control characters).
_TEXT = re.compile(r"[^\x00-\x1f\x7f]*")
_WORD = re.compile(r"[a-z0-9][a-z0-9._-]*")
FIELDS: dict[str, tuple[int, re.Pattern[str]]] = {
    "route_id": (128, _TEXT),
    "service_id": (128, _TEXT),
    "consumer_id": (256, _TEXT),
    "method": (32, re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")),
    "cache_result": (16, _WORD),
    "cache_detail": (64, _WORD),
    "tier": (32, _WORD),
    "key_hash": (64, re.compile(r"[0-9a-f]{8,64}")),
}
#: Fields that may be empty (absent from the JSON then).
_OPTIONAL = frozenset(
    {"route_id", "service_id", "consumer_id", "cache_result", "cache_detail", "tier", "key_hash"}
)


@dataclass(frozen=True, slots=True)
class Invalid:
    """Why an event was refused: the field (a metric label) and what is wrong with it."""

    field: str
    problem: str


def check(event: _pb.AccessEvent, now_ms: int) -> Invalid | None:
    """None when every field of `event` is within bounds; else the first that is not."""
    if not MIN_TIME_MS <= event.time_ms <= now_ms + MAX_AHEAD_MS:
        return Invalid("time_ms", f"{event.time_ms} is not a time between 2020 and now + 1 day")
    for name, (longest, pattern) in FIELDS.items():
        value: str = getattr(event, name)
        if not value:
            if name in _OPTIONAL:
                continue
            return Invalid(name, "is required")
        if len(value) > longest:
            return Invalid(name, f"is {len(value)} characters, more than {longest}")
        if not pattern.fullmatch(value):
            return Invalid(name, "has characters outside its alphabet")
    if event.status != 0 and not 100 <= event.status <= 999:
        return Invalid("status", f"{event.status} is neither 0 (unknown) nor 100-999")
    if not -1 <= event.bytes <= MAX_BYTES:
        return Invalid("bytes", f"{event.bytes} is neither -1 (unknown) nor 0-1TiB")
    latency = event.latency_ms
    if not math.isfinite(latency) or not 0.0 <= latency <= MAX_LATENCY_MS:
        return Invalid("latency_ms", f"{latency!r} is not 0 to {MAX_LATENCY_MS:.0f} ms")
    if event.phase not in PHASES:
        return Invalid("phase", "is not one of access, response, log")
    return None


def _time(ms: int) -> str:
    """RFC 3339 UTC with milliseconds: ``2026-12-07T10:11:12.345Z``."""
    moment = datetime.datetime.fromtimestamp(ms / 1000, datetime.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"


def encode(event: _pb.AccessEvent, node_id: str) -> tuple[bytes | None, bytes]:
    """The message key and JSON value of a checked `event` published by `node_id`."""
    out: dict[str, Any] = {"v": VERSION, "time": _time(event.time_ms), "node_id": node_id}
    for name in ("route_id", "service_id", "consumer_id"):
        value = getattr(event, name)
        if value:
            out[name] = value
    out["method"] = event.method
    out["status"] = event.status
    out["cache_result"] = event.cache_result or "none"
    if event.cache_detail:
        out["cache_detail"] = event.cache_detail
    if event.tier:
        out["tier"] = event.tier
    if event.bytes >= 0:
        out["bytes"] = event.bytes
    out["latency_ms"] = round(event.latency_ms, 3)
    if event.key_hash:
        out["key_hash"] = event.key_hash
    out["phase"] = event.phase
    value = json.dumps(out, separators=(",", ":"), ensure_ascii=False).encode()
    return (event.key_hash.encode() if event.key_hash else None), value
