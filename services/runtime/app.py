"""Composition: the real parts a process needs, from the settings, started in order and stopped
in reverse. Every command of the CLI is built from this."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import grpc
from temporalio.client import Client

from services.auth.keys import ensure_dev_key
from services.gateway.gateway import LinkFactory
from services.gateway.server import RunningGateway, running_gateway
from services.realtime.link import ModelLink
from services.runtime.config import ConfigError, Settings
from services.runtime.postgres import check_reachable, database_url, ensure_app_login, redact
from services.runtime.telemetry import temporal_interceptors
from services.runtime.temporal import temporal_client
from services.runtime.tls import server_credentials
from services.store.event_store import EventStore
from services.store.migrations import apply_migrations, discover

log = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True)
class Infrastructure:
    settings: Settings
    database_url: str  # what the service logs in as (may hold a password: print `redact`ed)
    store: EventStore
    client: Client
    dev_key_file: Path | None = None  # the embedded default's development API key

    @property
    def dev_key(self) -> str | None:
        return None if self.dev_key_file is None else self.dev_key_file.read_text().strip()


@asynccontextmanager
async def database(settings: Settings) -> AsyncIterator[tuple[str, Path | None]]:
    """The database, migrated by its owner; yields the URL the service logs in as, and the
    development key file when the embedded default is used."""
    async with database_url(settings) as url:
        owner = settings.database_owner_url or url
        variable = "DATABASE_OWNER_URL" if settings.database_owner_url else "DATABASE_URL"
        await check_reachable(owner, variable=variable)
        await migrate_if_owner(owner, settings)
        dev_key_file: Path | None = None
        if settings.database_url is None:  # embedded: log in as the application role
            app_url = await ensure_app_login(owner)
            conn = await asyncpg.connect(owner)
            try:
                await ensure_dev_key(conn, settings.dev_key_file)
            finally:
                await conn.close()
            dev_key_file = settings.dev_key_file
        else:
            app_url = url
            if owner != url:
                await check_reachable(url)
        yield app_url, dev_key_file


async def migrate_if_owner(owner: str, settings: Settings) -> None:
    """Applies the migrations; a login that may not (the application role, when no
    DATABASE_OWNER_URL is given) only checks that none is pending."""
    try:
        await apply_migrations(owner)
        return
    except asyncpg.InsufficientPrivilegeError:
        if settings.database_owner_url:
            raise
    conn = await asyncpg.connect(owner)
    try:
        applied = {r["name"] for r in await conn.fetch("SELECT name FROM schema_migrations")}
    except asyncpg.PostgresError as exc:
        raise ConfigError(
            f"{redact(owner)} may not apply migrations and cannot read which are applied ({exc});"
            " run `earpiece migrate` with DATABASE_OWNER_URL set to the schema's owner"
        ) from exc
    finally:
        await conn.close()
    pending = [m.name for m in discover() if m.name not in applied]
    if pending:
        raise ConfigError(
            f"{len(pending)} migration(s) pending ({', '.join(pending)}) and DATABASE_URL may "
            "not apply them; run `earpiece migrate` with DATABASE_OWNER_URL set to the owner"
        )
    log.info("migrations are up to date (applied by the owner)")


@asynccontextmanager
async def infrastructure(
    settings: Settings, *, temporal_port: int | None = 7233, metrics_port: int | None = None
) -> AsyncIterator[Infrastructure]:
    async with database(settings) as (url, dev_key_file):
        store = await EventStore.open(url)
        try:
            async with temporal_client(
                settings,
                port=temporal_port,
                interceptors=temporal_interceptors(),
                metrics_port=metrics_port,
            ) as client:
                yield Infrastructure(
                    settings=settings,
                    database_url=url,
                    store=store,
                    client=client,
                    dev_key_file=dev_key_file,
                )
        finally:
            await store.close()


def model_link_factory(settings: Settings, *, simulator_url: str | None) -> LinkFactory:
    """OpenAI when OPENAI_API_KEY is set, else the simulator at `simulator_url`."""

    def make(model: str | None, on_send: Callable[[str], None]) -> ModelLink:
        return ModelLink(
            model=model or settings.realtime_model,
            api_key=settings.openai_api_key,
            simulator_url=None if settings.openai_api_key else simulator_url,
            on_send=on_send,
        )

    return make


@asynccontextmanager
async def model_endpoint(
    settings: Settings, *, scenario: str = "tutoring"
) -> AsyncIterator[str | None]:
    """The simulator URL to use: EARPIECE_SIMULATOR_URL, or a built-in simulator started here
    when no OPENAI_API_KEY is set (None when the real API is used)."""
    if settings.openai_api_key:
        yield None
        return
    if settings.simulator_url:
        yield settings.simulator_url
        return
    from services.realtime.simulator.scenario import load_builtin_scenario
    from services.realtime.simulator.server import serve_simulator

    server = await serve_simulator(
        host="127.0.0.1", port=0, scenario=load_builtin_scenario(scenario), realtime_pacing=True
    )
    try:
        yield server.url
    finally:
        await server.stop()


@asynccontextmanager
async def serving_gateway(
    infra: Infrastructure,
    *,
    address: str,
    interceptors: Sequence[grpc.aio.ServerInterceptor] = (),
) -> AsyncIterator[tuple[RunningGateway, str | None]]:
    """The gateway on `address`, its sessions linked to OpenAI or the simulator; yields it and
    the simulator URL (None when the real API is used)."""
    async with (
        model_endpoint(infra.settings) as simulator_url,
        running_gateway(
            store=infra.store,
            client=infra.client,
            address=address,
            interceptors=interceptors,
            link_factory=model_link_factory(infra.settings, simulator_url=simulator_url),
            credentials=server_credentials(infra.settings),
        ) as gateway,
    ):
        yield gateway, simulator_url
