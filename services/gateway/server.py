"""Builds and runs the gateway: the gRPC server (with health checking and reflection, so grpcurl
works) and the Temporal worker on this process's own task queue."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from temporalio.client import Client
from temporalio.worker import Worker

from services.api.earpiece.v1 import replay_pb2, replay_pb2_grpc, session_pb2, session_pb2_grpc
from services.auth import AuthInterceptor
from services.gateway.commands import GatewayCommands
from services.gateway.errors import ErrorInterceptor
from services.gateway.gateway import Gateway, LinkFactory
from services.gateway.limits import SERVER_OPTIONS
from services.gateway.replay_service import ReplayService
from services.gateway.session_service import SessionService
from services.store.event_store import EventStore

log = logging.getLogger(__name__)

SERVICE_NAMES = (
    session_pb2.DESCRIPTOR.services_by_name["SessionService"].full_name,
    replay_pb2.DESCRIPTOR.services_by_name["ReplayService"].full_name,
)


@dataclass
class RunningGateway:
    gateway: Gateway
    server: grpc.aio.Server
    port: int
    address: str


@asynccontextmanager
async def running_gateway(
    *,
    store: EventStore,
    client: Client,
    address: str,
    interceptors: Sequence[grpc.aio.ServerInterceptor] = (),
    link_factory: LinkFactory | None = None,
    credentials: grpc.ServerCredentials | None = None,
) -> AsyncIterator[RunningGateway]:
    """Serves the API on `address` (port 0 picks a free one) until the context exits.

    Every call but health checking and reflection needs an API key (services/auth); the auth
    interceptor runs after `interceptors`, so they see its refusals. With `credentials` (see
    services/runtime/tls.py) the port speaks TLS only, and plaintext callers are refused."""
    gateway = Gateway(store=store, client=client, link_factory=link_factory)
    server = grpc.aio.server(
        interceptors=[ErrorInterceptor(), *interceptors, AuthInterceptor(store.pool)],
        options=SERVER_OPTIONS,
    )
    session_pb2_grpc.add_SessionServiceServicer_to_server(SessionService(gateway=gateway), server)
    replay_pb2_grpc.add_ReplayServiceServicer_to_server(ReplayService(store=store), server)
    health_servicer = health.aio.HealthServicer()  # type: ignore[attr-defined]
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(
        (*SERVICE_NAMES, health.SERVICE_NAME, reflection.SERVICE_NAME), server
    )
    if credentials is None:
        port = server.add_insecure_port(address)
    else:
        port = server.add_secure_port(address, credentials)
    if port == 0:
        raise OSError(f"cannot listen on {address}; set EARPIECE_GRPC_ADDRESS to a free address")
    commands = GatewayCommands(gateway=gateway)
    worker = Worker(
        client,
        task_queue=gateway.queue,
        activities=[
            commands.close_session_stream,
            commands.hold_session,
            commands.rotate_model_link,
        ],
    )
    await server.start()
    for name in (*SERVICE_NAMES, ""):
        await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    host = address.rsplit(":", 1)[0]
    log.info(
        "gateway listening on %s:%d (%s, task queue %s)",
        host,
        port,
        "plaintext" if credentials is None else "TLS",
        gateway.queue,
    )
    try:
        async with worker:
            yield RunningGateway(
                gateway=gateway, server=server, port=port, address=f"{host}:{port}"
            )
            for name in (*SERVICE_NAMES, ""):
                await health_servicer.set(name, health_pb2.HealthCheckResponse.NOT_SERVING)
            await gateway.close_all(reason="shutdown")
    finally:
        await server.stop(grace=2)
