"""strata-cache: the Kong plugin half of Strata (runs in a kong-pdk plugin server).

`import strata` runs first so the gRPC transport defaults are in place before grpc loads.
"""

import strata  # noqa: F401  (side effect: gRPC transport env defaults)

PLUGIN_NAME = "strata-cache"
__version__ = "0.1.0"
#: Runs after Kong's authentication plugins (key-auth 1250 ... oauth2 1004) and, like
#: Kong's proxy-cache (100), after rate limiting (910): a cache hit still counts.
PRIORITY = 100
