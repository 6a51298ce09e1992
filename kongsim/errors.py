"""The exceptions kongsim raises, each with the situation that raises it."""

from __future__ import annotations

from collections.abc import Iterable


class KongsimError(Exception):
    """Base class of every error kongsim raises on purpose."""


class ConfigError(KongsimError):
    """The declarative config (``kong.yml``) or a plugin config in it is invalid.

    Raised at load (start-up or reload), never at request time. ``messages`` holds one line per
    problem; each names the entity and the field, e.g.
    ``plugin 'strata-cache' on route 'users': config.cache_ttl: value must be greater than 0``.
    The CLI turns it into exit code 2.
    """

    def __init__(self, messages: Iterable[str]) -> None:
        self.messages = list(messages) or ["invalid configuration"]
        super().__init__("\n".join(self.messages))


class PluginServerError(KongsimError):
    """A plugin server could not be queried (bad ``--dump`` output) or started."""


class LuaError(KongsimError):
    """What Kong's Lua side would raise as a hard error (``error(...)``).

    Examples: a PDK function called in a phase Kong forbids, invalid PDK arguments, a failed
    ``StartInstance``. In ``access`` Kong answers 500 "An unexpected error occurred" and sends
    nothing more for the event (the Python handler stays blocked).
    """


class RpcError(KongsimError):
    """The plugin server answered an RPC with an error string (``[1, id, "err", nil]``)."""


class RpcTransportError(KongsimError):
    """The RPC failed below the protocol: connect refused, connection closed ("no data")."""


class RpcTimeoutError(RpcTransportError):
    """No answer within the RPC timeout: in practice a Python exception in a phase handler."""


class WireEncodingError(KongsimError):
    """A value Kong would send in a way the Python plugin server cannot decode.

    Lua strings travel as msgpack ``str`` (except raw bodies): bytes that are not valid UTF-8
    (e.g. a binary body stored with ``kong.ctx.shared.set`` and read back) make the server's
    unpacker raise, which kills that connection's handler. Kong then reads "no data".
    """


class RpcProtocolError(KongsimError):
    """The plugin server sent something Kong would reject (wrong msgid, not a response).

    Kong asserts on these, which is a hard Lua error.
    """
