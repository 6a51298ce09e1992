"""`python -m kong_plugin`: the strata-cache plugin server for Kong.

Kong starts it with its `pluginserver_strata_cache_start_cmd`, e.g.
`python -m kong_plugin -p /usr/local/kong --socket-name strata-cache.socket`, and queries it
with `python -m kong_plugin --dump` (`kong_plugin.pluginserver.cli` lists the options).
By default it runs one worker process per usable CPU (`--workers`), each serving Kong's
MessagePack-RPC with events as greenlets (`kong_plugin.pluginserver`); `--engine kong-pdk`
runs kong-pdk's own thread-per-event server instead.

Kong starts it with nginx's cleared environment (only names listed in
`KONG_NGINX_MAIN_ENV` / nginx `env` directives pass), so nothing here depends on an
environment variable, and its output goes through a pipe that Kong logs at INFO level
(hidden at Kong's default `notice`): stdout is line-buffered so lines arrive as written, and
the handler reports what an operator must see through `kong.log` (see `kong_plugin.report`).
Instance ids are random (`kong_plugin.pluginserver.instances`), so ids Kong kept from a
previous process cannot select another route's configuration.
"""

from __future__ import annotations

import sys

import strata  # noqa: F401  (gRPC transport env defaults, before grpc loads)

from kong_plugin import PLUGIN_NAME, PRIORITY, __version__


def main() -> None:
    from kong_plugin.pluginserver.lifeline import hold  # noqa: PLC0415

    hold(sys.argv[1:])  # a worker whose supervisor died while it started exits here
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]
    from kong_plugin.handler import Plugin  # noqa: PLC0415
    from kong_plugin.pluginserver.cli import main as serve  # noqa: PLC0415
    from kong_plugin.schema import SCHEMA  # noqa: PLC0415

    sys.exit(serve(PLUGIN_NAME, Plugin, __version__, PRIORITY, SCHEMA, sys.argv[1:]))


if __name__ == "__main__":
    main()
