"""Store tests run on the session's embedded Postgres (`pg_url`); each test uses its own
session ids, and tests that need an empty schema get a scratch database on the same server."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

from services.store import EventStore, Position, StoredEvent


@pytest.fixture
async def store(pg_url: str) -> AsyncIterator[EventStore]:
    s = await EventStore.open(pg_url, min_size=1, max_size=10)
    yield s
    await s.close()


def new_id(prefix: str = "s") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:16]}"


def with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{name}"))


@asynccontextmanager
async def scratch_database(pg_url: str) -> AsyncIterator[str]:
    """A new, empty database on the test server; dropped afterwards."""
    name = f"scratch_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(pg_url)
    try:
        await admin.execute(f"CREATE DATABASE {name}")
        try:
            yield with_database(pg_url, name)
        finally:
            await admin.execute(f"DROP DATABASE {name} WITH (FORCE)")
    finally:
        await admin.close()


async def drain(store: EventStore, *, after: Position | None) -> list[StoredEvent]:
    """Every event the global reader returns now, from `after` until it returns nothing."""
    out: list[StoredEvent] = []
    while True:
        page = await store.read_all(after=after, limit=1000)
        if not page:
            return out
        out.extend(page)
        after = page[-1].global_position
