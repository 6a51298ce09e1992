"""The gRPC transport: the only place that knows the generated `strata.v1` code."""

from sidecar.rpc.server import create_server

__all__ = ["create_server"]
