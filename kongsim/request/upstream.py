"""The upstream side of proxying: the request Kong sends and the headers it passes back.

Request (Kong 3.9's ``access.after`` and nginx template): the client's headers minus hop-by-hop
headers (and those named in ``Connection``), changed by ``kong.service.request.*`` and key-auth,
then Kong's own: ``Host`` (the service's host, with the port if it is not the scheme's default;
the client's with ``preserve_host``; a plugin's ``set_header("Host")`` wins), ``X-Forwarded-For``
(the client's list plus the client address), ``X-Forwarded-Proto``/``-Host``/``-Port``/``-Path``,
``X-Forwarded-Prefix`` (the matched path prefix, when not ``/``), ``X-Real-IP``, ``Via: 1.1
kong/3.9.3`` and ``X-Kong-Request-Id``. Client ``X-Forwarded-*`` values are never trusted (no
``trusted_ips``).

Response: the upstream's headers minus hop-by-hop ones; ``Server`` and ``Date`` pass through.

NOT emulated: ``TE: trailers``, WebSocket upgrades, retries, load balancing, TLS verification of
upstreams (Kong's default is not to verify, and kongsim does not either), ``write_timeout``.
"""

from __future__ import annotations

from collections.abc import Iterable

from multidict import CIMultiDict, CIMultiDictProxy

from kongsim.emulated import SERVER_HEADER
from kongsim.request.router import RouteMatch
from kongsim.request.state import RequestState, apply_header_op

HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-connection",
        "proxy",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    }
)


def _connection_tokens(headers: CIMultiDict[str] | CIMultiDictProxy[str]) -> set[str]:
    tokens: set[str] = set()
    for value in headers.getall("connection", []):
        tokens.update(t.strip().lower() for t in value.split(",") if t.strip())
    return tokens - {"keep-alive", "close", "upgrade"}


def strip_hop_by_hop(headers: CIMultiDict[str] | CIMultiDictProxy[str]) -> CIMultiDict[str]:
    """A copy of ``headers`` without hop-by-hop headers (nor those listed in ``Connection``)."""
    listed = _connection_tokens(headers)
    return CIMultiDict(
        (k, v)
        for k, v in headers.items()
        if k.lower() not in HOP_BY_HOP and k.lower() not in listed
    )


def upstream_host_header(st: RequestState, match: RouteMatch) -> str:
    """The ``Host`` header Kong sends upstream."""
    if st.upstream_host is not None:
        return st.upstream_host
    if match.upstream_host is not None:
        return match.upstream_host
    service = match.service
    assert service is not None
    default_port = 443 if service.protocol == "https" else 80
    host = f"[{service.host}]" if ":" in service.host else service.host
    return host if service.port == default_port else f"{host}:{service.port}"


def request_headers(st: RequestState, match: RouteMatch) -> CIMultiDict[str]:
    """The headers of the request Kong sends upstream (without ``Content-Length``)."""
    headers = strip_hop_by_hop(st.headers)
    headers.popall("host", None)
    headers.popall("content-length", None)
    client_xff = st.headers.get("x-forwarded-for")
    via = st.headers.get("via")
    kong_via = f"{st.http_version:g} {SERVER_HEADER}"
    own = {
        "Host": upstream_host_header(st, match),
        "X-Forwarded-For": f"{client_xff}, {st.client_ip}" if client_xff else st.client_ip,
        "X-Forwarded-Proto": st.scheme,
        "X-Forwarded-Host": st.host,
        "X-Forwarded-Port": str(st.server_port),
        "X-Forwarded-Path": st.raw_path,
        "X-Forwarded-Prefix": match.prefix if match.prefix != "/" else None,
        "X-Real-IP": st.client_ip,
        "Via": f"{via}, {kong_via}" if via else kong_via,
        "X-Kong-Request-Id": st.request_id,
    }
    for name, value in own.items():
        headers.popall(name, None)
        if value is not None:
            headers[name] = value
    return headers


#: Upstream response headers nginx's proxy module hides by default (``proxy_hide_header``:
#: ``X-Pad``, ``X-Accel-*``; Kong passes ``Server`` and ``Date`` with ``proxy_pass_header``).
def _proxy_hidden(name: str) -> bool:
    low = name.lower()
    return low == "x-pad" or low.startswith("x-accel-")


def upstream_visible(headers: CIMultiDictProxy[str] | CIMultiDict[str]) -> CIMultiDict[str]:
    """The upstream's response headers as nginx passes them on (hop-by-hop and hidden ones
    removed)."""
    clean = strip_hop_by_hop(headers)
    for name in {k for k in clean if _proxy_hidden(k)}:
        clean.popall(name, None)
    return clean


def response_headers(
    upstream: CIMultiDictProxy[str] | CIMultiDict[str], ops: Iterable[tuple[str, str, list[str]]]
) -> CIMultiDict[str]:
    """Downstream headers of a streamed response: upstream's, then plugins' early changes."""
    headers = upstream_visible(upstream)
    for op, name, values in ops:
        apply_header_op(headers, op, name, values)
    return headers


def buffered_response_headers(
    upstream: CIMultiDictProxy[str] | CIMultiDict[str], early: CIMultiDict[str]
) -> CIMultiDict[str]:
    """Downstream headers before the ``response`` phase: ``set_headers(upstream)`` over early.

    Kong copies the subrequest's ``res.header`` (``kong/init.lua`` ``Kong.response``), which
    holds the upstream's ``Content-Length`` when it sent one (lua-nginx-module adds it from
    ``content_length_n``); a chunked upstream response has none, and goes out chunked."""
    headers = CIMultiDict(early)
    # kong.response.set_headers writes ngx.header[name]: "_" in a name becomes "-"
    clean = CIMultiDict((k.replace("_", "-"), v) for k, v in upstream_visible(upstream).items())
    for name in {k.lower() for k in clean}:
        headers.popall(name, None)
    headers.extend(clean)
    return headers
