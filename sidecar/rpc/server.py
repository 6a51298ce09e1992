"""Builds the grpc.aio server: CacheService, the standard health service, reflection.

`create_server` binds but does not start; it returns the server and the address it is
really bound to (port 0 picks a free port), so tests can run many servers side by side.
A unix socket is bound under a temporary name beside its path and only renamed over the
path once the server serves (`sidecar.rpc.unix_socket`), so a client never connects to a
socket that is not answering yet and a running sidecar's socket is taken over, not deleted.
It is bound under umask 077 and made 0660 before that rename (never wider, whatever the
umask); only a live socket of the sidecar's own uid is taken over, and only with
`socket_takeover`.
"""

from __future__ import annotations

import dataclasses
import errno
import os
import socket
from dataclasses import dataclass
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1.health import aio as health_aio
from grpc_reflection.v1alpha import reflection
from strata.v1 import cache_pb2 as _pb

from sidecar.analytics.service import Analytics
from sidecar.engine.engine import Engine
from sidecar.invalidation import Invalidations
from sidecar.rpc.bounds import RpcLimits
from sidecar.rpc.service import CacheService, serialized
from sidecar.rpc.unix_socket import OwnedSocket, PathState, private_umask
from sidecar.rpc.watch import watch_request

SERVICE_NAME = _pb.DESCRIPTOR.services_by_name["CacheService"].full_name


@dataclass(slots=True)
class RunningServer:
    server: grpc.aio.Server
    address: str
    health: Any
    service: CacheService
    #: The unix socket path this server publishes and releases (None on TCP).
    socket: OwnedSocket | None = None


def _handlers(service: CacheService) -> grpc.GenericRpcHandler:
    intake = service.intake

    def unary(fn: Any, req: Any, resp: Any) -> grpc.RpcMethodHandler:
        return grpc.unary_unary_rpc_method_handler(
            fn,
            request_deserializer=intake.deserializer(req),
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
            "ReportAccess": unary(service.ReportAccess, _pb.AccessBatch, _pb.AccessAck),
            "Exchange": grpc.stream_stream_rpc_method_handler(
                service.Exchange,
                request_deserializer=intake.deserializer(_pb.ExchangeRequest),
                response_serializer=serialized,  # the handler writes serialized replies
            ),
            "Watch": grpc.unary_stream_rpc_method_handler(
                service.Watch,
                request_deserializer=watch_request,
                response_serializer=_pb.WatchEvent.SerializeToString,
            ),
        },
    )


def _bind(server: grpc.aio.Server, address: str) -> int:
    """`add_insecure_port`, failing with an OSError that names the address."""
    try:
        port = server.add_insecure_port(address)
    except RuntimeError as exc:  # grpc's way of saying bind() failed
        raise OSError(errno.EADDRNOTAVAIL, f"could not bind {address}") from exc
    if port == 0:
        raise OSError(errno.EADDRNOTAVAIL, f"could not bind {address}")
    return int(port)


def _check_bindable(owned: OwnedSocket) -> None:
    """Bind the temporary path once ourselves (then let it go): an OSError with the real
    reason, naming the path the operator asked for, if it cannot be bound."""
    probe = socket.socket(socket.AF_UNIX)
    try:
        probe.bind(owned.temp_path)
    except OSError as exc:
        raise OSError(exc.errno, f"cannot listen on unix:{owned.path}: {exc.strerror}") from exc
    finally:
        probe.close()
    os.unlink(owned.temp_path)


def create_server(
    engine: Engine,
    listen: str,
    max_message_bytes: int,
    *,
    socket_takeover: bool = True,
    limits: RpcLimits | None = None,
    invalidations: Invalidations | None = None,
    analytics: Analytics | None = None,
) -> RunningServer:
    """Bind a server for `engine` on `listen` (unix:/path or host:port).

    `max_message_bytes` bounds one message both ways; it should exceed the largest body
    accepted so that an oversized body reaches validation (INVALID_ARGUMENT with a clear
    message) rather than being cut off by the transport (RESOURCE_EXHAUSTED).
    `socket_takeover`: whether a live socket of this uid at a unix path may be taken over.
    `limits`: the bounds of the gRPC surface (`sidecar.rpc.bounds`); their message limit
    is set to `max_message_bytes`. `invalidations`: where purges go (default: applied to
    `engine` only, `sidecar.rpc.operations.Operations`). `analytics`: where ``ReportAccess``
    events go (default: off).
    """
    options = [
        ("grpc.max_receive_message_length", max_message_bytes),
        ("grpc.max_send_message_length", max_message_bytes),
        ("grpc.so_reuseport", 0),
    ]
    server = grpc.aio.server(options=options)
    service = CacheService(
        engine,
        dataclasses.replace(limits or RpcLimits(), max_message_bytes=max_message_bytes),
        invalidations,
        analytics,
    )
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
    owned: OwnedSocket | None = None
    if listen.startswith("unix:"):
        # Bound beside the path; `start_serving` renames it over the path once serving.
        owned = OwnedSocket(listen[len("unix:") :], takeover=socket_takeover)
        owned.prepare()
        with private_umask():  # born 0600 (publish makes it 0660), never wider
            _check_bindable(owned)  # grpc would hide the reason (and log a C-core error line)
            _bind(server, f"unix:{owned.temp_path}")
        address = listen
    else:
        port = _bind(server, listen)
        host = listen.rpartition(":")[0]
        address = f"{host}:{port}"
    return RunningServer(
        server=server, address=address, health=health, service=service, socket=owned
    )


async def start_serving(running: RunningServer) -> PathState | None:
    """Start the server, report SERVING, then make it reachable at its unix socket path.
    Returns what was at that path just before (None on TCP); raises `SocketPathError` if
    something other than a socket appeared there meanwhile."""
    await running.server.start()
    await set_serving(running, True)
    return running.socket.publish() if running.socket is not None else None


async def set_serving(running: RunningServer, serving: bool) -> None:
    """Report SERVING / NOT_SERVING for the overall server and for CacheService."""
    status = (
        health_pb2.HealthCheckResponse.SERVING
        if serving
        else health_pb2.HealthCheckResponse.NOT_SERVING
    )
    await running.health.set("", status)
    await running.health.set(SERVICE_NAME, status)
