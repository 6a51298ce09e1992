"""Kong's answers to PDK callbacks from external plugins (the Lua side of ``plugin.Step``).

:meth:`Pdk.call` takes the ``Method``/``Args`` a plugin server put in a ``HandleEvent``/``Step``
result and returns what Kong 3.x would send back: the value (``None`` means Lua ``nil``: the
``Data`` key is then omitted), and the reply method (``plugin.Step``, ``plugin.StepMultiMap``, ...
see the protocol reference §6.2). The wire fix-ups of §6.3 are applied: multi-maps (request and
response headers, query) have every value as a list and are sent as a map even when empty; raw
bodies are ``bytes`` (msgpack bin); other empty tables are sent as empty arrays, as
lua-MessagePack packs them.

Kong 3.x keeps only the first return value of a PDK function, so ``nil, err`` reaches Python as a
``Step`` with no ``Data``; that is what you get here too (``StepError`` is never sent).

Hard errors (Kong's ``error(...)``: a function called in a phase where Kong forbids it, invalid
arguments, ...) raise :class:`~kongsim.errors.LuaError` with Kong's message. External plugins'
``log`` phase runs in an nginx timer with a snapshot of the request (Kong's ``save_for_later``):
functions Kong answers from the snapshot or from ``ngx.ctx`` work there; functions that read
``ngx.var``/``ngx.req`` fail with "API disabled in the current context" (this list is
inferred from reading Kong 3.9's source, not observed on a running Kong).

Arguments: a Python ``None`` in the middle of ``Args`` truncates the argument list there (Lua's
``unpack`` of a table with a hole, observed with lua-MessagePack); kongsim records a warning.

Implemented, one module per area (see ``REGISTRY``): ``kong.request.*``, ``kong.client.*``,
``kong.router.*``, ``kong.response.*``, ``kong.service.request.*``, ``kong.service.response.*``,
``kong.ctx.shared.*``, ``kong.nginx.*`` (a few variables), ``kong.node.*``, ``kong.log.*``,
``kong.plugin.get_id``, ``kong.ip.is_trusted``. Anything else is an unknown method: Kong logs
"could not find pdk method" and answers ``nil``. NOT emulated: TLS (``kong.client.tls``), vaults,
``kong.cache``, ``kong.db``, ``kong.cluster``, multipart bodies, gRPC, trusted IPs (none are
trusted).
"""

# registration order is REGISTRY's order (the fidelity table follows it)
from kongsim.pdk import request, client, context, log, response, service  # noqa: F401, I001
from kongsim.pdk.core import (
    CLIENT_BODY_BUFFER_SIZE,
    REGISTRY,
    TERMINAL_METHODS,
    TIMER_ERROR,
    Pdk,
    PdkAnswer,
    PdkEnv,
    UnknownPdkMethod,
)
from kongsim.pdk.responses import (
    error_response,
    exit_response,
    http_error_message,
)

__all__ = [
    "CLIENT_BODY_BUFFER_SIZE",
    "REGISTRY",
    "TERMINAL_METHODS",
    "TIMER_ERROR",
    "Pdk",
    "PdkAnswer",
    "PdkEnv",
    "UnknownPdkMethod",
    "error_response",
    "exit_response",
    "http_error_message",
]
