"""`python -m kong_plugin`: the strata-cache dedicated kong-pdk plugin server.

Kong starts it with its `pluginserver_strata_cache_start_cmd`, e.g.
`python -m kong_plugin -p /usr/local/kong --socket-name strata-cache.socket`, and queries it
with `python -m kong_plugin --dump`. It runs in kong-pdk's default thread mode: `-m` loses
per-instance state and cannot pickle the gRPC channel, and `-g` blocks on gRPC.

Kong starts it with nginx's cleared environment (only names listed in
`KONG_NGINX_MAIN_ENV` / nginx `env` directives pass), so nothing here depends on an
environment variable, and its output goes through a pipe that Kong logs at INFO level
(hidden at Kong's default `notice`): stdout is line-buffered so lines arrive as written, and
the handler reports what an operator must see through `kong.log` (see `kong_plugin.report`).
Instance ids start at a random offset (`kong_plugin.server`), so ids Kong kept from a
previous process cannot select another route's configuration.
"""

from __future__ import annotations

import logging
import sys

import strata  # noqa: F401  (gRPC transport env defaults, before grpc loads)

from kong_plugin import PLUGIN_NAME, PRIORITY, __version__


def main() -> None:
    for flag in ("-m", "--multiprocessing", "-g", "--gevent"):
        if flag in sys.argv[1:]:
            sys.exit(f"{PLUGIN_NAME}: {flag} is not supported; run in the default thread mode")
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]
    logging.basicConfig(
        level=logging.INFO, stream=sys.stdout, format="%(levelname)s %(name)s: %(message)s"
    )
    from kong_pdk.cli import start_dedicated_server  # noqa: PLC0415

    from kong_plugin import server  # noqa: PLC0415
    from kong_plugin.handler import Plugin  # noqa: PLC0415
    from kong_plugin.schema import SCHEMA  # noqa: PLC0415

    server.install()
    start_dedicated_server(PLUGIN_NAME, Plugin, __version__, PRIORITY, SCHEMA)


if __name__ == "__main__":
    main()
