"""Test plugin ``ks-who`` (priority 500, before strata-cache): in ``access`` it sets response
headers that belong to this request only -- ``X-Who`` (the request's ``X-Who-Am-I``) and
``X-Nonce`` -- as plugins that decorate responses before the upstream answers do."""

import uuid
from typing import Any

Schema = ({"header": {"type": "string", "default": "x-who-am-i"}},)
version = "0.1.0"
priority = 500


class Plugin:
    def __init__(self, config: dict[str, Any]) -> None:
        self.config = config

    def access(self, kong: Any) -> None:
        try:
            who, _ = kong.request.get_header(self.config["header"])
            kong.response.set_headers({"X-Who": str(who), "X-Nonce": uuid.uuid4().hex})
        except Exception as exc:
            kong.log.err("ks-who access failed: ", repr(exc))


if __name__ == "__main__":
    from kong_pdk.cli import start_dedicated_server

    start_dedicated_server("ks-who", Plugin, version, priority, Schema)
