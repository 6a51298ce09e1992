"""gRPC transport settings shared by both ends of the plugin -> sidecar hop.

grpc reads these environment variables once, when `grpc` is first imported, and silently
ignores them afterwards; they must be set in both processes. Measured on the target
machines (see README, "Benchmarks"): turning off grpc's newer event engine and using the
`poll` poller roughly halves the cost of one call on a 2-core box. They are defaults only:
an operator's own values win. They are knobs grpc may remove; re-measure on upgrade.
"""

from __future__ import annotations

import os

TRANSPORT_ENV_DEFAULTS: dict[str, str] = {
    "GRPC_EXPERIMENTS": "-event_engine_client,-event_engine_listener",
    "GRPC_POLL_STRATEGY": "poll",
}


def apply_transport_env_defaults() -> bool:
    """Set the defaults for variables the operator left unset.

    Returns False when `grpc` was already imported (the settings then have no effect in
    this process); it does not guarantee grpc honours them.
    """
    import sys  # noqa: PLC0415

    for name, value in TRANSPORT_ENV_DEFAULTS.items():
        os.environ.setdefault(name, value)
    return "grpc" not in sys.modules
