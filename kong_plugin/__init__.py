"""strata-cache: the Kong plugin half of Strata (runs in a kong-pdk plugin server).

`import strata` runs first so the gRPC transport defaults are in place before grpc loads.
"""

import strata  # noqa: F401  (side effect: gRPC transport env defaults)

__version__ = "0.1.0"
