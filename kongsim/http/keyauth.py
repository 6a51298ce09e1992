"""The bundled ``key-auth`` plugin (Kong 3.9.3, priority 1250), emulated in Python.

Follows ``kong/plugins/key-auth/handler.lua``: the key is looked for, for each name in
``key_names``, in the request headers (``key_in_header``), then the query string
(``key_in_query``), then the body (``key_in_body``: form or JSON). A header given twice is
"Duplicate API key found"; no key is "No API key found in request"; an unknown key is
"Unauthorized" (Kong 3.x's message; 2.x said "Invalid authentication credentials"). All three are
401 with ``WWW-Authenticate: Key`` (or ``Key realm="<realm>"``), in Kong's error format.

On success the consumer and credential are set (``kong.client.get_consumer``/``get_credential``)
and ``X-Consumer-ID``, ``X-Consumer-Custom-ID``, ``X-Consumer-Username``,
``X-Credential-Identifier`` are sent upstream (``X-Anonymous-Consumer`` cleared);
``hide_credentials`` removes the key from the headers, the query string and the body. With
``anonymous`` set, a failed authentication continues as that consumer (by id or username) with
``X-Anonymous-Consumer: true``; an anonymous consumer that does not exist is a 500.

NOT emulated: credential ``ttl``, consumer groups, the ``kong.cache``/DB lookups (credentials come
from kong.yml), ``run_on_preflight`` on non-OPTIONS subtleties beyond Kong's own check.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from kongsim.config.entities import DeclarativeConfig
from kongsim.config.plugins import PluginInfo
from kongsim.emulated import KONG_VERSION
from kongsim.pdk.args import encode_query, parse_body, parse_query
from kongsim.pdk.codec import lua_json
from kongsim.pdk.responses import error_response
from kongsim.pdk.service import clear_query_arg
from kongsim.request.state import RequestState, Terminal, apply_header_op

_HEADER_NAME = re.compile(r"^[A-Za-z0-9_-]+$")


def _header_name(value: Any) -> tuple[bool, str | None]:
    if _HEADER_NAME.match(value):
        return True, None
    return False, (f"bad header name '{value}', allowed characters are A-Z, a-z, 0-9, '_', and '-'")


SCHEMA: list[dict[str, Any]] = [
    {
        "key_names": {
            "type": "array",
            "required": True,
            "elements": {"type": "string", "custom_validator": _header_name},
            "default": ["apikey"],
        }
    },
    {"hide_credentials": {"type": "boolean", "required": True, "default": False}},
    {"anonymous": {"type": "string"}},
    {"key_in_header": {"type": "boolean", "required": True, "default": True}},
    {"key_in_query": {"type": "boolean", "required": True, "default": True}},
    {"key_in_body": {"type": "boolean", "required": True, "default": False}},
    {"run_on_preflight": {"type": "boolean", "required": True, "default": True}},
    {"realm": {"type": "string", "required": False}},
]

INFO = PluginInfo(
    name="key-auth",
    priority=1250,
    version=KONG_VERSION,
    phases=("access",),
    schema_fields=SCHEMA,
    server=None,
    no_consumer=True,
)

_CONSUMER_HEADERS = (
    "X-Consumer-ID",
    "X-Consumer-Custom-ID",
    "X-Consumer-Username",
    "X-Credential-Identifier",
)


def access(st: RequestState, conf: Mapping[str, Any], decl: DeclarativeConfig) -> Terminal | None:
    """Run key-auth's ``access`` handler; return Kong's 401/500 response or ``None`` to go on."""
    if not conf.get("run_on_preflight") and st.method == "OPTIONS":
        return None
    anonymous = conf.get("anonymous")
    if anonymous:
        if st.credential is not None:
            return None
        failure = _authenticate(st, conf, decl)
        if failure is not None:
            consumer = decl.find_consumer(anonymous)
            if consumer is None:
                return error_response(st, 500, "An unexpected error occurred")
            _set_consumer(st, consumer.entity(), None)
        return None
    return _authenticate(st, conf, decl)


def _authenticate(
    st: RequestState, conf: Mapping[str, Any], decl: DeclarativeConfig
) -> Terminal | None:
    realm = conf.get("realm")
    www_auth = f'Key realm="{realm}"' if realm else "Key"

    def unauthorized(message: str) -> Terminal:
        return error_response(st, 401, message, {"WWW-Authenticate": www_auth})

    body: dict[str, Any] | None = None
    key: str | None = None
    for name in conf.get("key_names") or []:
        value: Any = None
        if conf.get("key_in_header"):
            values = st.headers.getall(name.replace("_", "-"), [])
            value = values[0] if len(values) == 1 else values or None
        if value is None and conf.get("key_in_query"):
            value = parse_query(st.raw_query).get(name)
        if value is None and conf.get("key_in_body"):
            if body is None:
                parsed = parse_body(st.body, st.headers.get("content-type"))
                body = parsed if isinstance(parsed, dict) else {}
            value = body.get(name)
        if isinstance(value, str):
            key = value
            if conf.get("hide_credentials"):
                clear_query_arg(st, name)
                apply_header_op(st.headers, "clear", name, [])
                if conf.get("key_in_body") and body:
                    _hide_in_body(st, body, name)
            break
        if isinstance(value, list):
            return unauthorized("Duplicate API key found")
    if not key:
        return unauthorized("No API key found in request")
    credential = next((c for c in decl.credentials if c.key == key), None)
    if credential is None:
        return unauthorized("Unauthorized")
    consumer = decl.consumer(credential.consumer_id)
    if consumer is None:
        return error_response(st, 500, "An unexpected error occurred")
    _set_consumer(st, consumer.entity(), credential.entity())
    return None


def _hide_in_body(st: RequestState, body: dict[str, Any], name: str) -> None:
    remaining = {k: v for k, v in body.items() if k != name}
    ctype = (st.headers.get("content-type") or "").split(";", 1)[0].strip().lower()
    if ctype == "application/json":
        st.upstream_body = lua_json(remaining).encode("utf-8")
    else:
        st.upstream_body = encode_query(remaining).encode("utf-8")


def _set_consumer(
    st: RequestState, consumer: dict[str, Any] | None, credential: dict[str, Any] | None
) -> None:
    st.authenticate(consumer, credential)
    values = (
        consumer.get("id") if consumer else None,
        consumer.get("custom_id") if consumer else None,
        consumer.get("username") if consumer else None,
        credential.get("id") if credential else None,
    )
    for header, value in zip(_CONSUMER_HEADERS, values, strict=True):
        if value:
            apply_header_op(st.headers, "set", header, [str(value)])
        else:
            apply_header_op(st.headers, "clear", header, [])
    if credential:
        apply_header_op(st.headers, "clear", "X-Anonymous-Consumer", [])
    else:
        apply_header_op(st.headers, "set", "X-Anonymous-Consumer", ["true"])
