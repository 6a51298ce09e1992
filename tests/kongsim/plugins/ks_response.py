"""kongsim test plugin ``ks-response``: reads and changes the response in the ``response`` phase.

Having a ``response`` handler turns on buffered proxying. It reports what it saw in headers
(``X-Resp-Status``, ``X-Resp-Body-Len``, ``X-Resp-Upstream-Type``, ``X-Resp-Path``,
``X-Resp-Service-Header-Count``, ``X-Resp-Downstream-Type``), removes
``X-Upstream-Secret``, and with ``rewrite_body`` exits with the upper-cased body.
"""

from typing import Any

Schema = (
    {"rewrite_body": {"type": "boolean", "default": False}},
    {"prefix": {"type": "string", "default": "X-Resp"}},
)
version = "0.1.0"
priority = 900


class Plugin:
    def __init__(self, config: dict[str, Any]) -> None:
        self.config = config

    def access(self, kong: Any) -> None:
        try:
            path, _ = kong.request.get_path()
            kong.ctx.shared.set("ks_response_path", path)
        except Exception as exc:
            kong.log.err("ks-response access failed: ", repr(exc))

    def response(self, kong: Any) -> None:
        try:
            prefix = self.config["prefix"]
            status, _ = kong.response.get_status()
            upstream_status, _ = kong.service.response.get_status()
            # On Kong the service response's header map is empty in this phase; single
            # lookups work, and kong.response has the upstream's headers
            headers, _ = kong.service.response.get_headers()
            upstream_type, _ = kong.service.response.get_header("Content-Type")
            downstream, _ = kong.response.get_headers()
            body, _ = kong.service.response.get_raw_body()
            path, _ = kong.ctx.shared.get("ks_response_path")
            kong.response.set_headers(
                {
                    prefix + "-Status": str(status),
                    prefix + "-Upstream-Status": str(upstream_status),
                    prefix + "-Body-Len": str(len(body)),
                    prefix + "-Upstream-Type": str(upstream_type),
                    prefix + "-Service-Header-Count": str(len(headers)),
                    prefix + "-Downstream-Type": downstream.get("content-type", ["?"])[0],
                    prefix + "-Path": str(path),
                }
            )
            kong.response.clear_header("X-Upstream-Secret")
            if self.config["rewrite_body"]:
                kong.response.exit(status, body.upper(), {"X-Rewritten": "1"})
        except Exception as exc:
            kong.log.err("ks-response response failed: ", repr(exc))

    def log(self, kong: Any) -> None:
        try:
            status, _ = kong.response.get_status()
            source, _ = kong.response.get_source()
            kong.log.notice("ks-response log: status=", str(status), " source=", str(source))
        except Exception as exc:
            kong.log.err("ks-response log failed: ", repr(exc))


if __name__ == "__main__":
    from kong_pdk.cli import start_dedicated_server

    start_dedicated_server("ks-response", Plugin, version, priority, Schema)
