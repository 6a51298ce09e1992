"""`python -m kong_plugin`: the strata-cache dedicated kong-pdk plugin server.

Kong starts it with its `pluginserver_strata_cache_start_cmd`, e.g.
`python -m kong_plugin -p /usr/local/kong --socket-name strata-cache.socket`, and queries it
with `python -m kong_plugin --dump`. It runs in kong-pdk's default thread mode: `-m` loses
per-instance state and cannot pickle the gRPC channel, and `-g` blocks on gRPC.
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
    logging.basicConfig(
        level=logging.INFO, stream=sys.stdout, format="%(levelname)s %(name)s: %(message)s"
    )
    from kong_pdk.cli import start_dedicated_server  # noqa: PLC0415

    from kong_plugin.handler import Plugin  # noqa: PLC0415
    from kong_plugin.schema import SCHEMA  # noqa: PLC0415

    start_dedicated_server(PLUGIN_NAME, Plugin, __version__, PRIORITY, SCHEMA)


if __name__ == "__main__":
    main()
