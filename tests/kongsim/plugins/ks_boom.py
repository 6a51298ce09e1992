"""kongsim test plugin ``ks-boom``: misbehaves on purpose, as chosen by ``config.mode``.

* ``ok``: one PDK call, then returns;
* ``raise_after_call``: one PDK call, then raises (the event never answers: RPC timeout);
* ``unknown_pdk``: calls a PDK function that does not exist, then sets a response header;
* ``bad_phase``: calls ``kong.response.get_status`` in ``access`` (a hard error in Kong);
* ``log_timer``: in ``log``, calls ``kong.request.get_method`` (unavailable in Kong's log timer);
* ``nil_arg``: ``kong.response.exit(200, None, {...})`` (Lua drops the headers after the nil);
* ``echo_pdk``: returns a few PDK values in response headers (``X-Boom-*``).
"""

from typing import Any

Schema = (
    {
        "mode": {
            "type": "string",
            "default": "ok",
            "one_of": [
                "ok",
                "raise_after_call",
                "unknown_pdk",
                "bad_phase",
                "log_timer",
                "nil_arg",
                "echo_pdk",
            ],
        }
    },
)
version = "0.1.0"
priority = 800


class Plugin:
    def __init__(self, config: dict[str, Any]) -> None:
        self.mode = config["mode"]

    def access(self, kong: Any) -> None:
        mode = self.mode
        method, _ = kong.request.get_method()
        if mode == "raise_after_call":
            raise RuntimeError("ks-boom: raised on purpose")
        if mode == "unknown_pdk":
            kong.request.get_nonexistent_thing()
            kong.response.set_header("X-Boom", "after-unknown")
        elif mode == "bad_phase":
            kong.response.get_status()
        elif mode == "nil_arg":
            kong.response.exit(200, None, {"X-Dropped": "1"})
        elif mode == "echo_pdk":
            query, _ = kong.request.get_query()
            headers, _ = kong.request.get_headers()
            route, _ = kong.router.get_route()
            service, _ = kong.router.get_service()
            consumer, _ = kong.client.get_consumer()
            missing, _ = kong.request.get_header("x-does-not-exist")
            kong.response.set_header("X-Boom-Method", method)
            kong.response.set_header("X-Boom-Query", repr(sorted(query.items())))
            kong.response.set_header("X-Boom-Multi", repr(headers.get("x-multi")))
            kong.response.set_header("X-Boom-Route", route["name"])
            kong.response.set_header("X-Boom-Service", service["name"])
            kong.response.set_header("X-Boom-Consumer", consumer["username"] if consumer else "-")
            kong.response.set_header("X-Boom-Missing", repr(missing))

    def log(self, kong: Any) -> None:
        if self.mode == "log_timer":
            kong.request.get_method()
        else:
            kong.log.debug("ks-boom log")


if __name__ == "__main__":
    from kong_pdk.cli import start_dedicated_server

    start_dedicated_server("ks-boom", Plugin, version, priority, Schema)
