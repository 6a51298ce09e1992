"""One request through the gateway (:class:`Exchange`) and how Kong's own responses are sent.

Kong's response headers: proxied responses get ``Via: 1.1 kong/3.9.3``, ``X-Kong-Upstream-Latency``,
``X-Kong-Proxy-Latency`` and ``Server: kong/3.9.3`` if the upstream sent none; responses Kong
produced get ``Server`` and ``X-Kong-Response-Latency``; all get ``X-Kong-Request-Id``.

Strict mode: any issue (see :mod:`kongsim.recorder`) recorded during ``rewrite``, ``access`` or
``response`` replaces the response with a 500 whose ``X-Kongsim-Error`` header describes it.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field

from aiohttp import web
from multidict import CIMultiDict

from kongsim.config.plugins import ConfiguredPlugin
from kongsim.emulated import SERVER_HEADER
from kongsim.http.nginx import KongWholeResponse, nginx_header_filter
from kongsim.http.runtime import Runtime
from kongsim.protocol.bridge import Worker
from kongsim.recorder import Issue, Recorder, RequestRecord
from kongsim.request.state import RequestState, Terminal

KONGSIM_ERROR_HEADER = "X-Kongsim-Error"


@dataclass
class Exchange:
    """A request in flight: the configuration and worker it started with, Kong's per-request
    state, its record, and the plugins collected in ``access`` for ``response`` and ``log``."""

    rt: Runtime
    worker: Worker
    st: RequestState
    record: RequestRecord
    request: web.BaseRequest
    recorder: Recorder
    response_plugins: list[ConfiguredPlugin] = field(default_factory=list)
    log_plugins: list[ConfiguredPlugin] = field(default_factory=list)

    def strict_failure(self, strict: bool) -> Terminal | None:
        """In strict mode, the 500 replacing the response when this request has issues."""
        issues = self.record.issues
        if not strict or not issues:
            return None
        first = issues[0].describe()
        more = f" (+{len(issues) - 1} more)" if len(issues) > 1 else ""
        header = (first + more).replace("\r", " ").replace("\n", " ")
        header = header.encode("ascii", "replace").decode("ascii")[:1000]
        body = json.dumps(
            {
                "message": f"kongsim strict mode: {first}{more}",
                "issues": [i.describe() for i in issues],
                "request_id": self.st.request_id,
            }
        ).encode()
        self.st.unexpected = True
        return Terminal(
            500,
            body,
            [
                ("Content-Type", "application/json; charset=utf-8"),
                ("Content-Length", str(len(body))),
                (KONGSIM_ERROR_HEADER, header),
            ],
            source="error",
        )

    async def send_terminal(self, terminal: Terminal) -> web.StreamResponse:
        """Send a response Kong produced (an exit, an error page, a strict-mode failure)."""
        st = self.st
        if terminal.source == "exit":
            st.exited = True
        headers = CIMultiDict(st.response_headers)
        for name in {k.lower() for k, _ in terminal.headers} | terminal.cleared:
            headers.popall(name, None)
        headers.extend(terminal.headers)
        if st.proxied:
            # Kong's header_filter looks at KONG_PROXIED, set before the upstream call
            headers = self.proxied_headers(headers)
        else:
            if headers.get("Via") != SERVER_HEADER:
                headers["Server"] = SERVER_HEADER
            headers["X-Kong-Response-Latency"] = str(int(time.time() * 1000 - st.start_ms))
            headers["X-Kong-Request-Id"] = st.request_id
        return await self.send(terminal.status, headers, terminal.body)

    async def send(self, status: int, headers: CIMultiDict[str], body: bytes) -> web.StreamResponse:
        """Send a response whose headers were set through ``ngx.header``. ``Content-Length`` is
        sent as set (an exit's is Kong's choice, see :class:`Terminal`); without one, the body
        goes out chunked, as nginx does -- except for a 1xx status (an upstream's interim
        response taken for the final one, :mod:`kongsim.http.interim`): nginx's header filter
        gives it no reason phrase and no framing, and sends the body after the head as is."""
        st = self.st
        headers = nginx_header_filter(status, headers)
        st.response_status = status
        st.response_headers = headers
        without_body = self.request.method == "HEAD" or status in (204, 304)
        declared = headers.get("content-length")
        if declared is not None and not without_body and declared.strip() != str(len(body)):
            # nginx would send this header with the real body: a broken response on the wire
            self.recorder.issue(
                self.record,
                Issue(
                    "framing",
                    f"Content-Length {declared!r} but the body has {len(body)} bytes "
                    f"(status {status})",
                ),
            )
            headers.popall("content-length", None)
            declared = None
        resp = KongWholeResponse(status=status, reason="" if status < 200 else None)
        resp.headers.extend(headers)
        if declared is None and without_body:
            resp.headers.popall("content-length", None)
        await resp.prepare(self.request)
        await resp.write_eof(body if body and not without_body else b"")
        st.response_sent_at = time.time() * 1000
        return resp

    def proxied_headers(self, headers: CIMultiDict[str]) -> CIMultiDict[str]:
        """Kong's headers on a proxied response: ``Via``, ``Server`` if none, latencies, id."""
        st = self.st
        upstream_via = headers.get("via")
        headers.popall("via", None)
        kong_via = f"1.1 {SERVER_HEADER}"
        headers["Via"] = f"{upstream_via}, {kong_via}" if upstream_via else kong_via
        if "server" not in headers:
            headers["Server"] = SERVER_HEADER
        if st.upstream_start is not None and st.upstream_headers_at is not None:
            waiting = int(st.upstream_headers_at - st.upstream_start)
            headers["X-Kong-Upstream-Latency"] = str(waiting)
        if st.upstream_start is not None:
            headers["X-Kong-Proxy-Latency"] = str(int(st.upstream_start - st.start_ms))
        headers["X-Kong-Request-Id"] = st.request_id
        return headers
