"""Generated gRPC contract packages for Strata (built from the .proto files beside them).

Importing this package first applies the shared gRPC transport defaults (see
`strata._transport`), so that both the plugin and the sidecar get them before grpc loads.
"""

from strata._transport import apply_transport_env_defaults

apply_transport_env_defaults()
