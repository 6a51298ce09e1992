"""Builds the grpc.aio server: CacheService, the standard health service, reflection.

`create_server` binds but does not start; it returns the server and the address it is
really bound to (port 0 picks a free port), so tests can run many servers side by side.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1.health import aio as health_aio
from grpc_reflection.v1alpha import reflection
from strata.v1 import cache_pb2 as _pb

from sidecar.engine import Engine
from sidecar.rpc.service import CacheService, safe_deserializer

SERVICE_NAME = _pb.DESCRIPTOR.services_by_name["CacheService"].full_name


@dataclass(slots=True)
class RunningServer:
    server: grpc.aio.Server
    address: str
    health: Any
    service: CacheService


def _handlers(service: CacheService) -> grpc.GenericRpcHandler:
    def unary(fn: Any, req: Any, resp: Any) -> grpc.RpcMethodHandler:
        return grpc.unary_unary_rpc_method_handler(
            fn,
            request_deserializer=safe_deserializer(req),
            response_serializer=resp.SerializeToString,
        )

    return grpc.method_handlers_generic_handler(
        SERVICE_NAME,
        {
            "Lookup": unary(service.Lookup, _pb.LookupRequest, _pb.LookupResponse),
            "Store": unary(service.Store, _pb.StoreRequest, _pb.StoreResponse),
            "Release": unary(service.Release, _pb.ReleaseRequest, _pb.ReleaseResponse),
            "Invalidate": unary(service.Invalidate, _pb.InvalidateRequest, _pb.InvalidateResponse),
            "Stats": unary(service.Stats, _pb.StatsRequest, _pb.StatsResponse),
            "Exchange": grpc.stream_stream_rpc_method_handler(
                service.Exchange,
                request_deserializer=safe_deserializer(_pb.ExchangeRequest),
                response_serializer=_pb.ExchangeResponse.SerializeToString,
            ),
        },
    )


def _prepare_unix_socket(path: str) -> None:
    """Make the socket's folder and remove a stale socket file left by a dead process."""
    os.makedirs(os.path.dirname(path) or "/", exist_ok=True)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


def create_server(engine: Engine, listen: str, max_message_bytes: int) -> RunningServer:
    """Bind a server for `engine` on `listen` (unix:/path or host:port).

    `max_message_bytes` bounds one message both ways; it should exceed the largest body
    accepted so that an oversized body reaches validation (INVALID_ARGUMENT with a clear
    message) rather than being cut off by the transport (RESOURCE_EXHAUSTED).
    """
    options = [
        ("grpc.max_receive_message_length", max_message_bytes),
        ("grpc.max_send_message_length", max_message_bytes),
        ("grpc.so_reuseport", 0),
    ]
    server = grpc.aio.server(options=options)
    service = CacheService(engine)
    server.add_generic_rpc_handlers((_handlers(service),))
    health = health_aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health, server)
    reflection.enable_server_reflection(
        (
            SERVICE_NAME,
            health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
            reflection.SERVICE_NAME,
        ),
        server,
    )
    if listen.startswith("unix:"):
        _prepare_unix_socket(listen[len("unix:") :])
        server.add_insecure_port(listen)
        address = listen
    else:
        port = server.add_insecure_port(listen)
        if port == 0:
            raise OSError(f"could not bind {listen}")
        host = listen.rpartition(":")[0]
        address = f"{host}:{port}"
    return RunningServer(server=server, address=address, health=health, service=service)


async def set_serving(running: RunningServer, serving: bool) -> None:
    """Report SERVING / NOT_SERVING for the overall server and for CacheService."""
    status = (
        health_pb2.HealthCheckResponse.SERVING
        if serving
        else health_pb2.HealthCheckResponse.NOT_SERVING
    )
    await running.health.set("", status)
    await running.health.set(SERVICE_NAME, status)
