"""The Prometheus `/metrics` endpoint: a small threaded HTTP server bound with SO_REUSEPORT.

SO_REUSEPORT lets a new sidecar bind the metrics port while the one it replaces still
holds it, so a restart never fails on "Address already in use". For the moment both
listen, the kernel hands each scrape to either of them; the old sidecar closes its endpoint
as soon as it starts draining.

Not guaranteed: sharing the port with a process that did not set SO_REUSEPORT (a sidecar
of a version before this one, or anything else) or that runs as another user: binding
then fails with EADDRINUSE as usual. A scrape accepted by the old sidecar just before it
closes its endpoint may be reset (Prometheus counts a failed scrape and tries again at the
next interval).
"""

from __future__ import annotations

import socket
import threading
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, make_wsgi_app

#: How often the serving thread looks whether it should stop.
POLL_INTERVAL_S = 0.1


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """No access log: scrapes are not events."""


def _server_class(family: socket.AddressFamily) -> type[WSGIServer]:
    class _ReusePortServer(ThreadingMixIn, WSGIServer):
        address_family = family
        daemon_threads = True
        allow_reuse_address = True

        def server_bind(self) -> None:
            self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            super().server_bind()

    return _ReusePortServer


def split_host_port(listen: str) -> tuple[str, int]:
    """'127.0.0.1:9464' / '[::1]:9464' / ':::9464' -> (host, port)."""
    host, _, port = listen.rpartition(":")
    return host.strip("[]"), int(port)


class MetricsEndpoint:
    """`/metrics` for `registry` on `listen` (HOST:PORT), served from a daemon thread."""

    def __init__(self, listen: str, registry: CollectorRegistry) -> None:
        host, port = split_host_port(listen)
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self._server = make_server(
            host,
            port,
            make_wsgi_app(registry),
            server_class=_server_class(family),
            handler_class=_QuietHandler,
        )
        self.port = int(self._server.server_address[1])
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": POLL_INTERVAL_S},
            name="strata-metrics",
            daemon=True,
        )
        self._thread.start()

    def close(self) -> None:
        """Stop serving, without waiting: the listener closes within `POLL_INTERVAL_S`
        on a thread of its own (the caller may be the event loop, which must not block)."""
        threading.Thread(target=self._stop, name="strata-metrics-stop", daemon=True).start()

    def _stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
