"""A request's state, carried from the ``access`` phase to ``response`` and ``log`` in
``kong.ctx.shared``.

With several plugin-server workers, a request's phases may run in different processes
(Kong takes any pooled connection for each phase), so the state travels with the request
instead of staying in one process: `pack` turns a `RequestState` into one string that
``kong.ctx.shared.set`` hands to Kong, `unpack` reads it back.

The string is ``strata1:<nonce hex>:`` and then MessagePack read as Latin-1 (the nonce
readable without decoding the rest, `nonce_of`): every code point is below 256, so it crosses
Kong as valid UTF-8 text (a Lua string) and comes back exactly, whether the PDK answers with
text or bytes. The entry being revalidated travels as its strata.v1 ``Entry`` bytes.

Not guaranteed: small size -- a request's header lines travel with it, and a revalidated
entry's body too (bounded by ``max_body_bytes``); that a value under the key which another
plugin wrote is understood (anything that is not a well-formed state of this version is
`None`, and the phase treats the request as one it did not start).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import msgpack  # type: ignore[import-untyped]
from strata.v1 import cache_pb2 as pb

from kong_plugin.cache_control import CacheControl
from kong_plugin.inflight import RequestState
from kong_plugin.wire import entry_from_pb, entry_to_pb

VERSION = 2
_PREFIX = "strata1:"
_CC_FIELDS = {f.name: f for f in dataclasses.fields(CacheControl)}


def _cc_out(cc: CacheControl | None) -> dict[str, Any] | None:
    if cc is None:
        return None
    out: dict[str, Any] = {}
    for name, f in _CC_FIELDS.items():
        value = getattr(cc, name)
        default = f.default if f.default is not dataclasses.MISSING else frozenset()
        if value != default:
            out[name] = sorted(value) if isinstance(value, frozenset) else value
    return out


def _cc_in(raw: Any) -> CacheControl | None:
    if raw is None:
        return None
    if not isinstance(raw, dict) or not set(raw) <= set(_CC_FIELDS):
        raise ValueError("bad cache-control")
    values: dict[str, Any] = {k: frozenset(v) if isinstance(v, list) else v for k, v in raw.items()}
    return CacheControl(**values)


def pack(state: RequestState) -> str:
    """`state` as one string for ``kong.ctx.shared``."""
    entry = entry_to_pb(state.stale).SerializeToString() if state.stale is not None else None
    fields = [
        VERSION,
        state.mode,
        state.method,
        state.host,
        state.path,
        state.query,
        state.key,
        state.route,
        [[n, v] for n, v in state.request_headers],
        _cc_out(state.request_cc),
        state.guard,
        state.request_time,
        state.fill_lease,
        entry,
        state.stale_age_s,
        state.looked_up_at,
        state.stale_if_error,
        state.status_word,
        state.fwd,
        state.client_conditional,
        state.debug,
        state.origin,
        state.consumer_id,
    ]
    raw: bytes = msgpack.packb(fields, use_bin_type=True)
    return f"{_PREFIX}{state.nonce:x}:" + raw.decode("latin-1")


def _text(value: Any) -> str | None:
    if isinstance(value, bytes):
        try:
            value = value.decode("utf-8")
        except UnicodeDecodeError:
            return None
    return value if isinstance(value, str) and value.startswith(_PREFIX) else None


def _split(text: str) -> tuple[int, str] | None:
    """(nonce, MessagePack part) of a packed state; None if it is not one."""
    head, sep, body = text[len(_PREFIX) :].partition(":")
    if not sep or not 0 < len(head) <= 16:
        return None
    try:
        return int(head, 16), body
    except ValueError:
        return None


def nonce_of(value: Any) -> int:
    """The request nonce of a packed state without decoding the rest (0: not a state)."""
    text = _text(value)
    parts = _split(text) if text is not None else None
    return parts[0] if parts is not None else 0


def unpack(value: Any) -> RequestState | None:
    """The state `pack` made, or None for anything else (None, another plugin's value, a
    damaged or older-version string)."""
    text = _text(value)
    parts = _split(text) if text is not None else None
    if parts is None:
        return None
    nonce, body = parts
    try:
        fields = msgpack.unpackb(body.encode("latin-1"), raw=False)
        (version, mode, method, host, path, query, key, route, lines, cc, guard,
         request_time, fill_lease, entry, stale_age_s, looked_up_at, stale_if_error,
         status_word, fwd, client_conditional, debug, origin, consumer_id) = fields  # fmt: skip
        if version != VERSION:
            return None
        return RequestState(
            mode,
            method,
            host,
            path,
            query=query,
            key=key,
            route=route,
            request_headers=[(bytes(n), bytes(v)) for n, v in lines],
            request_cc=_cc_in(cc),
            guard=guard,
            request_time=float(request_time),
            fill_lease=bool(fill_lease),
            stale=entry_from_pb(pb.Entry.FromString(entry)) if entry is not None else None,
            stale_age_s=float(stale_age_s),
            looked_up_at=float(looked_up_at),
            stale_if_error=bool(stale_if_error),
            status_word=status_word,
            fwd=fwd,
            client_conditional=bool(client_conditional),
            debug=bool(debug),
            origin=origin,
            consumer_id=consumer_id,
            nonce=nonce,
        )
    except Exception:
        return None
