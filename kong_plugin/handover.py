"""A request's state handed from its ``access`` phase to its ``response`` and ``log``
phases through ``kong.ctx.shared`` (they may run in other plugin-server workers): one PDK
call to hand it over, one to take it back (`kong_plugin.carry` packs it).

Not guaranteed: that the state is there (another plugin may overwrite the key; a value that
is not this plugin's state is reported through `kong.log` and ignored).
"""

from __future__ import annotations

import secrets
from typing import Any

from kong_plugin import carry, runtime
from kong_plugin.inflight import RequestState
from kong_plugin.pdk import pdk

#: The ``kong.ctx.shared`` key the state travels under.
CTX_KEY = "strata_cache"


def remember(kong: Any, state: RequestState) -> None:
    """Hand `state` to the request's later phases (names it with a fresh nonce)."""
    state.nonce = secrets.randbits(62)
    kong.ctx.shared.set(CTX_KEY, carry.pack(state))


def carried_raw(kong: Any) -> Any:
    """What is under `CTX_KEY` now (one PDK call), undecoded."""
    return pdk(kong.ctx.shared.get(CTX_KEY))


def carried(kong: Any, phase: str) -> RequestState | None:
    """The state `remember` handed over (one PDK call), or None."""
    raw = carried_raw(kong)
    return unpacked(kong, raw, phase) if raw is not None else None


def unpacked(kong: Any, raw: Any, phase: str) -> RequestState | None:
    """`raw` decoded; a value that is not this plugin's state is reported and ignored."""
    state = carry.unpack(raw)
    if state is None:
        message = f"kong.ctx.shared[{CTX_KEY!r}] holds no state of this plugin; ignored"
        runtime.reporter.report(kong, "warn", f"{phase}-state", message)
    return state
