"""kongsim test plugin ``ks-env``: answers with the plugin server's environment and cwd.

Kong starts plugin servers from an nginx worker, whose environment nginx has cleared; this
plugin lets a test see what a plugin server really gets.
"""

import json
import os
from typing import Any

Schema = ({"status": {"type": "integer", "default": 200}},)
version = "0.1.0"
priority = 1000


class Plugin:
    def __init__(self, config: dict[str, Any]) -> None:
        self.config = config

    def access(self, kong: Any) -> None:
        try:
            body = json.dumps({"env": sorted(os.environ), "cwd": os.getcwd()})
            kong.response.exit(self.config["status"], body, {"Content-Type": "application/json"})
        except Exception as exc:
            kong.log.err("ks-env access failed: ", repr(exc))


if __name__ == "__main__":
    from kong_pdk.cli import start_dedicated_server

    start_dedicated_server("ks-env", Plugin, version, priority, Schema)
