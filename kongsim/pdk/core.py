"""The PDK dispatcher: phase checks, argument handling, wire fix-ups, the method registry."""

from __future__ import annotations

import re
import socket
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from multidict import CIMultiDict

from kongsim.config.entities import DeclarativeConfig
from kongsim.config.plugins import ConfiguredPlugin
from kongsim.errors import LuaError
from kongsim.pdk.codec import DEFAULT_MAX_ARGS, header_key, lua_pack_shape
from kongsim.request.state import RequestState, Terminal

TIMER_ERROR = "API disabled in the current context"
"""lua-resty-core's error for ``ngx.var``/``ngx.req``/``ngx.resp`` FFI calls made where the
request is not available (the ``log`` timer of an external plugin)."""
CLIENT_BODY_BUFFER_SIZE = 8192
"""Kong's ``nginx_http_client_body_buffer_size`` default (8k): larger bodies go to a file."""

# Kong's phase groups, with the phase names Kong lists in its "only in: ..." message.
REQUEST = (
    "rewrite",
    "access",
    "balancer",
    "response",
    "cluster_listener",
    "header_filter",
    "body_filter",
    "log",
    "error",
    "admin_api",
)
BEFORE_CONTENT = ("rewrite", "access", "response", "error", "admin_api")
AUTH_AND_LATER = ("access", "response", "header_filter", "body_filter", "log")
HEADER_BODY_LOG = ("response", "header_filter", "body_filter", "log", "error", "admin_api")
SERVICE_RESPONSE = ("response", "header_filter", "body_filter", "log")
REWRITE_ACCESS_HEADER = (
    "rewrite",
    "access",
    "balancer",
    "response",
    "header_filter",
    "error",
    "admin_api",
)
ACCESS_AND_REWRITE = ("rewrite", "access")
ACCESS_REWRITE_BALANCER = ("rewrite", "access", "balancer")
ACCESS_ONLY = ("access",)
BODY_FILTER = ("body_filter",)


@dataclass(frozen=True)
class PdkAnswer:
    """What to send back in the next ``Step``: ``Data`` (``None`` = omitted) and the method."""

    value: Any
    step_method: str = "plugin.Step"


class UnknownPdkMethod(Exception):  # noqa: N818 - mirrors Kong's "could not find pdk method"
    """The plugin called a PDK function Kong does not have (or kongsim does not emulate)."""


@dataclass
class PdkEnv:
    """What PDK answers need beyond the request: the config, node identity, limits."""

    decl: DeclarativeConfig
    node_id: str
    hostname: str = socket.gethostname()
    client_body_buffer_size: int = CLIENT_BODY_BUFFER_SIZE


@dataclass
class CallContext:
    st: RequestState
    plugin: ConfiguredPlugin | None
    env: PdkEnv
    warn: Callable[[str], None]


Impl = Callable[[CallContext, list[Any]], Any]


@dataclass(frozen=True)
class PdkMethod:
    impl: Impl
    phases: tuple[str, ...] | None
    timer_ok: bool
    step: str = "plugin.Step"
    fix: str | None = None  # "mmap" | "raw"


REGISTRY: dict[str, PdkMethod] = {}
TERMINAL_METHODS = frozenset({"kong.response.exit", "kong.response.error"})


def register(
    name: str,
    phases: tuple[str, ...] | None,
    *,
    timer_ok: bool,
    step: str = "plugin.Step",
    fix: str | None = None,
) -> Callable[[Impl], Impl]:
    def register(fn: Impl) -> Impl:
        REGISTRY[name] = PdkMethod(fn, phases, timer_ok, step, fix)
        return fn

    return register


class Pdk:
    """Answers the PDK callbacks of one plugin's event."""

    def __init__(
        self,
        st: RequestState,
        plugin: ConfiguredPlugin | None,
        env: PdkEnv,
        warn: Callable[[str], None],
    ) -> None:
        self.ctx = CallContext(st, plugin, env, warn)

    def call(self, method: str, args: Any) -> PdkAnswer | Terminal:
        """Run one PDK callback; raise :class:`LuaError` or :class:`UnknownPdkMethod`."""
        spec = REGISTRY.get(method)
        if spec is None:
            if _is_namespace(method):
                # rpc/util.lua index_table walks the name to a table; calling it is a Lua error
                raise LuaError(f"attempt to call a table value ({method})")
            raise UnknownPdkMethod(method)
        arglist = self._args(method, args)
        phase = self.ctx.st.phase
        if spec.phases is not None and phase not in spec.phases:
            raise LuaError(
                f"function cannot be called in {phase} phase (only in: {', '.join(spec.phases)})"
            )
        if self.ctx.st.in_timer and not spec.timer_ok:
            raise LuaError(TIMER_ERROR)
        value = spec.impl(self.ctx, arglist)
        if isinstance(value, Terminal):
            return value
        if spec.fix == "raw":
            if value is None:
                # fix_raw(nil) makes lua-MessagePack take #nil while packing the Step.
                raise LuaError("attempt to get length of local 'str' (a nil value)")
            return PdkAnswer(bytes(value), spec.step)
        if spec.fix == "mmap":
            return PdkAnswer(value if value is not None else None, spec.step)
        # mp_rpc.lua get_step_method: a result table's _method field names the Step method
        step = value.get("_method") if isinstance(value, dict) else None
        return PdkAnswer(lua_pack_shape(value), step if isinstance(step, str) else spec.step)

    def _args(self, method: str, args: Any) -> list[Any]:
        if args is None:
            return []
        if not isinstance(args, list):
            return [args]
        if None in args:
            cut = args.index(None)
            if any(a is not None for a in args[cut + 1 :]):
                self.ctx.warn(
                    f"{method}: a nil argument at position {cut + 1} truncates the "
                    "argument list in Lua (unpack); the arguments after it are dropped"
                )
            return args[:cut]
        return args


def _is_namespace(method: str) -> bool:
    """True if ``method`` walks to a table of Kong's PDK (``kong``, ``kong.request``, ...)."""
    segments = re.findall(r"\w+", method)
    if not segments or segments[0] != "kong":
        return False
    prefix = ".".join(segments) + "."
    return len(segments) == 1 or any(name.startswith(prefix) for name in REGISTRY)


def arg(args: list[Any], i: int) -> Any:
    return args[i] if i < len(args) else None


def max_arg(args: list[Any], name: str) -> int:
    value = arg(args, 0)
    if value is None:
        return DEFAULT_MAX_ARGS
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise LuaError(f"{name} must be a number")
    if value < 1:
        raise LuaError(f"{name} must be >= 1")
    if value > 1000:
        raise LuaError(f"{name} must be <= 1000")
    return int(value)


def name_arg(args: list[Any], what: str = "header name") -> str:
    name = arg(args, 0)
    if isinstance(name, bytes):
        name = name.decode("latin-1")
    if not isinstance(name, str):
        raise LuaError(f"{what} must be a string")
    return name


def first_header(headers: CIMultiDict[str] | None, name: str) -> str | None:
    if headers is None:
        return None
    return headers.get(header_key(name))


def bytes_arg(value: Any, what: str) -> bytes:
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode("utf-8")
    raise LuaError(f"{what} must be a string")
