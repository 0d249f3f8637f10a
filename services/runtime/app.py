"""Composition: the real parts a process needs, from the settings, started in order and stopped
in reverse. Every command of the CLI is built from this."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from temporalio.client import Client

from services.runtime.config import Settings
from services.runtime.postgres import check_reachable, database_url
from services.runtime.telemetry import temporal_interceptors
from services.runtime.temporal import temporal_client
from services.store.event_store import EventStore
from services.store.migrations import apply_migrations


@dataclass(frozen=True, kw_only=True)
class Infrastructure:
    settings: Settings
    database_url: str
    store: EventStore
    client: Client


@asynccontextmanager
async def infrastructure(
    settings: Settings, *, temporal_port: int | None = 7233
) -> AsyncIterator[Infrastructure]:
    async with database_url(settings) as url:
        await check_reachable(url)
        await apply_migrations(url)
        store = await EventStore.open(url)
        try:
            async with temporal_client(
                settings, port=temporal_port, interceptors=temporal_interceptors()
            ) as client:
                yield Infrastructure(
                    settings=settings, database_url=url, store=store, client=client
                )
        finally:
            await store.close()
