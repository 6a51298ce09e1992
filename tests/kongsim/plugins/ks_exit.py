"""kongsim test plugin ``ks-exit``: ends the request in ``access`` when a header is present.

Otherwise it marks the response (``X-Ks-Exit: miss``) and remembers the header in
``kong.ctx.shared`` for its ``log`` phase. A dedicated kong-pdk plugin server: run it with
``--dump`` to print its info, or with ``-p PREFIX --socket-name ks-exit.socket`` to serve.
"""

from typing import Any

Schema = (
    {"header": {"type": "string", "default": "x-exit"}},
    {"status": {"type": "integer", "default": 200, "between": [100, 599]}},
    {"body": {"type": "string", "default": "exited"}},
    {"tag": {"type": "string"}},
)
version = "0.1.0"
priority = 1000


class Plugin:
    def __init__(self, config: dict[str, Any]) -> None:
        self.config = config

    def access(self, kong: Any) -> None:
        try:
            value, _ = kong.request.get_header(self.config["header"])
            if value is not None:
                kong.response.exit(
                    self.config["status"],
                    f"{self.config['body']}:{value}",
                    {"X-Exit": "1", "X-Tag": str(self.config.get("tag"))},
                )
                return
            kong.response.set_header("X-Ks-Exit", "miss")
            kong.ctx.shared.set("ks_exit_seen", "none")
        except Exception as exc:  # never let an exception escape a phase handler
            kong.log.err("ks-exit access failed: ", repr(exc))

    def log(self, kong: Any) -> None:
        try:
            seen, _ = kong.ctx.shared.get("ks_exit_seen")
            status, _ = kong.response.get_status()
            kong.log.info(f"ks-exit log: seen={seen} status={status}")
        except Exception as exc:
            kong.log.err("ks-exit log failed: ", repr(exc))


if __name__ == "__main__":
    from kong_pdk.cli import start_dedicated_server

    start_dedicated_server("ks-exit", Plugin, version, priority, Schema)
