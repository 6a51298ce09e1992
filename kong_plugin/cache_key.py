"""The cache key: a pure, versioned function of the request and the route config.

Key format (version 2), the string sent to the sidecar and shown in ``X-Cache-Key``::

    v2:<route>:<sha256 hex of the pre-image>

``<route>`` is the matched route's id (percent-encoded outside ``A-Za-z0-9-._~``), or
``global`` when the plugin runs without a route; ``v2:<route>:`` is the prefix the sidecar
can purge a whole route by (`route_prefix`). The prefix is for people and purges only:
every component, the route id included, is inside the digest.

Components of the pre-image, in order (see `KEY.md` for the README version):

1. the method -- HEAD is folded into GET, so a HEAD is answered from a stored GET;
2. the host, lower-cased (port kept if given; the scheme is not part);
3. the path, normalised: percent-escapes of unreserved characters decoded and other
   escapes upper-cased (RFC 3986 §6.2.2.2), dot-segments removed (§5.2.4), lower-cased
   only when ``ignore_uri_case`` is set; repeated slashes are kept;
4. the query, from the raw query string as the client sent it (`kong_plugin.query_key`):
   ``&``-units in their raw form with escapes normalised losslessly, units whose name is
   not kept (``vary_query_params``, ``ignore_query_params``) dropped or cut down to their
   kept ``;`` parts, units with different names ordered by name, repeated names in the
   order sent;
5. the ``vary_headers`` (lower-cased, sorted): each header's lines whitespace-collapsed and
   joined with ``", "``, and ``Accept``, ``Accept-Charset``, ``Accept-Encoding``,
   ``Accept-Language`` then written as canonical lists (`kong_plugin.vary.vary_value`:
   ``gzip, br`` and ``BR,gzip`` are one key); an absent header is distinct from an empty
   one;
6. the consumer scope: ``always`` -> the consumer id, or "anonymous" (a marker no consumer
   id can equal); ``never`` -> nothing; ``auto`` -> the consumer id when one is
   authenticated (Kong's behaviour), "anonymous" when authentication fell back to an
   anonymous consumer (all such requests share one scope, see `kong_plugin.identity`),
   else nothing;
7. the route id (or its absence).

Encoding: each string is written as ``<length>:<text>,`` (a netstring over code points),
lists are prefixed by ``<count>#``, optional values by ``-`` (absent) or ``+``, a whole
query unit is ``U<netstring>`` and one cut down to its ``;`` parts ``P<count>#`` and their
netstrings; the pre-image starts with ``strata-key/2|``. This is a prefix-free code, so
two different component tuples never share a pre-image; collisions can come only from
SHA-256.

Not guaranteed: the request body is never part of the key (as in Kong); two URLs that
normalise to the same components share an entry by design. The query is the raw one from
the request line, not Kong's decoded ``get_query`` (which stops at 100 arguments), so no
argument is cut off; a request line that is not valid UTF-8 never reaches the plugin (the
plugin server cannot decode it and Kong proxies the request without the plugin).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from urllib.parse import quote

from kong_plugin.config import PluginConfig
from kong_plugin.headers import HeaderInput, Headers
from kong_plugin.query_key import QueryUnit, normalize_escapes, query_units
from kong_plugin.vary import vary_value

#: Version 2: the query is keyed from its raw form (version 1 keyed Kong's decoded
#: arguments, with repeated values sorted).
KEY_VERSION = 2
_MAGIC = f"strata-key/{KEY_VERSION}"
GLOBAL_ROUTE = "global"


@dataclass(frozen=True, slots=True)
class CacheKey:
    """A built key and the normalised components that went into its digest."""

    key: str
    prefix: str
    digest: str
    method: str
    host: str
    path: str
    query: tuple[QueryUnit, ...]
    headers: tuple[tuple[str, str | None], ...]
    consumer: tuple[str, ...]
    route_id: str | None

    def __str__(self) -> str:
        return self.key

    @property
    def consumer_scoped(self) -> bool:
        """The key holds an authenticated consumer's id (for `response_decision`)."""
        return self.consumer[:1] == ("consumer",)


def route_prefix(route_id: str | None) -> str:
    """``v2:<route>:`` -- every key of that route starts with it (purge by prefix)."""
    route = quote(route_id, safe="-._~") if route_id is not None else GLOBAL_ROUTE
    return f"v{KEY_VERSION}:{route}:"


def remove_dot_segments(path: str) -> str:
    """RFC 3986 §5.2.4 for an absolute path (``/a/b/../c`` -> ``/a/c``)."""
    segments = path.split("/")[1:]
    out: list[str] = []
    last = len(segments) - 1
    for i, segment in enumerate(segments):
        if segment == ".":
            if i == last:
                out.append("")
        elif segment == "..":
            if out:
                out.pop()
            if i == last:
                out.append("")
        else:
            out.append(segment)
    return "/" + "/".join(out)


def normalize_path(path: str, *, ignore_case: bool = False) -> str:
    """The path as it enters the key (see the module docstring, component 3)."""
    if not path.startswith("/"):
        path = "/" + path
    path = normalize_escapes(path)
    if "/." in path:
        path = remove_dot_segments(path)
    return path.lower() if ignore_case else path


def _header_parts(headers: Headers, config: PluginConfig) -> tuple[tuple[str, str | None], ...]:
    out = []
    for name in config.vary_header_names:
        lines = headers.get_all(name)
        out.append((name, vary_value(name, lines) if lines else None))
    return tuple(out)


def _consumer_part(
    consumer_id: str | None, anonymous: bool, config: PluginConfig
) -> tuple[str, ...]:
    scope = config.consumer_scope
    if scope == "never":
        return ()
    if consumer_id:
        return ("consumer", consumer_id)
    return ("anonymous",) if scope == "always" or anonymous else ()


def _ns(text: str) -> str:
    return f"{len(text)}:{text},"


def encode_preimage(
    method: str,
    host: str,
    path: str,
    *,
    query: tuple[QueryUnit, ...],
    headers: tuple[tuple[str, str | None], ...],
    consumer: tuple[str, ...],
    route_id: str | None,
) -> str:
    """The unambiguous pre-image of normalised components (exposed for tests and docs)."""
    out = [_MAGIC, "|", _ns(method), _ns(host), _ns(path), f"q{len(query)}#"]
    for unit in query:
        if unit.whole:
            out.append("U" + _ns(unit.parts[0]))
        else:
            out.append(f"P{len(unit.parts)}#")
            out.extend(_ns(part) for part in unit.parts)
    out.append(f"h{len(headers)}#")
    for name, value in headers:
        out.append(_ns(name))
        out.append("-" if value is None else "+" + _ns(value))
    out.append(f"c{len(consumer)}#")
    out.extend(_ns(part) for part in consumer)
    out.append("r-" if route_id is None else "r+" + _ns(route_id))
    return "".join(out)


def build_key(
    method: str,
    host: str,
    path: str,
    query: str,
    headers: HeaderInput,
    consumer_id: str | None,
    route_id: str | None,
    config: PluginConfig,
    *,
    anonymous: bool = False,
) -> CacheKey:
    """Build the cache key of a request (see the module docstring for the format).

    `query` is the raw query string as sent (no leading ``?``; characters outside ASCII
    stand for their UTF-8 bytes). `consumer_id` is an authenticated consumer's id;
    `anonymous` says authentication fell back to an anonymous consumer (then
    `consumer_id` is ``None``).
    """
    key_method = "GET" if method == "HEAD" else method
    key_host = host.lower()
    key_path = normalize_path(path, ignore_case=config.ignore_uri_case)
    query_parts = query_units(query, config) if query else ()
    header_parts = _header_parts(Headers.of(headers), config) if config.vary_header_names else ()
    consumer = _consumer_part(consumer_id, anonymous, config)
    preimage = encode_preimage(
        key_method,
        key_host,
        key_path,
        query=query_parts,
        headers=header_parts,
        consumer=consumer,
        route_id=route_id,
    )
    digest = hashlib.sha256(preimage.encode("utf-8", "surrogatepass")).hexdigest()
    prefix = route_prefix(route_id)
    return CacheKey(
        key=prefix + digest,
        prefix=prefix,
        digest=digest,
        method=key_method,
        host=key_host,
        path=key_path,
        query=query_parts,
        headers=header_parts,
        consumer=consumer,
        route_id=route_id,
    )
